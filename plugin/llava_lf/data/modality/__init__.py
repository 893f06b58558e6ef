"""`llava-lf group-modality`: LLaVA-1.5's modality-grouped order, written as a dataset the host reads."""
