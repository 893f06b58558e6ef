"""LLaVA JSON -> LLaMA-Factory sharegpt datasets, validated record by record, streamed."""

from .convert import ConvertOptions, check_file, convert_file, convert_records
from .report import ConversionReport, Problem, Rejection

__all__ = ["ConversionReport", "ConvertOptions", "Problem", "Rejection", "check_file", "convert_file",
           "convert_records"]
