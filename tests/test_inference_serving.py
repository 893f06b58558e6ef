"""Export and inference with the shipped YAMLs on the session's tiny recipe runs (conftest's `recipe_chain`, which
test_recipe_stages checks, and `recipe_export`):
`llamafactory-cli export` gives a standalone llava-hf folder that plain transformers answers from exactly as
the host answers from base + adapter; `webchat` is driven in headless Chromium (upload, ask, read);
`api` answers an image question from the official `openai` client. All greedy, so all answers must agree."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import REPO, free_port, wait_for_port
from helpers.ports import stop_group
from helpers.recipe_chain import Chain, cli

pytestmark = [pytest.mark.slow, pytest.mark.host]

MAX_NEW_TOKENS = 16
API_KEY = "recipe-test-key"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def chain(recipe_chain) -> Chain:
    return recipe_chain


@pytest.fixture(scope="module")
def exported(recipe_export) -> Path:
    return recipe_export


@pytest.fixture(scope="module")
def held_out(demo_data) -> tuple[str, Path]:
    """A question about a picture no training step saw."""
    data, _ = demo_data
    question = json.loads(data.test_questions.read_text().splitlines()[0])
    return question["question"], data.image_dir / question["image"]


@pytest.fixture(scope="module")
def host_answer(chain, held_out) -> dict:
    """Base + adapter through the host's own ChatModel (greedy): the answer everything else must give."""
    from llamafactory.chat import ChatModel

    question, image = held_out
    model = ChatModel({"model_name_or_path": str(chain.stage1), "adapter_name_or_path": str(chain.stage2),
                       "finetuning_type": "lora", "template": "llava_v1", "infer_backend": "huggingface",
                       "do_sample": False, "max_new_tokens": MAX_NEW_TOKENS})
    engine = model.engine
    messages = engine.template.mm_plugin.process_messages(
        [{"role": "user", "content": "<image>" + question}, {"role": "assistant", "content": ""}],
        [str(image)], [], [], engine.processor)
    prompt_ids, _ = engine.template.encode_oneturn(engine.tokenizer, messages, None, None)
    answer = model.chat([{"role": "user", "content": question}], images=[str(image)])[0].response_text
    return {"answer": answer, "prompt_ids": prompt_ids, "prompt": engine.tokenizer.decode(prompt_ids)}


@pytest.mark.timeout(900)
def test_export_is_standalone_and_answers_like_base_plus_adapter(exported, chain, held_out, host_answer):
    import torch
    from PIL import Image
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    for name in ("config.json", "model.safetensors", "tokenizer.json", "processor_config.json", "chat_template.jinja"):
        assert (exported / name).is_file(), name
    question, image = held_out
    processor = AutoProcessor.from_pretrained(exported)
    model = LlavaForConditionalGeneration.from_pretrained(exported).eval()
    base = LlavaForConditionalGeneration.from_pretrained(chain.stage1).state_dict()
    merged = model.state_dict()
    changed = {key for key in base if not torch.equal(base[key], merged[key])}
    assert changed and all("vision_tower" not in key for key in changed)  # LoRA merged, CLIP as it was
    assert any(".multi_modal_projector." in f".{key}" for key in changed)  # the trained projector came along

    # The exported chat template writes the host template's prompt, image tokens expanded by the processor.
    prompt = processor.apply_chat_template([{"role": "user", "content": [{"type": "image"},
                                                                         {"type": "text", "text": question}]}],
                                           add_generation_prompt=True)
    inputs = processor(images=Image.open(image).convert("RGB"), text=prompt, return_tensors="pt")
    assert processor.tokenizer.decode(inputs["input_ids"][0]) == host_answer["prompt"]

    ids = torch.tensor([host_answer["prompt_ids"]])  # the host's own token ids: the weights alone decide
    with torch.no_grad():
        output = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                pixel_values=inputs["pixel_values"], max_new_tokens=MAX_NEW_TOKENS, do_sample=False)
    answer = processor.tokenizer.decode(output[0, ids.shape[1]:], skip_special_tokens=True)
    assert answer == host_answer["answer"]


def _start(command: str, overrides: dict, log: Path, env: dict[str, str]) -> subprocess.Popen:
    return cli(command, REPO / "yaml/llava1_5_infer.yaml", overrides, log, wait=False, env=env)


@pytest.fixture(scope="module")
def servers(exported, chain):
    """webchat on the exported model and api on base + adapter, started together (each loads for seconds)."""
    web_port, api_port = free_port(), free_port()
    logs = {"webchat": chain.root / "webchat.log", "api": chain.root / "api.log"}
    started = {
        "webchat": _start("webchat", {"model_name_or_path": exported, "do_sample": "false"}, logs["webchat"],
                          {"GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(web_port),
                           "GRADIO_ANALYTICS_ENABLED": "False", "BROWSER": "true"}),  # BROWSER: open no window
        "api": _start("api", {"model_name_or_path": chain.stage1, "adapter_name_or_path": chain.stage2,
                              "finetuning_type": "lora"}, logs["api"],
                      {"API_HOST": "127.0.0.1", "API_PORT": str(api_port), "API_KEY": API_KEY}),
    }
    try:
        wait_for_port(started["webchat"], web_port, logs["webchat"], 300)
        wait_for_port(started["api"], api_port, logs["api"], 300)
        yield {"webchat": web_port, "api": api_port}
    finally:
        for process in started.values():
            stop_group(process)


def _skeleton(text: str) -> str:
    """Letters, digits and U+FFFD only: the chat box renders Markdown, the model's raw text may contain some."""
    return "".join(char for char in text if char.isalnum() or char == "\ufffd")


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium; without it the test skips on a developer's machine and fails under CI=true, where it is
    the only check of the web UI's labels (.ci/run installs the browser and stops if it cannot)."""
    if not Path(CHROMIUM).exists():
        message = f"Debian's chromium is not installed at {CHROMIUM} (apt-get install -y chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(message + "; CI=true: the webchat test must run", pytrace=False)
        pytest.skip(message)
    return CHROMIUM


@pytest.mark.timeout(900)
def test_webchat_answers_an_uploaded_image_in_headless_chromium(chromium, servers, held_out, host_answer):
    from playwright.sync_api import sync_playwright

    question, image = held_out
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.goto(f"http://127.0.0.1:{servers['webchat']}/")
        page.wait_for_selector("input[type=file]", state="attached", timeout=120_000)
        # The page a user meets is labelled (gradio 5 left it unlabelled until a language switch; see
        # llava_lf.seams.webui_labels), kept as a screenshot of this run.
        page.get_by_role("button", name="Submit", exact=True).wait_for(timeout=60_000)
        shot = REPO / "runs" / "screenshots" / "webchat_first_load.png"  # ignored by git; outlives pytest tmp dirs
        shot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shot), full_page=True)
        print(f"webchat screenshot: {shot}")
        buttons = [text.strip() for text in page.locator("button").all_inner_texts()]
        labels = [text.strip() for text in page.locator("[data-testid=block-label], label").all_inner_texts()]
        assert "Submit" in buttons and "Clear history" in buttons and "Run" not in buttons, buttons
        assert "Image (optional)" in labels and "Maximum new tokens" in labels, labels
        assert not {"Dropdown", "Slider", "Checkbox"} & set(labels), labels
        page.locator("input[type=file]").first.set_input_files(str(image))
        page.wait_for_selector("img[src*='file=']", timeout=60_000)  # the upload is shown back
        max_tokens = page.locator("input[type=number]").first  # the max-new-tokens slider's box
        max_tokens.fill(str(MAX_NEW_TOKENS))
        max_tokens.press("Enter")
        page.locator("textarea").nth(2).fill(question)  # the query box (system and tools come first)
        page.locator("button.primary").first.click()
        page.wait_for_function(
            "() => { const bots = document.querySelectorAll('[data-testid=bot]');"
            " return bots.length > 0 && bots[bots.length - 1].innerText.trim().length > 0"
            " && !document.querySelector('.generating, .pending'); }", timeout=120_000)
        asked = page.locator("[data-testid=user]").last.inner_text()
        answer = page.locator("[data-testid=bot]").last.inner_text()
        # A typed <image> beside the uploaded one is one placeholder too many: answered, not an error.
        page.locator("textarea").nth(2).fill(f"<image><image> {question}")
        page.get_by_role("button", name="Submit", exact=True).click()
        page.wait_for_function(
            "() => { const bots = document.querySelectorAll('[data-testid=bot]');"
            " return bots.length > 1 && bots[bots.length - 1].innerText.trim().length > 0"
            " && !document.querySelector('.generating, .pending'); }", timeout=120_000)
        errors = page.locator(".toast-body.error, [data-testid=toast-body]").all_inner_texts()
        browser.close()
    assert asked.strip() == question
    assert _skeleton(answer) and _skeleton(answer) == _skeleton(host_answer["answer"])
    assert not errors, errors


@pytest.mark.timeout(900)
def test_api_answers_an_image_question_from_the_openai_client(servers, held_out, host_answer):
    from openai import AuthenticationError, OpenAI

    question, image = held_out
    base_url = f"http://127.0.0.1:{servers['api']}/v1"
    client = OpenAI(base_url=base_url, api_key=API_KEY, max_retries=0, timeout=120)
    image_url = "data:image/png;base64," + base64.b64encode(image.read_bytes()).decode()
    reply = client.chat.completions.create(
        model="llava1_5", temperature=0, max_tokens=MAX_NEW_TOKENS,
        messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": image_url}},
                                               {"type": "text", "text": question}]}])  # image first, as LLaVA
    assert reply.choices[0].message.content == host_answer["answer"]
    assert reply.usage.prompt_tokens == len(host_answer["prompt_ids"])  # the image became its tokens
    with pytest.raises(AuthenticationError):
        OpenAI(base_url=base_url, api_key="wrong", max_retries=0, timeout=60).chat.completions.create(
            model="llava1_5", messages=[{"role": "user", "content": question}])
