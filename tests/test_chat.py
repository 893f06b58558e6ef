"""Terminal chat with an image, and a stray `<image>` wherever our mm plugin meets it, through the real CLIs on
the tiny model: `llava-lf chat` driven through stdin answers as the host's ChatModel does for the same picture;
`llamafactory-cli chat` survives a typed `<image>` with one warning line; `llamafactory-cli api` answers it
400 with what to change (the official `openai` client), and keeps serving."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
from pathlib import Path

import pytest
from conftest import BIN, REPO, free_port, wait_for_port
from helpers.cli import llava_lf
from helpers.recipe_chain import cli

pytestmark = [pytest.mark.slow, pytest.mark.host]

MAX_NEW_TOKENS = 8
QUESTION = "What shapes are in the picture?"
GREEDY = {"do_sample": "false", "max_new_tokens": MAX_NEW_TOKENS}


@pytest.fixture(scope="module")
def pictures(demo_data) -> list[Path]:
    data, _ = demo_data
    return sorted(data.image_dir.glob("*.png"))[:2]


@pytest.fixture(scope="module")
def host_answers(tiny_llava, pictures) -> dict[str, str]:
    """The host's own ChatModel, greedy, per picture and without one: what `llava-lf chat` must print."""
    from llamafactory.chat import ChatModel

    model = ChatModel({"model_name_or_path": str(tiny_llava), "template": "llava_v1", "infer_backend": "huggingface",
                       "do_sample": False, "max_new_tokens": MAX_NEW_TOKENS})
    ask = [{"role": "user", "content": QUESTION}]
    answers = {str(path): model.chat(ask, images=[str(path)])[0].response_text for path in pictures}
    answers["none"] = model.chat(ask)[0].response_text
    return answers


def _llava_lf(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run([str(BIN / "llava-lf"), *map(str, args)], input=stdin, capture_output=True, text=True,
                          env=env, timeout=600)


def _answers(stdout: str) -> list[str]:
    """Each turn's answer: the text after `Assistant: ` up to the next prompt, log lines left out."""
    turns = [chunk.split("\nUser:", 1)[0] for chunk in stdout.split("Assistant: ")[1:]]
    return ["\n".join(line for line in turn.splitlines() if not line.startswith("[WARNING|")).strip()
            for turn in turns]


@pytest.mark.timeout(900)
def test_llava_lf_chat_talks_about_the_picture_and_changes_it(tiny_llava, pictures, host_answers):
    first, second = pictures
    assert host_answers[str(first)] != host_answers["none"]  # the picture decides the answer
    session = "\n".join([QUESTION, f"<image> {QUESTION}", "/image no/such.png", f"/image {second}", QUESTION,
                         "clear", QUESTION, "exit", "never read"]) + "\n"
    done = _llava_lf("chat", "--model", tiny_llava, "--image", first, "--greedy", "--max-new-tokens",
                     MAX_NEW_TOKENS, stdin=session)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert f"Chatting about {first}" in out
    assert "type the question without <image>" in out  # a message, and no turn was sent
    assert "image no/such.png: no such file" in out and f"Still talking about {first}" in out
    assert f"Now talking about {second}; history has been removed." in out
    assert "History has been removed." in out
    # Each answer is the host's for that picture (a fresh conversation after /image and after clear).
    assert _answers(out) == [host_answers[str(first)], host_answers[str(second)], host_answers[str(second)]]
    assert "Traceback" not in done.stderr


def test_llava_lf_chat_refuses_what_it_cannot_read_before_loading(tmp_path):
    (tmp_path / "notes.png").write_text("not a picture")
    # In process: each is refused before a model or stdin is touched.
    missing = llava_lf("chat", "--model", tmp_path, "--image", tmp_path / "gone.png")
    broken = llava_lf("chat", "--model", tmp_path, "--image", tmp_path / "notes.png")
    no_model = llava_lf("chat", "--model", tmp_path / "none", "temperature")
    assert missing.returncode == broken.returncode == no_model.returncode == 2
    assert f"image {tmp_path / 'gone.png'}: no such file" in missing.stderr
    assert "not a readable picture" in broken.stderr
    assert "setting 'temperature': write KEY=VALUE" in no_model.stderr
    assert "Traceback" not in missing.stderr + broken.stderr + no_model.stderr


@pytest.mark.timeout(900)
def test_host_chat_survives_a_typed_image_placeholder(tiny_llava, tmp_path, host_answers):
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    args = [str(BIN / "llamafactory-cli"), "chat", str(REPO / "yaml/llava1_5_infer.yaml"),
            f"model_name_or_path={tiny_llava}"] + [f"{key}={value}" for key, value in GREEDY.items()]
    done = subprocess.run(args, input=f"<image> {QUESTION}\nexit\n", capture_output=True, text=True, env=env,
                          timeout=600, cwd=tmp_path)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert "Traceback" not in done.stderr
    assert "the text holds 1 <image> but no image given" in done.stdout + done.stderr
    assert _answers(done.stdout) == [host_answers["none"]]  # answered as the text without the placeholder


@pytest.fixture(scope="module")
def api(tiny_llava, tmp_path_factory):
    port, log = free_port(), tmp_path_factory.mktemp("api") / "api.log"
    process = cli("api", REPO / "yaml/llava1_5_infer.yaml", {"model_name_or_path": tiny_llava, **GREEDY}, log,
                  wait=False, env={"API_HOST": "127.0.0.1", "API_PORT": str(port)})
    try:
        wait_for_port(process, port, log, 300)
        yield f"http://127.0.0.1:{port}/v1", log
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)


@pytest.mark.timeout(900)
def test_api_answers_a_stray_image_placeholder_with_400(api, pictures, host_answers):
    from openai import BadRequestError, OpenAI

    base_url, log = api
    client = OpenAI(base_url=base_url, api_key="none", max_retries=0, timeout=120)
    picture = pictures[0]
    image_url = {"url": "data:image/png;base64," + base64.b64encode(picture.read_bytes()).decode()}
    # What the user typed is counted, not the placeholder the host's API writes for each image part.
    for content, counted in ((f"<image> {QUESTION}", "1 typed <image> beside no image part"),
                             ([{"type": "image_url", "image_url": image_url},
                               {"type": "text", "text": f"<image> {QUESTION}"}], "1 typed <image> beside 1 image part"),
                             ([{"type": "image_url", "image_url": image_url}, {"type": "image_url", "image_url": image_url},
                               {"type": "text", "text": f"<image><image> {QUESTION}"}],
                              "2 typed <image> beside 2 image parts")):
        with pytest.raises(BadRequestError) as refused:
            client.chat.completions.create(model="llava", temperature=0, max_tokens=MAX_NEW_TOKENS,
                                           messages=[{"role": "user", "content": content}])
        assert refused.value.status_code == 400
        detail = refused.value.response.json()["detail"]  # FastAPI's error body
        assert f"the text holds {counted}" in detail, detail
        assert "do not type it" in detail and "image_url" in detail, detail
    reply = client.chat.completions.create(  # the server still answers a well-formed request
        model="llava", temperature=0, max_tokens=MAX_NEW_TOKENS,
        messages=[{"role": "user", "content": [{"type": "image_url", "image_url": image_url},
                                               {"type": "text", "text": QUESTION}]}])
    assert reply.choices[0].message.content == host_answers[str(picture)]
    assert "Traceback" not in log.read_text()
