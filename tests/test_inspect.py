"""`llava-lf inspect` on small files in LLaVA's own shapes; every expected figure is counted by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from llava_lf.cli import run
from llava_lf.data.inspect import DatasetInput, InspectOptions, inspect_datasets

pytestmark = pytest.mark.host

SHORT = "Answer the question using a single word or phrase."


def _pairs(*texts: str) -> list[dict]:
    return [{"from": "human" if i % 2 == 0 else "gpt", "value": text} for i, text in enumerate(texts)]


def _write(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(records, indent=2, ensure_ascii=False), encoding="utf-8")
    return path


def _image(path: Path, size: tuple[int, int], fmt: str = "JPEG") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (120, 30, 200)).save(path, fmt)


def _truncated_jpeg(path: Path, size: tuple[int, int]) -> None:
    """A JPEG cut off just after its start-of-scan marker: the header is whole, the pixels are gone."""
    _image(path, size)
    data = path.read_bytes()
    path.write_bytes(data[: data.index(b"\xff\xda") + 16])


# LLaVA-Instruct-158K: ids are COCO image ids, so the same image's records share an id across types.
INSTRUCT = [
    {"id": "000000033471", "image": "000000033471.jpg", "conversations": _pairs(
        "<image>\nWhat are the colors of the bus in the image?",  # 10 words
        "The bus in the image is white and red.",  # 9
        "What feature can be seen on the back of the bus?",  # 11
        "The back of the bus features an advertisement.")},  # 8  -> 38 words, 2 pairs: conversation
    {"id": "000000052846", "image": "000000052846.jpg", "conversations": _pairs(
        "Describe the following image in detail\n<image>",  # 6 words: a detail instruction
        "A dog sits on a red sofa next to a sleeping cat.")},  # 12 -> 18 words
    {"id": "000000334872", "image": "000000334872.jpg", "conversations": _pairs(
        "<image>\nWhy might the man be holding an umbrella?",  # 8 words
        "It is raining, so he keeps himself dry.")},  # 8 -> 16 words, complex
    {"id": "000000033471", "image": "000000033471.jpg", "conversations": _pairs(
        "<image>\nWhat is unusual about this scene?",  # 6 words
        "I'm sorry, but I cannot tell from the image.")},  # 9 -> 15 words, complex; a refusal; a repeated id
]

MIX = [
    {"id": "000000033471", "image": "coco/train2017/000000033471.jpg", "conversations": _pairs(
        f"<image>\nWhat are the colors of the bus in the image?\n{SHORT}", "White and red")},
    {"id": "1592343", "image": "gqa/images/1592343.jpg", "conversations": _pairs(
        f"<image>\nIs the sky blue?\n{SHORT}", "Yes", f"Is the grass green?\n{SHORT}", "No")},
    {"id": "71320479X", "image": "ocr_vqa/images/71320479X.jpg", "conversations": _pairs(
        "<image>\nWho wrote this book?", "Jane Doe", "What is the title of this book?", "A Small Book")},
    {"id": "71320480X", "image": "ocr_vqa/images/71320480X.jpg", "conversations": _pairs(
        "<image>\nWhat is the title of this book?", "Another Book")},
    {"id": "71320481X", "image": "ocr_vqa/images/71320480X.jpg", "conversations": _pairs(  # same content as above
        "<image>\nWhat is the title of this book?", "Another Book")},
    {"id": "011e7e629fb9ae7b", "image": "textvqa/train_images/011e7e629fb9ae7b.jpg", "conversations": _pairs(
        "<image>\nWhat is written on the sign?", "stop")},  # the image file is missing
    {"id": "2345", "image": "vg/VG_100K/2345.jpg", "conversations": _pairs("<image>\nWhat color is the bus?", " ")},
    {"id": "i6IyJda_0", "model": "", "conversations": _pairs(  # ShareGPT, text-only
        "Write a haiku about rain.", "As an AI language model, I cannot feel rain, but here is one: grey drops fall.")},
    {"id": "wVxKXj2_0", "model": "", "conversations": _pairs("你好，请介绍一下你自己。", "我是一个人工智能助手，很高兴为你服务。")},
]


@pytest.fixture
def instruct(tmp_path) -> tuple[Path, Path]:
    folder = tmp_path / "coco" / "train2017"
    _image(folder / "000000033471.jpg", (640, 480))
    _image(folder / "000000052846.jpg", (300, 600))
    _truncated_jpeg(folder / "000000334872.jpg", (400, 400))
    return _write(tmp_path / "llava_instruct_150k.json", INSTRUCT), folder


@pytest.fixture
def mix(tmp_path) -> tuple[Path, Path]:
    root = tmp_path / "playground"
    _image(root / "coco/train2017/000000033471.jpg", (640, 480))
    _image(root / "gqa/images/1592343.jpg", (500, 333))
    _image(root / "ocr_vqa/images/71320479X.jpg", (300, 450))
    _image(root / "ocr_vqa/images/71320480X.jpg", (300, 450))
    _image(root / "vg/VG_100K/2345.jpg", (800, 600))
    return _write(tmp_path / "llava_v1_5_mix665k.json", MIX), root


def test_instruct_158k_types_lengths_images_and_rejections(instruct):
    path, folder = instruct
    [card] = inspect_datasets([DatasetInput.parse(str(path))], InspectOptions(image_folder=folder))["datasets"]
    composition = card["composition"]
    assert composition["records"] == 4 and composition["with_image"] == 4 and composition["text_only"] == 0
    assert composition["types"] == {"complex": 2, "conversation": 1, "detail": 1}
    assert composition["types_told_by"] == {"shape": 4}
    assert composition["pairs_per_record_counts"] == {"1": 3, "2": 1}
    assert composition["sources"] == {"images": 4}  # no folder, no source field, a numeric id
    words = card["lengths"]["words_per_record"]
    assert (words["count"], words["total"], words["min"], words["p50"], words["max"]) == (4, 38 + 18 + 16 + 15, 15, 16, 38)
    by_type = card["lengths"]["answer_words_by_type"]
    assert (by_type["conversation"]["total"], by_type["detail"]["total"], by_type["complex"]["total"]) == (17, 12, 17)
    diversity = card["diversity"]
    assert diversity["questions"] == 5 and diversity["distinct_questions"] == 5 and diversity["repeated_questions"] == []
    assert diversity["question_first_word"][0] == {"words": "what", "count": 3}
    images = card["images"]
    assert (images["uses"], images["distinct"], images["used_by_several_records"]) == (4, 3, 1)
    assert images["most_used"] == [{"image": "000000033471.jpg", "records": 2}]
    # The truncated JPEG's size comes from its header: nothing was decoded.
    assert images["unreadable"] == 0 and images["width"]["total"] == 640 + 300 + 400
    assert images["aspect_ratio"] == {"0.5-0.75": 1, "square": 1, "1.05-1.34": 1}
    problems = card["problems"]
    assert problems["rejected"] == 1 and problems["reasons"] == {"duplicate_id": 1}
    assert problems["examples"]["duplicate_id"][0]["record"] == "record 3 (id 000000033471)"
    assert (problems["refusal_answers"], problems["refusal_records"], problems["empty_answers"]) == (1, 1, 0)


def test_mix665k_sources_duplicates_missing_images_and_text_only(mix):
    path, root = mix
    [card] = inspect_datasets([DatasetInput.parse(str(path))], InspectOptions(image_folder=root))["datasets"]
    composition = card["composition"]
    assert (composition["records"], composition["with_image"], composition["text_only"]) == (9, 7, 2)
    assert composition["sources"] == {"ocr_vqa": 3, "text-only": 2, "coco": 1, "gqa": 1, "textvqa": 1, "vg": 1}
    assert composition["types"] == {"unknown": 9}
    diversity = card["diversity"]
    assert diversity["exact_duplicate_records"] == 1
    assert diversity["duplicate_examples"] == ["record 4 (id 71320481X)"]
    assert diversity["repeated_questions"][0] == {"text": "What is the title of this book?", "count": 3}
    assert diversity["questions"] == 11 and diversity["distinct_questions"] == 9
    images = card["images"]
    assert (images["uses"], images["distinct"], images["missing"]) == (6, 5, 1)
    assert images["missing_examples"] == ["textvqa/train_images/011e7e629fb9ae7b.jpg"]
    problems = card["problems"]
    assert problems["reasons"] == {"missing_image": 1, "empty_turn": 1}
    assert (problems["empty_answers"], problems["refusal_records"], problems["non_latin_records"]) == (1, 1, 1)


def test_scienceqa_converted_image_last_and_text_only(tmp_path):
    records = [
        {"id": "5", "image": "5/image.png", "conversations": _pairs(
            "Context: The passage describes a cold day.\nWhich word best describes the weather?\n"
            "Options: (A) hot (B) cold\n<image>",  # 7 + 6 + 5 = 18 words
            "LECTURE: Weather is the state of the air.\nSOLUTION: The passage says it is cold. The answer is B.")},  # 19
        {"id": "8", "conversations": _pairs(
            "Context: N/A\nWhich tense does the sentence use?\nMona will print her name.\n"
            "Options: (A) future tense (B) past tense",  # 2 + 6 + 5 + 7 = 20 words
            "LECTURE: A verb can show the future. The answer is A.")},  # 11
    ]
    path = _write(tmp_path / "llava_train_QCM-LEA.json", records)
    _image(tmp_path / "images/5/image.png", (200, 100), "PNG")
    [card] = inspect_datasets([DatasetInput("sqa", path)], InspectOptions(image_folder=tmp_path / "images"))["datasets"]
    assert card["composition"]["sources"] == {"images": 1, "text-only": 1}  # numbered folders are not sources
    assert card["lengths"]["words_per_record"]["total"] == 18 + 19 + 20 + 11
    assert card["diversity"]["question_first_word"] == [{"words": "context", "count": 2}]
    assert card["problems"]["rejected"] == 0  # '<image>' last is moved to the front, as LLaVA does
    assert card["images"]["formats"] == {"PNG": 1} and card["images"]["aspect_ratio"] == {"1.8-2.5": 1}


def test_pretraining_files_with_the_plain_template(tmp_path):
    lcs = _write(tmp_path / "blip_laion_cc_sbu_558k.json", [
        {"id": "004539375", "image": "00453/004539375.jpg", "conversations": _pairs(
            "Render a clear and concise summary of the photo.\n<image>",
            "select luxury furniture 3 - inch gel memory foam mattress topper")},
        {"id": "002239345", "image": "00223/002239345.jpg", "conversations": _pairs(
            "Write a terse but informative summary of the picture.\n<image>", "a grey watch with an army style strap")},
    ])
    cc3m = _write(tmp_path / "chat.json", [
        {"id": "GCC_train_002582585", "image": "GCC_train_002582585.jpg", "conversations": _pairs(
            "Provide a brief description of the given image.\n<image>", "olive oil is a healthy ingredient used liberally .")},
        {"id": "GCC_train_002582586", "image": "GCC_train_002582586.jpg", "conversations": _pairs(
            "<image>\nDescribe the image.", "a dog", "And the sky?", "blue")},  # two pairs: not stage-1 data
    ])
    card = inspect_datasets([DatasetInput.parse(f"lcs={lcs}"), DatasetInput.parse(f"cc3m={cc3m}")],
                            InspectOptions(template="llava_plain"))
    lcs_card, cc3m_card = card["datasets"]
    assert lcs_card["composition"]["sources"] == {"images": 2}
    assert lcs_card["problems"]["rejected"] == 0 and lcs_card["images"]["uses"] == 0  # no image folder: not read
    assert cc3m_card["composition"]["sources"] == {"GCC": 2}
    assert cc3m_card["problems"]["reasons"] == {"plain_shape": 1}
    assert any("no --image-folder" in note for note in card["notes"])


def test_converted_dataset_reads_images_from_its_own_folder(instruct, tmp_path):
    from llava_lf.data.convert import convert_file

    path, folder = instruct
    convert_file(path, folder, tmp_path / "datasets", "instruct")
    [card] = inspect_datasets([DatasetInput.parse(str(tmp_path / "datasets/instruct.jsonl"))],
                              InspectOptions())["datasets"]
    assert card["formats"] == {"converted": 3}  # the repeated id was rejected by the conversion
    assert card["images"]["missing"] == 0 and card["images"]["distinct"] == 3
    assert card["problems"]["rejected"] == 0


def test_near_duplicate_images_are_grouped(tmp_path):
    import numpy as np

    rng = np.random.default_rng(0)
    pattern = (rng.random((8, 8, 3)) * 255).astype(np.uint8).repeat(40, 0).repeat(40, 1)  # 320x320 blocks
    other = (rng.random((8, 8, 3)) * 255).astype(np.uint8).repeat(40, 0).repeat(40, 1)
    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(pattern).save(folder / "a.png")
    Image.fromarray(pattern).resize((160, 160)).save(folder / "a_small.jpg", quality=80)  # resized, re-encoded
    Image.fromarray(other).save(folder / "b.png")
    records = [{"id": name, "image": name, "conversations": _pairs("<image>\nWhat is it?", "Blocks.")}
               for name in ("a.png", "a_small.jpg", "b.png")]
    path = _write(tmp_path / "set.json", records)
    [card] = inspect_datasets([DatasetInput.parse(str(path))],
                              InspectOptions(image_folder=folder, near_duplicates=True, workers=1))["datasets"]
    near = card["near_duplicates"]
    assert near["hashed"] == 3
    assert [group["images"] for group in near["groups"]] == [["a.png", "a_small.jpg"]]


def test_cli_writes_a_side_by_side_card(instruct, mix, tmp_path, capsys):
    (instruct_path, instruct_folder), (mix_path, mix_root) = instruct, mix
    out = tmp_path / "card"
    code = run(["inspect", f"instruct={instruct_path}", f"mix={mix_path}", "--image-folder", str(instruct_folder),
                "--image-folder", str(mix_root), "--out", str(out)])
    assert code == 0
    card = json.loads((out / "card.json").read_text())
    assert [d["label"] for d in card["datasets"]] == ["instruct", "mix"]
    assert [d["composition"]["records"] for d in card["datasets"]] == [4, 9]
    markdown = (out / "card.md").read_text()
    assert "| records | 4 | 9 |" in markdown
    assert "| records `llava-lf convert` would reject | 1 (25.0%) | 2 (22.2%) |" in markdown
    for chart in ("types.png", "words.png", "answer_lengths.png", "first_words.png", "aspect_ratios.png"):
        assert (out / chart).read_bytes()[:4] == b"\x89PNG", chart
    assert "mix: 9 records, 7 with an image, 2 the converter would reject" in capsys.readouterr().out


def test_cli_bad_input_exits_2_naming_the_problem(tmp_path, capsys):
    assert run(["inspect", str(tmp_path / "nothing.json"), "--out", str(tmp_path / "card")]) == 2
    assert "nothing.json: no such file" in capsys.readouterr().err
    broken = tmp_path / "broken.json"
    broken.write_text('[{"id": 1,, }]')
    assert run(["inspect", str(broken), "--out", str(tmp_path / "card")]) == 2
    assert "line 1, column" in capsys.readouterr().err
    assert run(["inspect", str(broken), "--out", str(tmp_path / "card"), "--cutoff-len", "10"]) == 2
    assert "--cutoff-len needs --tokenizer" in capsys.readouterr().err


def test_tokens_and_cutoff_with_the_hosts_template(tmp_path, tiny_llava, demo_data):
    """Token counts come from the host's own template (checked here against its unfitted pairs directly)."""
    from llamafactory.data.template import get_template_and_fix_tokenizer
    from llamafactory.hparams import DataArguments
    from transformers import AutoTokenizer

    data, _ = demo_data
    image = min(p.name for p in data.image_dir.iterdir())
    records = [
        {"id": "a", "image": image, "conversations": _pairs("<image>\nWhat is shown?", "A red circle.")},
        {"id": "b", "image": image, "conversations": _pairs("<image>\nWhat is shown?", "A red circle.",
                                                            *["And then? " * 10, "a blue square " * 10] * 3)},
        {"id": "c", "conversations": _pairs("Name a colour. " * 40, "Red.")},
    ]
    path = _write(tmp_path / "set.json", records)
    tokenizer = AutoTokenizer.from_pretrained(tiny_llava)
    template = get_template_and_fix_tokenizer(tokenizer, DataArguments(template="llava_v1"))
    expected = []
    for record in records:
        roles = {"human": "user", "gpt": "assistant"}
        messages = [{"role": roles[t["from"]], "content": t["value"]} for t in record["conversations"]]
        pairs = template.encode_pairs(tokenizer, messages, None)
        lengths = [len(s) + len(t) for s, t in pairs]
        lengths[0] += (9 - 1) * ("image" in record)  # the tiny model's 3 x 3 image tokens replace '<image>'
        expected.append(lengths)
    cutoff = expected[0][0] + 1  # record a fits; b keeps its first pair only; c's first pair alone is longer
    assert sum(expected[1][:2]) > cutoff and expected[2][0] > cutoff
    [card] = inspect_datasets([DatasetInput("set", path)], InspectOptions(
        image_folder=data.image_dir, tokenizer=tiny_llava, cutoff_len=cutoff))["datasets"]
    tokens = card["lengths"]["tokens"]
    assert tokens["per_record"]["total"] == sum(map(sum, expected))
    assert (tokens["over_cutoff"], tokens["trimmed"], tokens["dropped"]) == (2, 1, 1)
    assert tokens["pairs_cut"] == (len(expected[1]) - 1) + 1
    assert card["problems"]["reasons"] == {"too_long": 1}
