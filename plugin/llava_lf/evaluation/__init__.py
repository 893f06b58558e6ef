"""Shared evaluation machinery: batched greedy prediction and answer scoring."""
