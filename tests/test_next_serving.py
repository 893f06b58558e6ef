"""A LLaVA-NeXT checkpoint served and evaluated: `llava-lf eval`'s batched predict (a different number of AnyRes tiles
per image in one batch) answers as one request at a time does, and `llava-lf chat` and `llamafactory-cli api` answer
a question about an image as predict does; `llava-lf eval table` sets LLaVA-NeXT's published rows beside it; on the
tiny NeXT assembled from the session's tiny parts (48-px tiles)."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
from pathlib import Path

import pytest
from conftest import BIN, REPO, free_port, wait_for_port
from helpers.recipe_chain import cli
from helpers.tiny_next import assemble_tiny_next

pytestmark = [pytest.mark.host, pytest.mark.slow, pytest.mark.timeout(600)]

# (width, height): under a tile, one tile, wide 3:1, tall 1:3, odd, a 4:3 photo over the host's 768*768 resize
SHAPES = ((20, 14), (48, 48), (150, 50), (50, 150), (97, 61), (1200, 900))


@pytest.fixture(scope="module")
def next_model(tmp_path_factory, tiny_parts) -> Path:
    out = tmp_path_factory.mktemp("next_serving") / "llava_next"
    assemble_tiny_next(tiny_parts, out)
    return out


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[Path]:
    import numpy as np
    from PIL import Image

    folder = tmp_path_factory.mktemp("next_serving_images")
    rng = np.random.default_rng(0)
    paths = []
    for index, (width, height) in enumerate(SHAPES):
        path = folder / f"{width}x{height}.{'jpg' if index % 2 else 'png'}"
        Image.fromarray(rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def test_batched_predict_answers_as_one_at_a_time(next_model, images):
    from llava_lf.evaluation.predict import PredictionRequest, Predictor

    predictor = Predictor(next_model, max_new_tokens=6)
    assert predictor.anyres
    requests = [PredictionRequest(key=str(index), question=f"What is in picture {index}?", image=path)
                for index, path in enumerate(images)]
    requests.insert(2, PredictionRequest(key="text", question="Say something.", image=None))  # no image in the batch
    # The prompts really hold different AnyRes counts, so the batch pads tiles and tokens alike.
    counts = {ids.count(predictor.processor.image_token_id) for ids in map(predictor.prompt_ids, requests)}
    assert len(counts) >= 4 and 0 in counts
    batched = list(predictor.predict(requests, batch_size=len(requests)))
    single = [answer for request in requests for answer in predictor.predict([request], batch_size=1)]
    assert [p.key for p in batched] == [r.key for r in requests]
    assert batched == single
    assert all(p.answer for p in batched)


def test_llava_lf_chat_answers_with_an_image_as_predict_does(next_model, images):
    from llava_lf.evaluation.predict import PredictionRequest, Predictor

    question, picture = "What is this?", images[-1]
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run([str(BIN / "llava-lf"), "chat", "--model", str(next_model), "--image", str(picture),
                           "--greedy", "--max-new-tokens", "6"], input=f"{question}\nexit\n", capture_output=True,
                          text=True, env=env, timeout=600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert "Traceback" not in done.stderr
    answer = done.stdout.split("Assistant: ", 1)[1].split("\nUser:", 1)[0].strip()
    # The host's chat engine (its generation, our plugin's pixels) and eval's predictor agree on the first turn.
    [expected] = Predictor(next_model, max_new_tokens=6).predict([PredictionRequest("0", question, picture)])
    assert answer == expected.answer and answer


def test_api_answers_a_request_with_an_image_as_predict_does(next_model, images, tmp_path):
    from openai import OpenAI

    from llava_lf.evaluation.predict import PredictionRequest, Predictor

    question, picture = "What is this?", images[-1]
    port, log = free_port(), tmp_path / "api.log"
    process = cli("api", REPO / "yaml/llava1_5_infer.yaml",
                  {"model_name_or_path": next_model, "do_sample": "false", "max_new_tokens": 6}, log, wait=False,
                  env={"API_HOST": "127.0.0.1", "API_PORT": str(port)})
    try:
        wait_for_port(process, port, log, 300)
        client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0, timeout=120)
        image_url = {"url": "data:image/jpeg;base64," + base64.b64encode(picture.read_bytes()).decode()}
        reply = client.chat.completions.create(
            model="llava", temperature=0, max_tokens=6,
            messages=[{"role": "user", "content": [{"type": "image_url", "image_url": image_url},
                                                   {"type": "text", "text": question}]}])
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)
    [expected] = Predictor(next_model, max_new_tokens=6).predict([PredictionRequest("0", question, picture)])
    assert reply.choices[0].message.content == expected.answer and expected.answer
    assert "Traceback" not in log.read_text()


def test_the_table_of_a_next_model_has_the_published_1_6_rows(next_model, tmp_path, capsys):
    from helpers import eval_standins

    import yaml
    from llava_lf.cli import run
    from llava_lf.evaluation import published

    config = tmp_path / "table.yaml"
    config.write_text(yaml.safe_dump({
        "model": str(next_model), "device": "cpu", "batch_size": 4, "max_new_tokens": 3, "out_dir": str(tmp_path / "out"),
        "benchmarks": {"pope": {k: str(v) for k, v in eval_standins.pope(tmp_path / "pope").items()}}}))
    assert run(["eval", "table", str(config)]) == 0
    assert "table: 1 scored, 0 to upload, 11 skipped, 0 failed" in capsys.readouterr().out
    markdown = (tmp_path / "out" / "table.md").read_text()
    assert markdown.startswith("# LLaVA-NeXT (1.6)'s benchmark table") and published.TABLE_1_6_SOURCE in markdown
    lines = {line.split("|")[1].strip(): [cell.strip() for cell in line.strip().strip("|").split("|")[1:]]
             for line in markdown.splitlines() if line.startswith("| ")}
    columns = list(published.LLAVA_1_5)  # the paper's column order
    for index, model in enumerate(published.TABLE_1_6_MODELS):
        expected = [published.LLAVA_1_6[column][index] for column in columns]
        assert lines[model] == ["–" if value is None else f"{value:g}" for value in expected]
    assert not any(model in lines for model in published.TABLE_MODELS)  # not the 1.5 rows
    assert "SEED-IMG only" in markdown
