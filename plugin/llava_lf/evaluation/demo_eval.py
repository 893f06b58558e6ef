"""The demo's held-out questions through the shared machinery: resumable predictions, then the demo's scoring.

Questions are the JSONL the demo writes (`{"qtype", "question", "answer", "image", ...}` per line);
a question's id is its line index, as the demo's scoring expects.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..demo.scoring import TypeScore, load_questions, score
from .predict import PredictionRequest, Predictor, model_id
from .prediction_file import PredictRunSummary, answers_for, run_predictions


class DemoDataError(ValueError):
    pass


def demo_requests(questions: Sequence[dict], image_dir: Path) -> list[PredictionRequest]:
    requests, missing = [], []
    for index, question in enumerate(questions):
        image = image_dir / question["image"]
        if not image.is_file():
            missing.append(str(image))
        requests.append(PredictionRequest(str(index), question["question"], image))
    if missing:
        raise DemoDataError(f"{len(missing)} image(s) missing (first: {missing[0]}); --image-folder must be the "
                            "demo's data/images folder")
    return requests


def predict_demo(model_dir: Path, questions_path: Path, image_dir: Path, predictions: Path, *,
                 adapter_dir: Path | None = None, label: str = "predict demo", max_new_tokens: int = 8,
                 batch_size: int = 32, device: str = "cpu", template: str = "llava_v1") -> PredictRunSummary:
    requests = demo_requests(load_questions(questions_path), image_dir)
    return run_predictions(
        requests, predictions, model_id(model_dir, adapter_dir),
        lambda: Predictor(model_dir, template=template, max_new_tokens=max_new_tokens, device=device,
                          adapter_dir=adapter_dir),
        batch_size=batch_size, desc=label)


def score_demo(questions_path: Path, predictions: Path, allow_partial: bool = False) -> tuple[dict[str, TypeScore], list[str]]:
    """Per-type scores from a predictions file (the demo's own scoring), and the unanswered ids."""
    questions = load_questions(questions_path)
    answers, missing = answers_for([str(i) for i in range(len(questions))], predictions, allow_partial)
    if missing:  # score only what was answered: drop the unanswered questions, keeping the demo's index keys
        kept = [(str(i), q) for i, q in enumerate(questions) if str(i) in answers]
        questions = [q for _, q in kept]
        answers = {str(new): answers[old] for new, (old, _) in enumerate(kept)}
    return score(questions, answers), missing


def evaluate_demo(model_dir: Path, questions_path: Path, image_dir: Path, predictions: Path, *,
                  label: str = "eval", max_new_tokens: int = 8, batch_size: int = 32,
                  fresh: bool = False) -> dict[str, TypeScore]:
    """Predict (resuming from `predictions` unless `fresh`) and score: the demo pipeline's evaluation step."""
    if fresh:
        predictions.unlink(missing_ok=True)
    predict_demo(model_dir, questions_path, image_dir, predictions, label=label, max_new_tokens=max_new_tokens,
                 batch_size=batch_size)
    scores, _ = score_demo(questions_path, predictions)
    return scores
