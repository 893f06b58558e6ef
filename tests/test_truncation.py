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

pytestmark = pytest.mark.host

ONE_TURN = [{"role": "user", "content": "<image>\nWhat color is the circle?"}, {"role": "assistant", "content": "red"}]
TWO_TURNS = ONE_TURN + [{"role": "user", "content": "How many shapes are there?"}, {"role": "assistant", "content": "2"}]
LONG_FIRST_TURN = [{"role": "user", "content": "What color is the circle? " * 3 + "<image>"},
                   {"role": "assistant", "content": "red"}]


@pytest.fixture(scope="module")
def golden(tmp_path_factory):
    folder = tmp_path_factory.mktemp("golden")
    return build_golden_processor(folder / "processor"), write_image(folder / "red.png")


def test_fit_turns_keeps_whole_pairs():
    from llava_lf.common.turn_fit import fit_turns

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


def test_outside_the_host_loader_pairs_are_whole_and_fitting_refuses(golden):
    """Token counting (the converter's --cutoff-len) takes whole pairs; fitting without a bound run refuses loudly."""
    from llamafactory.data.template import TEMPLATES

    from llava_lf.errors import LlavaLfError

    processor, image = golden
    template = TEMPLATES["llava_v1"]
    messages = template.mm_plugin.process_messages(TWO_TURNS, [image], [], [], processor)
    pairs = template.encode_pairs(processor.tokenizer, messages)
    assert [len(source) + len(target) for source, target in pairs] == [73, 16]
    with pytest.raises(LlavaLfError, match=r"outside the host's dataset preprocessing.*_get_preprocessed_dataset"):
        template.encode_multiturn(processor.tokenizer, messages)


def _host_rows(samples):
    return {"_prompt": [messages[:-1] for messages, _ in samples], "_response": [messages[-1:] for messages, _ in samples],
            "_system": [""] * len(samples), "_tools": [""] * len(samples),
            "_images": [images for _, images in samples], "_videos": [[] for _ in samples],
            "_audios": [[] for _ in samples]}


@pytest.mark.timeout(240)
@pytest.mark.parametrize("start_method", ["fork", pytest.param("spawn", marks=pytest.mark.slow)])  # spawn: ~17 s
def test_map_workers_report_every_trim_and_drop_with_its_row(golden, tmp_path, start_method):
    """Through the host's own loader function (our seam wraps it), two map workers forked or spawned."""
    import multiprocess
    from llamafactory.data import loader
    from llamafactory.data.template import get_template_and_fix_tokenizer
    from llamafactory.hparams import DataArguments

    from datasets import Dataset
    from llava_lf.common.fit_report import REPORT_NAME

    processor, image = golden
    data_args = DataArguments(template="llava_v1", cutoff_len=80, preprocessing_num_workers=2,
                              preprocessing_batch_size=2, overwrite_cache=True)
    training_args = SimpleNamespace(output_dir=str(tmp_path / "out"), predict_with_generate=False,
                                    local_process_index=0, should_log=False)
    template = get_template_and_fix_tokenizer(processor.tokenizer, data_args)
    kinds = ["kept", "trimmed", "kept", "dropped", "kept", "kept", "trimmed", "dropped", "kept"]
    by_kind = {"kept": (ONE_TURN, [image]), "trimmed": (TWO_TURNS, [image]), "dropped": (LONG_FIRST_TURN, [image])}
    dataset = Dataset.from_dict(_host_rows([by_kind[kind] for kind in kinds]))
    before = multiprocess.get_start_method(allow_none=True)
    multiprocess.set_start_method(start_method, force=True)
    try:
        tokenised = loader._get_preprocessed_dataset(dataset, data_args, training_args, "sft", template,
                                                     processor.tokenizer, processor)
    finally:
        multiprocess.set_start_method(before, force=True)
    assert [len(ids) for ids in tokenised["input_ids"]] == [1 if kind == "dropped" else 73 for kind in kinds]

    head, *records = [json.loads(line) for line in (tmp_path / "out" / REPORT_NAME).read_text().splitlines()]
    assert head == {"summary": {"cutoff_len": 80, "template": "llava_v1", "trimmed": 2, "dropped": 2}}
    assert [(record["index"], record["action"], record["kept_turns"], record["turns"]) for record in records] == [
        (1, "trimmed", 1, 2), (3, "dropped", 0, 1), (6, "trimmed", 1, 2), (7, "dropped", 0, 1)]
    assert records[1]["first_turn_tokens"] > 80 and records[1]["images"] == [image]
    assert records[0]["question"] == "What color is the circle?" and records[0]["sample"] == records[2]["sample"]
    assert not list((tmp_path / "out").glob(".llava_lf_truncation*"))  # the workers' parts are gone


def test_a_run_that_tokenised_nothing_says_so(tmp_path):
    from llava_lf.common.fit_report import PreprocessRun, collect

    summary = collect(PreprocessRun(cutoff_len=64, output_dir=str(tmp_path), template="llava_v1"), None)
    assert not summary.tokenised and "came from the datasets cache" in summary.log_line()
    assert not (tmp_path / "llava_lf_truncation.jsonl").exists()


def test_fitting_stops_when_the_loader_seam_is_absent(golden, tmp_path):
    """The host's loader unwrapped (as on a host without the seam): the first sample stops tokenising, by name."""
    from llamafactory.data import loader
    from llamafactory.data.template import get_template_and_fix_tokenizer
    from llamafactory.hparams import DataArguments

    from datasets import Dataset
    from llava_lf.errors import LlavaLfError
    from llava_lf.seams.dataset_run import _WRAPPED

    processor, image = golden
    data_args = DataArguments(template="llava_v1", cutoff_len=80)
    training_args = SimpleNamespace(output_dir=str(tmp_path), predict_with_generate=False, local_process_index=0,
                                    should_log=False)
    template = get_template_and_fix_tokenizer(processor.tokenizer, data_args)
    unwrapped = getattr(loader._get_preprocessed_dataset, _WRAPPED)
    with pytest.raises(LlavaLfError, match="_get_preprocessed_dataset"):
        unwrapped(Dataset.from_dict(_host_rows([(ONE_TURN, [image])])), data_args, training_args, "sft", template,
                  processor.tokenizer, processor)


def test_the_report_keeps_any_text_a_json_file_can_hold(tmp_path):
    """Hostile text: a lone surrogate (valid JSON, not UTF-8) and CJK come through the parts and the report."""
    from llava_lf.common.fit_report import PreprocessRun, SampleRecord, collect, record_sample, sample_fingerprint

    run = PreprocessRun(cutoff_len=8, output_dir=str(tmp_path), template="llava_v1")
    questions = ["图里有什么颜色？", "broken \ud800 text"]
    fingerprints = [sample_fingerprint([{"role": "user", "content": question}], ["a.png"]) for question in questions]
    assert len(set(fingerprints)) == 2
    for question, fingerprint in zip(questions, fingerprints):
        record_sample(run, SampleRecord(sample=fingerprint, action="dropped", reason="r", cutoff_len=8, tokens=9,
                                        kept_tokens=0, first_turn_tokens=9, turns=1, kept_turns=0, image_tokens=0,
                                        kept_image_tokens=0, images=["a.png"], question=question))
    summary = collect(run, None)
    assert summary.counts == {"dropped": 2}
    text = (tmp_path / "llava_lf_truncation.jsonl").read_text(encoding="utf-8")
    assert "图里有什么颜色" in text  # readable, not escaped
    assert sorted(json.loads(line)["question"] for line in text.splitlines()[1:]) == sorted(questions)
