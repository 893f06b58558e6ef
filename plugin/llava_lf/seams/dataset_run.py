"""Turn fitting's seam: wraps the host's `_get_preprocessed_dataset`, the one function that holds a split's template,
`cutoff_len` and output folder, to bind them to a copy of our template and collect the trim/drop report.
"""

from __future__ import annotations

import functools
import inspect

from llamafactory.extras.logging import get_logger

from llava_lf.common.fit_report import PreprocessRun, collect, start

from . import Seam, calls_by_name, has_parameters

MODULE, FUNCTION, CALLER = "llamafactory.data.loader", "_get_preprocessed_dataset", "get_dataset"
PARAMETERS = ["dataset", "data_args", "training_args", "stage", "template"]
_WRAPPED = "__llava_lf_preprocess_run__"

logger = get_logger(f"llamafactory.{__name__}")  # the host's handler and format


def _checks() -> list[str]:
    import importlib

    from llamafactory.data.processor import SupervisedDatasetProcessor
    from llamafactory.hparams import DataArguments, TrainingArguments

    loader = importlib.import_module(MODULE)
    host = getattr(getattr(loader, FUNCTION), _WRAPPED, getattr(loader, FUNCTION))
    misfits = has_parameters(host, PARAMETERS) + calls_by_name(getattr(loader, CALLER), FUNCTION)
    misfits += calls_by_name(SupervisedDatasetProcessor._encode_data_example, "encode_multiturn")
    fields = {"cutoff_len": DataArguments, "output_dir": TrainingArguments}
    misfits += [f"{cls.__name__} has no {name}" for name, cls in fields.items()
                if name not in getattr(cls, "__dataclass_fields__", {})]
    return misfits


FEATURE = "turn fitting (cutoff_len at turn boundaries) and its trim/drop report"
SEAM = Seam(feature=FEATURE, symbol=f"{MODULE}.{FUNCTION}", module=MODULE, checks=_checks,
            ours="seams/dataset_run.py wraps it; templates/conversation.py: LlavaTemplate.for_preprocessing")


def _wrap(host_function):
    signature = inspect.signature(host_function)

    @functools.wraps(host_function)
    def _get_preprocessed_dataset(*args, **kwargs):
        call = signature.bind(*args, **kwargs)
        template, dataset = call.arguments["template"], call.arguments["dataset"]
        bind = getattr(template, "for_preprocessing", None)
        if bind is None or dataset is None:  # not one of our templates: the host's call as it was
            return host_function(*args, **kwargs)
        data_args, training_args = call.arguments["data_args"], call.arguments["training_args"]
        run = PreprocessRun(cutoff_len=data_args.cutoff_len, output_dir=str(training_args.output_dir),
                            template=template.registered_name(),
                            split="eval" if call.arguments.get("is_eval") else "train")
        call.arguments["template"] = bind(run)
        start(run)
        result = host_function(*call.args, **call.kwargs)
        summary = collect(run, dataset)
        if summary is not None:  # a warning when samples were touched, so it stands out in the log
            (logger.warning if summary.counts else logger.info)(summary.log_line())
        return result

    setattr(_get_preprocessed_dataset, _WRAPPED, host_function)
    return _get_preprocessed_dataset


def install() -> bool:
    """Wrap the host function when it has the shape we rely on; say once (by feature) when it does not."""
    import importlib

    misfits = SEAM.check()
    if misfits:
        SEAM.say_once(misfits)
        return False
    loader = importlib.import_module(MODULE)
    if not hasattr(getattr(loader, FUNCTION), _WRAPPED):
        setattr(loader, FUNCTION, _wrap(getattr(loader, FUNCTION)))
    return True


def installed() -> bool:
    import sys

    loader = sys.modules.get(MODULE)
    return loader is not None and hasattr(getattr(loader, FUNCTION, None), _WRAPPED)
