"""The YAML of `llava-lf eval table`: the model, the output folder, the judge, and each benchmark's files, given
as that benchmark's own `predict`/`score` options (`image_folder:` is `--image-folder`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from llava_lf.errors import LlavaLfError

# Options every benchmark's `predict` takes; set once at the top of the YAML.
PREDICT_KEYS = ("model", "adapter", "template", "batch_size", "device", "dtype", "max_new_tokens", "limit")
TOP_KEYS = PREDICT_KEYS + ("out_dir", "judge", "benchmarks", "allow_partial")
# The judge's keys, without their `judge_` prefix: `base_url` is `--judge-base-url`.
JUDGE_KEYS = ("base_url", "model", "key_env", "timeout", "attempts", "backoff", "max_tokens", "temperature",
              "workers", "cache")


@dataclass(frozen=True)
class TableConfig:
    source: Path
    out_dir: Path
    predict: dict[str, object]  # PREDICT_KEYS given at the top
    judge: dict[str, object]  # judge_* options, for the benchmarks whose score takes them
    benchmarks: dict[str, dict[str, object]]  # benchmark name -> its own options
    allow_partial: bool = False
    skipped_names: list[str] = field(default_factory=list)  # in the YAML with `null`: skipped on purpose


def _mapping(value: object, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise LlavaLfError(f"{where} must be a mapping of option: value, found {type(value).__name__}")
    return value


def load_table_config(path: Path, out_dir: Path | None = None) -> TableConfig:
    import yaml

    if not path.is_file():
        raise LlavaLfError(f"no table YAML at {path}; `llava-lf recipes copy DIR` writes an example "
                           "(DIR/eval/llava1_5_table.yaml), docs/eval.md describes its keys")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise LlavaLfError(f"{path}: not YAML ({error})") from None
    raw = _mapping(raw, str(path))
    unknown = sorted(set(raw) - set(TOP_KEYS))
    if unknown:
        raise LlavaLfError(f"{path}: unknown key(s) {', '.join(unknown)}; the top level takes {', '.join(TOP_KEYS)} "
                           "(a benchmark's own files go under `benchmarks: NAME:`)")
    if "model" not in raw:
        raise LlavaLfError(f"{path}: `model:` is missing; name the llava-hf checkpoint to evaluate")
    judge = _mapping(raw.get("judge"), f"{path}: judge")
    bad_judge = sorted(set(judge) - set(JUDGE_KEYS))
    if bad_judge:
        raise LlavaLfError(f"{path}: judge: unknown key(s) {', '.join(bad_judge)}; it takes {', '.join(JUDGE_KEYS)}")
    benchmarks = _mapping(raw.get("benchmarks"), f"{path}: benchmarks")
    given = {name: _mapping(options, f"{path}: benchmarks: {name}") for name, options in benchmarks.items()
             if options is not None}
    target = out_dir or raw.get("out_dir")
    if target is None:
        raise LlavaLfError(f"{path}: `out_dir:` is missing (or pass --out-dir); it holds every benchmark's "
                           "predictions and results, and the table")
    return TableConfig(path, Path(target), {key: raw[key] for key in PREDICT_KEYS if key in raw},
                       {f"judge_{key}": value for key, value in judge.items()}, given,
                       bool(raw.get("allow_partial", False)),
                       [name for name, options in benchmarks.items() if options is None])


def option_argv(options: dict[str, object]) -> list[str]:
    """YAML options as command-line arguments: `image_folder: X` is `--image-folder X`; `true` is the bare flag."""
    argv: list[str] = []
    for key, value in options.items():
        flag = "--" + str(key).replace("_", "-")
        if value is True:
            argv.append(flag)
        elif value is False or value is None:
            continue
        elif isinstance(value, list | tuple):
            argv += [flag, *map(str, value)]
        else:
            argv += [flag, str(value)]
    return argv
