"""Our templates bound to a preprocessing run, as the host's loader binds them (llava_lf.seams.dataset_run)."""

from __future__ import annotations

import tempfile


def bound_to_run(template, cutoff_len: int, output_dir: str | None = None, name: str = "llava_v1"):
    """`template` as `_get_preprocessed_dataset` hands it to the host's processor (other templates as they are)."""
    if not hasattr(template, "for_preprocessing"):
        return template
    from llava_lf.common.fit_report import PreprocessRun

    output_dir = output_dir or tempfile.mkdtemp(prefix="llava_lf-test-run-")
    return template.for_preprocessing(PreprocessRun(cutoff_len=cutoff_len, output_dir=output_dir, template=name))
