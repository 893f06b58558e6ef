"""The generator's parts on real files: COCO context rendering, prompt files, reply parsing, resumable JSONL."""

from __future__ import annotations

import json
import os
import threading
import time
import zipfile

import pytest

from llava_lf.errors import LlavaLfError


def _write_coco(tmp_path, caption_items, instance_items, images=None, categories=None):
    images = images if images is not None else [{"id": 7, "file_name": "a.jpg", "width": 640, "height": 480}]
    categories = categories if categories is not None else [{"id": 1, "name": "dog"}, {"id": 2, "name": "frisbee"}]
    captions, instances = tmp_path / "captions_x.json", tmp_path / "instances_x.json"
    captions.write_text(json.dumps({"images": images, "annotations": caption_items}))
    instances.write_text(json.dumps({"images": images, "annotations": instance_items, "categories": categories}))
    return captions, instances


def test_context_renders_captions_then_normalised_boxes(tmp_path):
    from llava_lf.data.generate.coco import load_contexts

    captions, instances = _write_coco(
        tmp_path,
        [{"id": 1, "image_id": 7, "caption": " A dog  jumps.\n"}, {"id": 2, "image_id": 7, "caption": "A frisbee."}],
        [{"id": 1, "image_id": 7, "category_id": 1, "bbox": [64, 48, 320, 240]},
         {"id": 2, "image_id": 7, "category_id": 2, "bbox": [600, 0, 80, 10.5]}],  # runs past the right edge
    )
    [context], uncaptioned = load_contexts(captions, instances)
    assert uncaptioned == []
    assert context.render(with_boxes=False) == "A dog jumps.\nA frisbee."
    assert context.render(with_boxes=True) == ("A dog jumps.\nA frisbee.\n\n"
                                               "dog: [0.100, 0.100, 0.600, 0.600]\n"
                                               "frisbee: [0.938, 0.000, 1.000, 0.022]")


def test_annotation_problems_are_listed_together_with_fixes(tmp_path):
    from llava_lf.data.generate.coco import load_contexts

    captions, instances = _write_coco(
        tmp_path,
        [{"id": 1, "image_id": 7, "caption": "ok"}, {"id": 2, "image_id": 99, "caption": "orphan"},
         {"id": 3, "image_id": 7}],
        [{"id": 1, "image_id": 7, "category_id": 5, "bbox": [0, 0, 1, 1]},
         {"id": 2, "image_id": 7, "category_id": 1, "bbox": [0, 0, 1]}],
    )
    with pytest.raises(LlavaLfError) as error:
        load_contexts(captions, instances)
    message = str(error.value)
    assert "4 problem(s)" in message
    assert "captions_x.json annotations[1]: image_id 99 is not in 'images'" in message
    assert "captions_x.json annotations[2]: needs a string 'caption'" in message
    assert "instances_x.json annotations[0]: category_id 5 is not in 'categories'" in message
    assert "instances_x.json annotations[1]: 'bbox' must be [x, y, width, height]" in message


def test_images_without_captions_are_reported_not_sent(tmp_path):
    from llava_lf.data.generate.coco import load_contexts

    images = [{"id": 7, "file_name": "a.jpg", "width": 10, "height": 10},
              {"id": 8, "file_name": "b.jpg", "width": 10, "height": 10}]
    captions, _ = _write_coco(tmp_path, [{"id": 1, "image_id": 8, "caption": "b"}], [], images=images)
    contexts, uncaptioned = load_contexts(captions, None)
    assert [c.image_id for c in contexts] == [8] and uncaptioned == [7]


def test_packaged_prompts_load_and_messages_alternate():
    from llava_lf.data.generate.coco import Box, ImageContext
    from llava_lf.data.generate.tasks import TASK_TYPES, build_messages, detail_instruction, load_prompts

    prompts = load_prompts()
    assert set(prompts.tasks) == set(TASK_TYPES) and len(prompts.detail_instructions) >= 10
    context = ImageContext(3, "x.jpg", ("A cat.",), (Box("cat", 0.1, 0.2, 0.3, 0.4),))
    for task in TASK_TYPES:
        examples = prompts.tasks[task].examples
        assert len(examples) >= 2
        # Examples of the box-using types show boxes; conversation examples must not, or the teacher imitates them.
        assert all((": [" in example.context) == (task != "conversation") for example in examples)
        messages = build_messages(prompts, task, context, shots=1)
        assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
        assert (messages[-1]["content"] == "A cat.") == (task == "conversation")
    assert detail_instruction(prompts, 3, seed=0) == detail_instruction(prompts, 3, seed=0)
    assert len({detail_instruction(prompts, image_id, seed=0) for image_id in range(50)}) > 5


def test_example_files_are_parsed_and_checked(tmp_path):
    from llava_lf.data.generate.tasks import parse_examples

    text = "header\n=== context\ncap one\ncap two\n=== reply\nQuestion: a?\nAnswer: b\n\n=== context\nc\n=== reply\nd\n"
    examples = parse_examples(text, "f.txt")
    assert [(e.context, e.reply) for e in examples] == [("cap one\ncap two", "Question: a?\nAnswer: b"), ("c", "d")]
    with pytest.raises(LlavaLfError, match="f.txt: the example ending at line 2 needs"):
        parse_examples("=== context\nonly context\n=== context\nx\n=== reply\ny\n", "f.txt")
    with pytest.raises(LlavaLfError, match="f.txt:1: '=== reply' must follow"):
        parse_examples("=== reply\nx\n", "f.txt")


def test_prompt_folder_missing_a_file_names_it(tmp_path):
    from llava_lf.data.generate.tasks import PACKAGED_PROMPTS, load_prompts

    for source in PACKAGED_PROMPTS.iterdir():
        (tmp_path / source.name).write_text(source.read_text())
    assert load_prompts(tmp_path).tasks["detail"].system == load_prompts().tasks["detail"].system
    os.remove(tmp_path / "complex_examples.txt")
    with pytest.raises(LlavaLfError, match="has no complex_examples.txt"):
        load_prompts(tmp_path)


@pytest.mark.parametrize(("task", "text", "finish", "reason"), [
    ("conversation", "  ", "stop", "empty"),
    ("conversation", "Question: a?\nAnswer: b\nQuestion: c?\nAnswer:", "length", "truncated"),
    ("conversation", "I am unable to see images.", "stop", "no_exchanges"),
    ("conversation", "Question: a?\nAnswer: b", "stop", "exchange_count"),
    ("conversation", "Answer: b\nQuestion: a?", "stop", "unpaired"),
    ("conversation", "Question: a?\nQuestion: b?\nAnswer: c", "stop", "unpaired"),
    ("conversation", "Question: a?\nAnswer:\nQuestion: c?\nAnswer: d", "stop", "empty_turn"),
    ("conversation", "x" * 300 + "\nQuestion: a?\nAnswer: b\nQuestion: c?\nAnswer: d", "stop", "preamble"),
    ("complex", "Question: a?\nAnswer: b\nQuestion: c?\nAnswer: d", "stop", "exchange_count"),
    ("complex", "Question: Why?\nAnswer: The box [0.100, 0.2, 0.3, 0.4] shows it.", "stop", "mentions_context"),
    ("complex", "Question: Why?\nAnswer: The captions say so.", "stop", "mentions_context"),
    ("detail", "A dog.", "stop", "too_short"),
    ("detail", "Question: what?\nAnswer: a dog jumping high in a park on a sunny afternoon", "stop", "labelled_detail"),
    ("detail", "<image> A dog jumping high in a park on a sunny afternoon near trees.", "stop", "image_token"),
])
def test_bad_replies_are_rejected_with_their_reason(task, text, finish, reason):
    from llava_lf.data.generate.parse import ReplyRejected, parse_reply

    with pytest.raises(ReplyRejected) as rejected:
        parse_reply(task, text, finish)
    assert rejected.value.reason == reason


def test_good_replies_parse_in_the_forms_teachers_write():
    from llava_lf.data.generate.parse import Exchange, parse_reply

    reply = ("Sure, here it is:\n**Question:** What is the dog doing?\n**Answer:** It jumps.\n\nIt is fast.\n"
             "Q: What colour is the frisbee?\nA: Yellow.")
    assert parse_reply("conversation", reply, "stop") == [
        Exchange("What is the dog doing?", "It jumps.\n\nIt is fast."), Exchange("What colour is the frisbee?", "Yellow.")]
    description = "A brown dog leaps for a yellow frisbee above a grassy park while its owner watches."
    assert parse_reply("detail", f"\n{description}\n", None) == description


def test_appender_recovers_torn_tail_and_keeps_complete_rows(tmp_path):
    from llava_lf.common.jsonl import JsonlAppender

    path = tmp_path / "out.jsonl"
    path.write_bytes(b'{"id": "a"}\n{"id": "b"}\n{"id": "c", "conv')  # killed mid-write
    with JsonlAppender(path) as log:
        assert [row["id"] for row in log.rows] == ["a", "b"] and log.dropped_tail == b'{"id": "c", "conv'
        log.append({"id": "c"})
    assert path.read_text() == '{"id": "a"}\n{"id": "b"}\n{"id": "c"}\n'

    path.write_bytes(b'{"id": "a"}\n{"id": "b"}')  # complete, only the newline missing: kept
    with JsonlAppender(path) as log:
        assert [row["id"] for row in log.rows] == ["a", "b"] and not log.dropped_tail
        log.append({"id": "c"})
    assert path.read_text() == '{"id": "a"}\n{"id": "b"}\n{"id": "c"}\n'

    path.write_bytes(b'{"id": "a"}\n\x00\x00\x00\n')  # zero-filled last line after a crash
    with JsonlAppender(path) as log:
        assert [row["id"] for row in log.rows] == ["a"]
    assert path.read_bytes() == b'{"id": "a"}\n'


def test_appender_refuses_damage_before_the_last_line_and_a_second_writer(tmp_path):
    from llava_lf.common.jsonl import JsonlAppender

    path = tmp_path / "out.jsonl"
    path.write_text('{"id": "a"}\nnot json\n{"id": "b"}\n')
    with pytest.raises(LlavaLfError, match="out.jsonl:2: not a JSON object"):
        JsonlAppender(path).__enter__()
    path.write_text('{"id": "a"}\n')
    with JsonlAppender(path), pytest.raises(LlavaLfError, match="being written by another run"):
        JsonlAppender(path).__enter__()
    with JsonlAppender(path) as log:  # the lock went with the first writer
        assert len(log.rows) == 1


def test_rate_limiter_spaces_starts_and_pauses_everyone():
    from llava_lf.common.openai_client import RateLimiter, parse_retry_after

    limiter = RateLimiter(per_minute=1200)  # 50 ms apart
    starts = []

    def take():
        limiter.acquire()
        starts.append(time.monotonic())

    threads = [threading.Thread(target=take) for _ in range(5)]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert max(starts) - began >= 4 * 0.05 - 0.005
    limiter = RateLimiter(per_minute=None)
    limiter.pause_until(time.monotonic() + 0.2)
    began = time.monotonic()
    limiter.acquire()
    assert time.monotonic() - began >= 0.19
    assert parse_retry_after("2") == 2.0 and parse_retry_after("junk") is None and parse_retry_after(None) is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date in the past: go now
    assert parse_retry_after("86400") == 600.0  # capped


def test_base_url_must_be_http():
    from llava_lf.data.generate.client import TeacherClient, TeacherConfig

    with pytest.raises(LlavaLfError, match="must be an http"):
        TeacherClient(TeacherConfig(base_url="localhost:8000/v1", model="m"))


def test_prompt_files_ship_in_the_wheel(plugin_wheel):
    from llava_lf.data.generate.tasks import PACKAGED_PROMPTS

    names = set(zipfile.ZipFile(plugin_wheel).namelist())
    shipped = {f"llava_lf/data/generate/prompts/{path.name}" for path in PACKAGED_PROMPTS.iterdir()}
    assert len(shipped) == 7 and shipped <= names


@pytest.mark.parametrize(("extra", "message"), [
    (["--out", "gen.json"], "must end in .jsonl"),
    (["--out", "gen.jsonl", "--types", "detail"], "--instances is needed for the detail and complex types"),
    (["--out", "gen.jsonl", "--types", "conversation,story"], "unknown type(s) ['story']"),
    (["--out", "gen.jsonl", "--types", "conversation", "--prompts", "nowhere"], "has no conversation_system.txt"),
])
def test_cli_usage_errors_exit_2_with_the_fix(tmp_path, capsys, monkeypatch, extra, message):
    from llava_lf.cli import run

    captions, _ = _write_coco(tmp_path, [{"id": 1, "image_id": 7, "caption": "A dog."}], [])
    monkeypatch.chdir(tmp_path)
    assert run(["generate", "--captions", str(captions), "--teacher-base-url", "http://127.0.0.1:9/v1",
                "--teacher-model", "m", *extra]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "gen.jsonl").exists()
