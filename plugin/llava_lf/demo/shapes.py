"""A synthetic picture set: one to three coloured shapes on a 3x3 grid, with captions, boxes and questions.

Everything is generated from a seed, so nothing binary is committed. Each scene carries COCO-style
boxes and several captions (the GPT-assisted generator reuses them) and five kinds of held-out
questions with short, unambiguous answers: colour, shape, count, position and yes/no presence.
Shapes and colours are distinct within a scene, so "the circle" always names one object. The NeXT demo draws
some shapes small (`small_share`), each inside one quarter of its cell, where AnyRes's tiles see it sharper.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from PIL import Image, ImageDraw

from llava_lf.evaluation.tasks.demo import COLOR_NAMES, COUNT_WORDS, KINDS, POSITIONS, QuestionType

# The names are the benchmark's answer space (evaluation.tasks.demo); the RGB values are ours to draw.
COLORS: dict[str, tuple[int, int, int]] = dict(zip(COLOR_NAMES, (
    (220, 40, 40), (40, 170, 60), (40, 80, 220), (235, 200, 30), (140, 60, 180), (245, 130, 20))))
GRID = 3
BACKGROUND = (122, 116, 104)


@dataclass(frozen=True)
class Shape:
    kind: str
    color: str
    cell: int  # 0..8, row-major on the 3x3 grid
    box: tuple[int, int, int, int]  # COCO pixel box: x, y, width, height
    small: bool = False  # drawn in a quarter of its cell (the NeXT demo's pictures)

    @property
    def position(self) -> str:
        return POSITIONS[self.cell]

    @property
    def name(self) -> str:
        return f"{self.color} {self.kind}"


@dataclass(frozen=True)
class Scene:
    image_id: int
    file_name: str
    size: int
    shapes: tuple[Shape, ...]


@dataclass(frozen=True)
class Question:
    image_id: int
    qtype: QuestionType
    question: str
    answer: str
    small: bool = False  # the question is about a small shape (count: the scene holds one)


def random_scene(rng: random.Random, image_id: int, size: int, small_share: float = 0.0) -> Scene:
    count = rng.randint(1, 3)
    cells = rng.sample(range(GRID * GRID), count)
    kinds = rng.sample(KINDS, count)
    colors = rng.sample(list(COLORS), count)
    cell_px = size // GRID
    shapes = []
    for cell, kind, color in zip(cells, kinds, colors):
        # No draw at all without small shapes, so the 1.5 demo's scenes stay what they were for each seed.
        if small_share and rng.random() < small_share:
            shapes.append(_small_shape(rng, kind, color, cell, cell_px))
            continue
        extent = cell_px * 3 // 4 + rng.randint(-1, 1)
        x = (cell % GRID) * cell_px + (cell_px - extent) // 2 + rng.randint(-1, 1)
        y = (cell // GRID) * cell_px + (cell_px - extent) // 2 + rng.randint(-1, 1)
        shapes.append(Shape(kind, color, cell, (x, y, extent, extent)))
    shapes.sort(key=lambda shape: shape.cell)
    return Scene(image_id, f"{image_id:06d}.png", size, tuple(shapes))


def _small_shape(rng: random.Random, kind: str, color: str, cell: int, cell_px: int) -> Shape:
    """A shape a third of the cell wide, centred in one quarter of it: at the NeXT demo's 96 px a 10-px shape in
    one 16-px patch of a tile, in the 48-px view LLaVA-1.5 sees a 5-px blot in a quarter of one patch."""
    quarter = cell_px // 2
    extent = cell_px // 3
    qx, qy = rng.randint(0, 1), rng.randint(0, 1)
    x = (cell % GRID) * cell_px + qx * quarter + (quarter - extent) // 2
    y = (cell // GRID) * cell_px + qy * quarter + (quarter - extent) // 2
    return Shape(kind, color, cell, (x, y, extent, extent), small=True)


def render(scene: Scene) -> Image.Image:
    # A background of CLIP's mean colour normalises to about zero, so the patches carry the shapes alone.
    image = Image.new("RGB", (scene.size, scene.size), BACKGROUND)
    draw = ImageDraw.Draw(image)
    for shape in scene.shapes:
        x, y, w, h = shape.box
        fill = COLORS[shape.color]
        if shape.kind == "circle":
            draw.ellipse((x, y, x + w - 1, y + h - 1), fill=fill)
        elif shape.kind == "square":
            draw.rectangle((x, y, x + w - 1, y + h - 1), fill=fill)
        elif shape.kind == "triangle":
            draw.polygon([(x + w / 2, y), (x + w - 1, y + h - 1), (x, y + h - 1)], fill=fill)
        else:  # cross: two bars a third of the extent wide
            bar = max(2, w // 3)
            draw.rectangle((x + (w - bar) // 2, y, x + (w + bar) // 2 - 1, y + h - 1), fill=fill)
            draw.rectangle((x, y + (h - bar) // 2, x + w - 1, y + (h + bar) // 2 - 1), fill=fill)
    return image


def _listing(shapes: tuple[Shape, ...]) -> str:
    names = [f"a {shape.name}" for shape in shapes]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def captions(scene: Scene) -> list[str]:
    """Five captions, like COCO: varied wording, all true of the scene."""
    shapes, n = scene.shapes, len(scene.shapes)
    plural = "shape" if n == 1 else "shapes"
    placed = ", ".join(f"a {shape.name} at the {shape.position}" for shape in shapes)
    return [
        f"{_listing(shapes).capitalize()} on a grey background.",
        f"There {'is' if n == 1 else 'are'} {COUNT_WORDS[n - 1]} {plural}: {placed}.",
        f"A picture of {_listing(shapes)}.",
        " ".join(f"The {shape.name} is at the {shape.position}." for shape in shapes),
        f"{COUNT_WORDS[n - 1].capitalize()} coloured {plural} on a grid.",
    ]


def questions(scene: Scene, rng: random.Random) -> list[Question]:
    """One question of each type, with its short answer."""
    target = rng.choice(scene.shapes)
    present = {(shape.color, shape.kind) for shape in scene.shapes}
    if rng.random() < 0.5:
        probe, answer = (target.color, target.kind), "yes"
    else:  # a near miss: right colour or right kind, never both
        while True:
            probe = (target.color, rng.choice(KINDS)) if rng.random() < 0.5 else (rng.choice(list(COLORS)), target.kind)
            if probe not in present:
                break
        answer = "no"
    n, small, any_small = len(scene.shapes), target.small, any(shape.small for shape in scene.shapes)
    return [
        Question(scene.image_id, "color", f"What color is the {target.kind}?", target.color, small),
        Question(scene.image_id, "shape", f"What shape is the {target.color} object?", target.kind, small),
        Question(scene.image_id, "count", "How many shapes are there?", str(n), any_small),
        Question(scene.image_id, "position", f"Where is the {target.name}?", target.position, small),
        Question(scene.image_id, "presence", f"Is there a {probe[0]} {probe[1]}?", answer, small),
    ]


def cell_word(shape: Shape | None) -> str:
    """The tiny language model's word for one grid cell: `[red circle]`, or `[empty]`."""
    return "[empty]" if shape is None else f"[{shape.name}]"


CELL_WORDS: tuple[str, ...] = tuple(f"[{color} {kind}]" for color in COLORS for kind in KINDS) + ("[empty]",)


def grid_text(scene: Scene) -> str:
    """The scene as nine cell words in patch order, the text the projector learns to imitate."""
    by_cell = {shape.cell: shape for shape in scene.shapes}
    return "".join(cell_word(by_cell.get(cell)) for cell in range(GRID * GRID))


def make_scenes(count: int, seed: int, size: int, first_id: int = 0, small_share: float = 0.0) -> list[Scene]:
    rng = random.Random(seed)
    return [random_scene(rng, first_id + index, size, small_share) for index in range(count)]
