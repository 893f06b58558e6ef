"""Batched greedy generation through a llava-hf checkpoint, with prompts built by the host's template.

Prompts go through the same template and mm plugin as training (`llava_v1` by default), so evaluation
sees exactly the format the model was trained on. A LoRA adapter (stage 2's output) can be applied on
top of its base model and merged, so a run need not be exported first.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm


@dataclass(frozen=True)
class PredictionRequest:
    key: str  # unique within the benchmark: the question id, or id and prompt where a file repeats ids
    question: str  # what the model is asked, after the image
    image: Path | None
    question_id: int | str | None = None  # as the question file spells it, for the answer file (default: key)
    prompt: str | None = None  # the answer file's `prompt` (default: see stored_prompt)

    @property
    def stored_prompt(self) -> str:
        """The prompt as the answer file records it. LLaVA's loader benchmarks store the question file's text
        verbatim (`prompt` given); otherwise an image question gets a leading `<image>` line, as LLaVA's
        ScienceQA runner writes, and its scorer finds IMG problems by that mark."""
        if self.prompt is not None:
            return self.prompt
        return ("<image>\n" if self.image else "") + self.question

    @property
    def answer_file_id(self) -> int | str:
        return self.key if self.question_id is None else self.question_id


@dataclass(frozen=True)
class GenerationSettings:
    """Everything besides the weights that changes an answer; a file holds answers made under one setting."""
    template: str
    max_new_tokens: int
    dtype: str
    do_sample: bool = False


def question_hash(request: PredictionRequest, image_digests: dict[Path, str] | None = None) -> str:
    """What the question is, whatever its position: its prompt and its image's bytes (not the image's path,
    so a moved image folder still matches). `image_digests` caches one digest per image file."""
    import hashlib

    image = ""
    if request.image is not None:
        cache = {} if image_digests is None else image_digests
        if request.image not in cache:
            cache[request.image] = hashlib.sha256(Path(request.image).read_bytes()).hexdigest()
        image = cache[request.image]
    return hashlib.sha256(f"{request.question}\0{image}".encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Prediction:
    key: str
    answer: str


def model_id(model_dir: Path, adapter_dir: Path | None = None) -> str:
    """Which model answers, as recorded beside every prediction: absolute paths plus a fingerprint of the
    weight files (size, modification time), so answers from re-trained weights in the same folder are
    never mixed with the old ones."""
    import hashlib

    digest = hashlib.sha256()
    for folder in (model_dir, adapter_dir):
        if folder is None:
            continue
        for weights in sorted(Path(folder).glob("*.safetensors")) + sorted(Path(folder).glob("*.bin")):
            status = weights.stat()
            digest.update(f"{weights.name}:{status.st_size}:{status.st_mtime_ns};".encode())
    name = str(Path(model_dir).resolve()) + (f" + {Path(adapter_dir).resolve()}" if adapter_dir else "")
    return f"{name} @{digest.hexdigest()[:12]}"


def resolve_dtype(dtype: str, device: str) -> str:
    """`auto` is bfloat16 on an accelerator (LLaVA-1.5 evaluates in half precision) and float32 on CPU."""
    if dtype != "auto":
        return dtype
    return "float32" if device == "cpu" else "bfloat16"


class Predictor:
    """Loads a llava-hf checkpoint, LLaVA-1.5 or LLaVA-NeXT (and optionally a LoRA adapter) once and answers
    batches greedily."""

    def __init__(self, model_dir: Path, template: str = "llava_v1", max_new_tokens: int = 16, device: str = "cpu",
                 adapter_dir: Path | None = None, dtype: str = "float32"):
        import torch
        from llamafactory.data.template import get_template_and_fix_tokenizer
        from llamafactory.hparams import DataArguments
        from transformers import AutoModelForImageTextToText, AutoProcessor

        from llava_lf.common.image_tokens import next_geometry

        self.processor = AutoProcessor.from_pretrained(model_dir)
        self.tokenizer = self.processor.tokenizer
        self.template = get_template_and_fix_tokenizer(self.tokenizer, DataArguments(template=template))
        self.anyres = next_geometry(self.processor) is not None
        model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=getattr(torch, dtype))
        if adapter_dir is not None:
            from peft import PeftModel

            # Merging once makes generation as fast as with an exported checkpoint.
            model = PeftModel.from_pretrained(model, adapter_dir).merge_and_unload()
        self.model = model.to(device).eval()
        self.device = device
        self.max_new_tokens = max_new_tokens

    def prompt_ids(self, request: PredictionRequest) -> list[int]:
        images = [str(request.image)] if request.image else []
        content = ("<image>\n" if images else "") + request.question
        messages = [{"role": "user", "content": content}, {"role": "assistant", "content": ""}]
        messages = self.template.mm_plugin.process_messages(messages, images, [], [], self.processor)
        prompt_ids, _ = self.template.encode_oneturn(self.tokenizer, messages)
        return prompt_ids

    def _batch(self, requests: Sequence[PredictionRequest]) -> list[str]:
        import torch
        from PIL import Image

        prompts = [self.prompt_ids(request) for request in requests]
        width = max(len(ids) for ids in prompts)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids in prompts])  # left padding
        attention_mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in prompts])
        inputs = {"input_ids": input_ids.to(self.device), "attention_mask": attention_mask.to(self.device)}
        if self.anyres and any(request.image for request in requests):
            # NeXT: pixels as training's collator makes them (the host's resize, then AnyRes tiles), each image with
            # its size, so the model finds exactly the tokens the template counted from the file's header.
            paths = [str(request.image) for request in requests if request.image]
            mm = self.template.mm_plugin.get_mm_inputs(
                paths, [], [], [1 if request.image else 0 for request in requests], [0] * len(requests),
                [0] * len(requests), prompts, self.processor)
            inputs["pixel_values"] = mm["pixel_values"].to(self.device, dtype=self.model.dtype)
            inputs["image_sizes"] = mm["image_sizes"].to(self.device)
        elif images := [Image.open(request.image).convert("RGB") for request in requests if request.image]:
            pixels = self.processor.image_processor(images, return_tensors="pt")["pixel_values"]
            inputs["pixel_values"] = pixels.to(self.device, dtype=self.model.dtype)
        with torch.no_grad():
            output = self.model.generate(
                **inputs,
                do_sample=False,
                max_new_tokens=self.max_new_tokens,
                eos_token_id=self.template.get_stop_token_ids(self.tokenizer),
                pad_token_id=pad,
            )
        return [text.strip() for text in self.tokenizer.batch_decode(output[:, width:], skip_special_tokens=True)]

    def predict_batches(self, batches: Sequence[Sequence[PredictionRequest]], desc: str = "predict") -> Iterator[Prediction]:
        """Each batch asked as given: which questions share a batch (and so its padding) is the caller's choice."""
        for chunk in tqdm(batches, desc=desc, unit="batch"):
            for request, answer in zip(chunk, self._batch(chunk)):
                yield Prediction(request.key, answer)

    def predict(self, requests: Sequence[PredictionRequest], batch_size: int = 32, desc: str = "predict") -> Iterator[Prediction]:
        return self.predict_batches([requests[start : start + batch_size]
                                     for start in range(0, len(requests), batch_size)], desc)
