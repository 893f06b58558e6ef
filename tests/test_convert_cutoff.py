"""--cutoff-len: counts equal the host's own preprocessing, trims at turn boundaries, rejects what cannot fit."""

from __future__ import annotations

import json

import pytest
from helpers.host_runs import bound_to_run

from llava_lf.data.convert import ConvertOptions, convert_file

pytestmark = [pytest.mark.timeout(300), pytest.mark.host]


def _pair(question: str, answer: str) -> list[dict]:
    return [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]


def _host_encode(tiny_llava, template_name: str, cutoff_len: int, record: dict, image_dir):
    """input_ids exactly as the host's supervised preprocessing builds them for training."""
    from llamafactory.data.processor.supervised import SupervisedDatasetProcessor
    from llamafactory.data.template import get_template_and_fix_tokenizer
    from llamafactory.hparams import DataArguments
    from PIL import Image
    from transformers import AutoProcessor, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_llava)
    processor = AutoProcessor.from_pretrained(tiny_llava)
    data_args = DataArguments(template=template_name, cutoff_len=cutoff_len)
    template = bound_to_run(get_template_and_fix_tokenizer(tokenizer, data_args), cutoff_len, name=template_name)
    host = SupervisedDatasetProcessor(template=template, tokenizer=tokenizer, processor=processor, data_args=data_args)
    turns = record["conversations"]
    system = turns[0]["value"] if turns[0]["from"] == "system" else None
    roles = {"human": "user", "gpt": "assistant"}
    messages = [{"role": roles[t["from"]], "content": t["value"]} for t in turns if t["from"] != "system"]
    images = [Image.open(image_dir / path).convert("RGB") for path in record["images"]]
    input_ids, _ = host._encode_data_example(messages[:-1], messages[-1:], system, None, images, [], [])
    return input_ids, tokenizer.convert_tokens_to_ids("<image>")


def _records(image: str) -> list[dict]:
    long_answer = "a red circle above a blue square " * 6
    return [
        {"id": "short", "image": image, "conversations": _pair("<image>\nWhat is shown?", "A red circle.")},
        {"id": "long", "image": image, "conversations": [*_pair("<image>\nWhat is shown?", "A red circle."),
                                                         *[t for _ in range(12) for t in _pair("And then?", long_answer)]]},
        {"id": "text", "conversations": [{"from": "system", "value": "Answer briefly."},
                                         *_pair("Name a colour.", "Red."), *_pair("Another?", long_answer * 3)]},
        {"id": "huge-first", "image": image, "conversations": _pair("<image>\n" + "Describe it all. " * 80, "No.")},
    ]


@pytest.mark.parametrize("template", ["llava_v1", "llava_plain"])
def test_counts_equal_the_hosts_and_trimmed_samples_are_not_truncated_by_it(tmp_path, tiny_llava, demo_data,
                                                                          template):
    from llava_lf.data.convert.cutoff import CutoffSpec, TurnBudget

    data, _ = demo_data
    image = min(p.name for p in data.image_dir.iterdir())
    records = _records(image)
    if template == "llava_plain":  # one pair each; the human text is dropped by the template, so a long caption
        records = [records[0], {"id": "huge-first", "image": image,
                                "conversations": _pair("<image>\nDescribe.", "a red circle " * 120)}]

    # 1. Without a binding cutoff, our per-pair counts add up to the host's length for every record.
    budget = TurnBudget(CutoffSpec(100_000, tiny_llava, template))
    assert budget.image_tokens == 9  # 48 px / 16 px patches = 3 x 3, from the model's processor config
    for record in records:
        images = [image] if "image" in record else []
        ids, _ = _host_encode(tiny_llava, template, 100_000, {**record, "images": images}, data.image_dir)
        assert sum(budget.pair_lengths(record["conversations"])) == len(ids), record["id"]

    # 2. Converted with a cutoff, the host keeps every token of every written sample: nothing cut mid-image.
    cutoff = 160
    src = tmp_path / "src.json"
    src.write_text(json.dumps(records))
    out = tmp_path / "datasets"
    report = convert_file(src, data.image_dir, out, "fit", options=ConvertOptions(
        template=template, cutoff_len=cutoff, tokenizer=tiny_llava))
    written = {r["id"]: r for r in map(json.loads, (out / "fit.jsonl").read_text().splitlines())}
    rejected = [json.loads(line) for line in (out / "fit.rejected.jsonl").read_text().splitlines()]
    assert [(row["id"], row["reason"]) for row in rejected] == [("huge-first", "too_long")]
    assert f"over --cutoff-len {cutoff}" in rejected[0]["message"]
    assert any("9 tokens per image (from the processor config" in note for note in report.notes)
    for record in written.values():
        ids, image_id = _host_encode(tiny_llava, template, cutoff, record, out)
        assert len(ids) == sum(budget.pair_lengths(record["conversations"])) <= cutoff
        assert ids.count(image_id) == 9 * len(record["images"])
    if template == "llava_v1":
        assert report.changes["turns_trimmed"] == 2  # "long" and "text"
        for name in ("long", "text"):  # whole pairs were cut, and one more pair would not have fit
            kept = written[name]["conversations"]
            source = next(r for r in records if r["id"] == name)["conversations"]
            assert kept == source[: len(kept)] and len(kept) < len(source)
            assert sum(budget.pair_lengths(source[: len(kept) + 2])) > cutoff
        assert written["short"]["conversations"] == records[0]["conversations"]


def test_a_tokenizer_without_the_image_token_counts_as_if_assembled(tiny_parts):
    """A plain LLaMA tokenizer folder (no processor config): <image> is added as assembling does, 576 by default."""
    from llava_lf.data.convert.cutoff import CutoffSpec, TurnBudget

    _, llama = tiny_parts
    budget = TurnBudget(CutoffSpec(4096, llama, "llava_v1"))
    assert budget.image_tokens == 576
    assert any("has no Llava processor config" in note for note in budget.notes)
    assert len(budget.tokenizer.encode("<image>", add_special_tokens=False)) == 1
    small = TurnBudget(CutoffSpec(4096, llama, "llava_v1", image_tokens=10))
    conversation = [*_pair("<image>\nHi", "Hello."), *_pair("More?", "No.")]
    assert [a - b for a, b in zip(budget.pair_lengths(conversation), small.pair_lengths(conversation))] == [566, 0]
    two_images = _pair("<image> <image> Compare.", "Same.")
    assert budget.pair_lengths(two_images)[0] - small.pair_lengths(two_images)[0] == 2 * 566
