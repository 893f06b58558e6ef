"""The projector in HF Llava's two-layer form: LLaVA-1.5's mlp2x_gelu as is, LLaVA v1's single linear layer
as linear_1 with an identity activation and an identity linear_2 (exact, and still a standard checkpoint).

Original LLaVA names the projector `model.mm_projector.0/.2` (mlp2x_gelu, a Sequential) or
`model.mm_projector` (linear, a bare nn.Linear); stage 1 saves only those keys, in mm_projector.bin.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .spec import PROJECTOR_KINDS, AssemblyError, ProjectorKind
from .tensor_files import WeightSource

ACTIVATIONS: dict[str, str] = {"mlp2x_gelu": "gelu", "linear": "linear"}
PROJECTOR_KEY_PART = "mm_projector."
# Parameter suffixes after the marker -> (kind, {HF name: suffix}).
ORIGINAL_LAYOUTS: dict[frozenset[str], tuple[ProjectorKind, dict[str, str]]] = {
    frozenset({"0.weight", "0.bias", "2.weight", "2.bias"}): (
        "mlp2x_gelu", {"linear_1.weight": "0.weight", "linear_1.bias": "0.bias",
                       "linear_2.weight": "2.weight", "linear_2.bias": "2.bias"}),
    frozenset({"weight", "bias"}): ("linear", {"linear_1.weight": "weight", "linear_1.bias": "bias"}),
    frozenset({"0.weight", "0.bias"}): ("linear", {"linear_1.weight": "0.weight", "linear_1.bias": "0.bias"}),
}


@dataclass
class ProjectorWeights:
    kind: ProjectorKind
    tensors: dict[str, torch.Tensor]  # linear_1/linear_2 weight and bias, HF names
    origin: str  # for the report: a file, or "fresh (seed N)"


def _complete_linear(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Give a single linear layer HF Llava's second layer as the identity, so the composition is unchanged."""
    width = tensors["linear_1.weight"].shape[0]
    dtype = tensors["linear_1.weight"].dtype
    return {**tensors, "linear_2.weight": torch.eye(width, dtype=dtype), "linear_2.bias": torch.zeros(width, dtype=dtype)}


def projector_keys(source: WeightSource) -> list[str]:
    return [key for key in source if PROJECTOR_KEY_PART in key]


def read_original(source: WeightSource, asked: ProjectorKind | None) -> ProjectorWeights:
    """The projector stored under `...mm_projector.*` in `source`, in HF form."""
    keys = projector_keys(source)
    where = source.origin
    if not keys:
        raise AssemblyError(f"{where}: holds no mm_projector.* tensors; give LLaVA's stage-1 mm_projector.bin "
                            "(or a checkpoint that contains model.mm_projector)")
    by_suffix = {key.rpartition(PROJECTOR_KEY_PART)[2]: key for key in keys}
    layout = ORIGINAL_LAYOUTS.get(frozenset(by_suffix))
    if layout is None:
        raise AssemblyError(f"{where}: projector tensors {', '.join(sorted(by_suffix))} match neither linear "
                            f"(weight, bias) nor mlp2x_gelu (0.*, 2.*); only {' and '.join(PROJECTOR_KINDS)} "
                            "have a llava-hf form")
    kind, names = layout
    if asked is not None and asked != kind:
        raise AssemblyError(f"{where}: holds a {kind} projector but {asked} was asked; pass --projector {kind} "
                            "or drop --projector to follow the file")
    tensors = {name: source.read(by_suffix[suffix]) for name, suffix in names.items()}
    source.release()
    if kind == "linear":
        tensors = _complete_linear(tensors)
    return ProjectorWeights(kind, tensors, where)


def fresh(kind: ProjectorKind, in_features: int, out_features: int, seed: int) -> ProjectorWeights:
    """A new projector, initialised as torch's nn.Linear is (as LLaVA's stage 1 starts)."""
    generator = torch.Generator().manual_seed(seed)

    def linear(fan_in: int, fan_out: int) -> tuple[torch.Tensor, torch.Tensor]:
        weight = torch.empty(fan_out, fan_in)
        torch.nn.init.kaiming_uniform_(weight, a=math.sqrt(5), generator=generator)
        bound = 1 / math.sqrt(fan_in)
        return weight, torch.empty(fan_out).uniform_(-bound, bound, generator=generator)

    weight_1, bias_1 = linear(in_features, out_features)
    tensors = {"linear_1.weight": weight_1, "linear_1.bias": bias_1}
    if kind == "linear":
        tensors = _complete_linear(tensors)
    else:
        tensors["linear_2.weight"], tensors["linear_2.bias"] = linear(out_features, out_features)
    return ProjectorWeights(kind, tensors, f"fresh (seed {seed})")


def check_shapes(weights: ProjectorWeights, in_features: int, out_features: int,
                 vision_where: str, text_where: str) -> list[str]:
    """Size mismatches between the projector and the two models it joins, each with its fix."""
    found_in = weights.tensors["linear_1.weight"].shape[1]
    found_out = weights.tensors["linear_1.weight"].shape[0]
    problems = []
    if found_in != in_features:
        problems.append(f"{weights.origin}: projector takes {found_in}-wide vision features, but {vision_where} "
                        f"gives {in_features}; use the projector trained with this vision tower")
    if found_out != out_features:
        problems.append(f"{weights.origin}: projector outputs width {found_out}, but {text_where} has hidden size "
                        f"{out_features}; use the projector trained with this language model")
    return problems
