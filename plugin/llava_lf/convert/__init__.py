"""LLaVA JSON -> LLaMA-Factory sharegpt datasets, validated record by record."""

from .convert import ConversionReport, Rejection, convert_records, convert_file

__all__ = ["ConversionReport", "Rejection", "convert_file", "convert_records"]
