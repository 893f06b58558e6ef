"""Samples longer than cutoff_len are trimmed at turn boundaries or dropped, never cut inside an image.

Run through the host's own SFT processor (and `datasets.map` with worker processes, as `llamafactory-cli`
calls it), with the hand-written word tokenizer of `test_templates`: a one-turn sample is 73 tokens
(70 prompt + " red</s>"), the two-turn sample 89.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from test_templates import IGNORE, IMAGE_IDS, build_golden_processor, encode_like_training, write_image

ONE_TURN = [{"role": "user", "content": "<image>\nWhat color is the circle?"}, {"role": "assistant", "content": "red"}]
TWO_TURNS = ONE_TURN + [{"role": "user", "content": "How many shapes are there?"}, {"role": "assistant", "content": "2"}]
LONG_FIRST_TURN = [{"role": "user", "content": "What color is the circle? " * 3 + "<image>"},
                   {"role": "assistant", "content": "red"}]


@pytest.fixture(scope="module")
def golden(tmp_path_factory):
    folder = tmp_path_factory.mktemp("golden")
    return build_golden_processor(folder / "processor"), write_image(folder / "red.png")


def test_fit_turns_keeps_whole_pairs():
    from llava_lf.host.truncation import fit_turns

    assert fit_turns([70, 20], 90).action == "kept"
    assert fit_turns([70, 20], 89).kept_pairs == 1 and fit_turns([70, 20], 89).action == "trimmed"
    dropped = fit_turns([70, 20], 69)
    assert (dropped.action, dropped.kept_pairs, dropped.tokens, dropped.kept_tokens) == ("dropped", 0, 90, 0)


def test_later_turns_are_trimmed_whole(golden):
    processor, image = golden
    full_ids, _ = encode_like_training(processor, "llava_v1", TWO_TURNS, [image], cutoff_len=89)
    assert len(full_ids) == 89  # fits exactly: nothing cut
    one_turn_ids, one_turn_labels = encode_like_training(processor, "llava_v1", ONE_TURN, [image], cutoff_len=89)
    input_ids, labels = encode_like_training(processor, "llava_v1", TWO_TURNS, [image], cutoff_len=88)
    assert (input_ids, labels) == (one_turn_ids, one_turn_labels)  # the second turn went whole, not token by token
    assert labels[-3:] == [5, 35, 2]


def test_a_sample_whose_first_turn_cannot_fit_is_dropped(golden):
    processor, image = golden
    input_ids, labels = encode_like_training(processor, "llava_v1", ONE_TURN, [image], cutoff_len=72)
    assert (input_ids, labels) == ([1], [IGNORE])  # one masked BOS: no image tokens, no target
    plain_ids, plain_labels = encode_like_training(
        processor, "llava_plain", [{"role": "user", "content": "<image>"}, {"role": "assistant", "content": "red"}],
        [image], cutoff_len=8)
    assert (plain_ids, plain_labels) == ([1], [IGNORE])


def test_the_host_template_would_cut_the_image(golden):
    """The failure we prevent: the host's `llava` template at the same cutoff keeps 3 of the 9 image tokens."""
    processor, image = golden
    host_ids, _ = encode_like_training(processor, "llava", ONE_TURN, [image], cutoff_len=52)
    assert host_ids.count(IMAGE_IDS[0]) == 3
    ours, _ = encode_like_training(processor, "llava_v1", ONE_TURN, [image], cutoff_len=52)
    assert ours == [1]


def test_outside_the_host_processor_pairs_are_left_whole(golden):
    """Token counting (the converter's --cutoff-len) calls encode_multiturn directly: no cutoff applies."""
    from llamafactory.data.template import TEMPLATES

    processor, image = golden
    messages = TEMPLATES["llava_v1"].mm_plugin.process_messages(TWO_TURNS, [image], [], [], processor)
    pairs = TEMPLATES["llava_v1"].encode_multiturn(processor.tokenizer, messages)
    assert [len(source) + len(target) for source, target in pairs] == [73, 16]


def _host_rows(samples):
    return {"_prompt": [messages[:-1] for messages, _ in samples], "_response": [messages[-1:] for messages, _ in samples],
            "_system": [""] * len(samples), "_tools": [""] * len(samples),
            "_images": [images for _, images in samples], "_videos": [[] for _ in samples],
            "_audios": [[] for _ in samples]}


@pytest.mark.timeout(120)
def test_map_workers_report_every_trim_and_drop_with_its_index(golden, tmp_path):
    from llamafactory.data.processor import SupervisedDatasetProcessor
    from llamafactory.data.template import get_template_and_fix_tokenizer
    from llamafactory.hparams import DataArguments

    from datasets import Dataset
    from llava_lf.host.truncation_report import REPORT_NAME, claim_and_summarise

    processor, image = golden
    data_args = DataArguments(template="llava_v1", cutoff_len=80)

    def run_sft(training_args):  # where the host's workflow calls it from, with its training_args
        return get_template_and_fix_tokenizer(processor.tokenizer, data_args)

    template = run_sft(SimpleNamespace(output_dir=str(tmp_path / "out")))
    kinds = ["kept", "trimmed", "kept", "dropped", "kept", "kept", "trimmed", "dropped", "kept"]
    by_kind = {"kept": (ONE_TURN, [image]), "trimmed": (TWO_TURNS, [image]), "dropped": (LONG_FIRST_TURN, [image])}
    dataset = Dataset.from_dict(_host_rows([by_kind[kind] for kind in kinds]))
    host = SupervisedDatasetProcessor(template=template, tokenizer=processor.tokenizer, processor=processor,
                                      data_args=data_args)
    # As the host's loader calls it, with two worker processes so each sees an offset shard.
    tokenised = dataset.map(host.preprocess_dataset, batched=True, batch_size=2, num_proc=2,
                            remove_columns=dataset.column_names, load_from_cache_file=False)
    assert [len(ids) for ids in tokenised["input_ids"]] == [1 if kind == "dropped" else 73 for kind in kinds]

    summary = claim_and_summarise(template._run_pid)
    assert summary.tokenised and summary.counts == {"trimmed": 2, "dropped": 2}
    assert (summary.trimmed_indices, summary.dropped_indices) == ([1, 6], [3, 7])
    assert "2 samples trimmed at turn boundaries (indices 1, 6), 2 dropped" in summary.log_line()
    head, *records = [json.loads(line) for line in (tmp_path / "out" / REPORT_NAME).read_text().splitlines()]
    assert head == {"summary": {"cutoff_len": 80, "template": "llava_v1", "trimmed": 2, "dropped": 2}}
    assert [(record["index"], record["action"], record["kept_turns"], record["turns"]) for record in records] == [
        (1, "trimmed", 1, 2), (3, "dropped", 0, 1), (6, "trimmed", 1, 2), (7, "dropped", 0, 1)]
    assert records[1]["first_turn_tokens"] > 80 and records[1]["images"] == [image]
    assert claim_and_summarise(template._run_pid) is None  # once per run


def test_a_run_that_tokenised_nothing_says_so(tmp_path):
    from llava_lf.host.truncation_report import claim_and_summarise, open_run

    summary = claim_and_summarise(open_run(str(tmp_path), "llava_v1"))
    assert not summary.tokenised and "came from the datasets cache" in summary.log_line()
    assert not (tmp_path / "llava_lf_truncation.jsonl").exists()


def test_the_host_call_shapes_we_read_are_still_there():
    """Pinned host: the frames `host_context` reads. If LLaMA-Factory or datasets moves these, this fails first."""
    import inspect

    from llamafactory.data.processor import SupervisedDatasetProcessor
    from llamafactory.train.sft.workflow import run_sft

    from datasets import arrow_dataset
    from llava_lf.host import context as host_context

    encode = SupervisedDatasetProcessor._encode_data_example
    assert encode.__name__ == host_context.ENCODE_EXAMPLE and "encode_multiturn" in encode.__code__.co_names
    assert {"self", "images"} <= set(encode.__code__.co_varnames)
    preprocess = SupervisedDatasetProcessor.preprocess_dataset
    assert preprocess.__name__ == host_context.PREPROCESS and "i" in preprocess.__code__.co_varnames
    assert "training_args" in inspect.signature(run_sft).parameters
    assert "get_template_and_fix_tokenizer" in run_sft.__code__.co_names
    source = inspect.getsource(arrow_dataset.Dataset._map_single)
    assert f"def {host_context.DATASETS_APPLY}(pa_inputs, indices, offset=0):" in source
