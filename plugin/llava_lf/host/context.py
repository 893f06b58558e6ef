"""What LLaMA-Factory knows when it calls our template but does not pass: cutoff_len, sample index, output folder.

The host (pinned to 0.9.5) truncates in `SupervisedDatasetProcessor._encode_data_example`, after our
template returned its turn pairs, and hands neither `cutoff_len` nor the run's output folder to a template
or an mm plugin. We plug in only through its registries, so the template reads these values from the
frames of the host functions that called it; nothing is written back. `tests/test_truncation_host.py`
fails if these call shapes change.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import FrameType
from typing import Any

ENCODE_EXAMPLE = "_encode_data_example"  # SupervisedDatasetProcessor (and the packed variant)
PREPROCESS = "preprocess_dataset"  # the host's batched map function; its loop index is `i`
DATASETS_APPLY = "apply_function"  # datasets.Dataset._map_single's per-batch call: `indices`, `offset`


@dataclass(frozen=True)
class EncodeCall:
    """The host processor call an `encode_multiturn` came from."""

    cutoff_len: int
    frame: FrameType

    def images(self) -> list[Any]:
        return list(self.frame.f_locals.get("images") or [])

    def sample_index(self) -> int | None:
        """The sample's row in the dataset being preprocessed (across map workers), if the stack says so."""
        preprocess = self.frame.f_back
        if preprocess is None or preprocess.f_code.co_name != PREPROCESS:
            return None
        row = preprocess.f_locals.get("i")
        apply = preprocess.f_back
        if not isinstance(row, int) or apply is None or apply.f_code.co_name != DATASETS_APPLY:
            return None
        indices, offset = apply.f_locals.get("indices"), apply.f_locals.get("offset", 0)
        try:
            return int(indices[row]) + int(offset or 0)
        except (IndexError, TypeError):
            return None


def encode_call(caller: FrameType | None) -> EncodeCall | None:
    """The calling host dataset processor's context, or None when a template is used outside one."""
    if caller is None or caller.f_code.co_name != ENCODE_EXAMPLE:
        return None
    processor = caller.f_locals.get("self")
    data_args = getattr(processor, "data_args", None)
    cutoff_len = getattr(data_args, "cutoff_len", None)
    if not isinstance(cutoff_len, int):
        return None
    return EncodeCall(cutoff_len=cutoff_len, frame=caller)


def training_output_dir(caller: FrameType | None, max_depth: int = 4) -> str | None:
    """`training_args.output_dir` of the workflow (run_sft, run_pt, ...) that set our template up, if any."""
    frame, depth = caller, 0
    while frame is not None and depth < max_depth:
        training_args = frame.f_locals.get("training_args")
        output_dir = getattr(training_args, "output_dir", None)
        if isinstance(output_dir, str) and output_dir:
            return output_dir
        frame, depth = frame.f_back, depth + 1
    return None
