"""The `llamafactory-cli` commands the project tells a user to run: those in README.md and docs/*.md (fenced code
blocks and inline code) and in the headers of the recipe YAMLs, parsed into typed records. test_yaml_configs parses
each header's commands with the host's reader; test_documented_commands runs every one on the tiny models.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CLI = "llamafactory-cli"
ENV_WORD = re.compile(r"[A-Z_][A-Z0-9_]*=\S*")
OVERRIDE_WORD = re.compile(r"[a-z_0-9]+=\S+")
CODE_SPAN = re.compile(r"`([^`\n]*\bllamafactory-cli [^`\n]*)`")
FENCE = re.compile(r"^```.*?$(.*?)^```", re.MULTILINE | re.DOTALL)
CONFIG = re.compile(r"\S+\.(?:ya?ml|json)")


@dataclass(frozen=True)
class DocumentedCommand:
    """`[ENV=value ...] llamafactory-cli VERB CONFIG [key=value ...]` where a document writes it."""

    where: str  # "docs/recipe.md:16": file and line, for messages
    env: tuple[tuple[str, str], ...]
    verb: str
    config: str  # as written, relative to the project's root: "yaml/llava1_5_lora_sft.yaml"
    overrides: tuple[tuple[str, str], ...]
    unrunnable: str = ""  # why the test cannot run it as written (a shell variable), else ""

    @property
    def argv(self) -> list[str]:
        """From `llamafactory-cli` on, as a shell would hand it over."""
        return [CLI, self.verb, self.config, *(f"{key}={value}" for key, value in self.overrides)]

    @property
    def environment(self) -> dict[str, str]:
        return dict(self.env)

    @property
    def engine(self) -> str:
        """none, DDP, ZeRO-2 or ZeRO-3: what the host launches for this command."""
        deepspeed = dict(self.overrides).get("deepspeed", "")
        if "z3" in Path(deepspeed).name:
            return "ZeRO-3"
        if "z2" in Path(deepspeed).name:
            return "ZeRO-2"
        return "DDP" if self.environment.get("FORCE_TORCHRUN") in ("1", "true") else "none"

    @property
    def nodes(self) -> int:
        return int(self.environment.get("NNODES", "1"))

    def __str__(self) -> str:
        env = " ".join(f"{key}={value}" for key, value in self.env)
        return f"{self.where}: {env + ' ' if env else ''}{' '.join(self.argv)}"


def _parse(text: str, where: str) -> DocumentedCommand | None:
    """The command in one shell line, or None when the line only mentions `llamafactory-cli` (no config file)."""
    if CLI not in text:
        return None
    try:
        words = shlex.split(_from_env(text), comments=True)
    except ValueError:  # an unbalanced quote: prose, not a command
        return None
    if CLI not in words:
        return None
    at = words.index(CLI)
    env, rest = words[:at], words[at + 1:]
    if len(rest) < 2 or not CONFIG.fullmatch(rest[1]):
        return None  # `llamafactory-cli api` in prose, `llamafactory-cli train CONFIG ...`, `yaml/...`
    verb, config, tail = rest[0], rest[1], rest[2:]
    unrunnable = "uses a shell variable" if any("$" in word for word in [*env, *rest]) else ""
    overrides = []
    for word in tail:
        if not OVERRIDE_WORD.fullmatch(word):
            unrunnable = unrunnable or f"{word!r} is not a key=value override"
            continue
        key, value = word.split("=", 1)
        overrides.append((key, value))
    return DocumentedCommand(where, tuple(tuple(word.split("=", 1)) for word in env), verb, config,
                             tuple(overrides), unrunnable)


def _shell_lines(text: str, first_line: int) -> list[tuple[int, str]]:
    """Lines of shell text with `\\` continuations joined, each with the number of its first line."""
    joined, start, current = [], None, ""
    for number, line in enumerate(text.splitlines(), first_line):
        start = number if start is None else start
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        joined.append((start, current + line))
        start, current = None, ""
    if current:
        joined.append((start, current))
    return joined


def markdown_commands(path: Path, repo: Path = REPO) -> list[DocumentedCommand]:
    """The commands of one Markdown file: every line of its fenced blocks, and its inline code spans."""
    text = path.read_text()
    name = path.relative_to(repo).as_posix()
    commands = []
    fenced = []
    for block in FENCE.finditer(text):
        fenced.append(block.span())
        first = text.count("\n", 0, block.start(1)) + 1
        for number, line in _shell_lines(block.group(1).removeprefix("\n"), first + 1):
            if (command := _parse(line, f"{name}:{number}")) is not None:
                commands.append(command)
    for span in CODE_SPAN.finditer(text):
        if any(start <= span.start() < end for start, end in fenced):
            continue
        number = text.count("\n", 0, span.start()) + 1
        if (command := _parse(span.group(1), f"{name}:{number}")) is not None:
            commands.append(command)
    return commands


def _header(path: Path) -> str:
    """A YAML's leading comment block without the comment marks."""
    lines = path.read_text().splitlines()
    header = lines[: next((i for i, line in enumerate(lines) if not line.startswith("#")), len(lines))]
    return "\n".join(line.removeprefix("#") for line in header)


def header_commands(path: Path) -> list[DocumentedCommand]:
    """The commands a YAML's leading comment block spells out (Command, Override example, any other)."""
    name = f"yaml/{path.name}"  # as the documents name it
    commands = []
    for number, line in _shell_lines(_header(path), 1):
        if (command := _parse(line, f"{name}:{number}")) is not None:
            commands.append(command)
    return commands


def _from_env(line: str) -> str:
    """The line from the command's environment assignments on: "Command: FORCE_TORCHRUN=1 llamafactory-cli ..."
    loses "Command:" (prose, which may hold an apostrophe that shlex would read as a quote)."""
    head, tail = line.split(CLI, 1)
    words = head.split()
    env = []
    while words and ENV_WORD.fullmatch(words[-1]):
        env.insert(0, words.pop())
    return " ".join([*env, CLI]) + tail


def documented_commands(repo: Path = REPO) -> list[DocumentedCommand]:
    """Every documented command: README.md, docs/*.md, then the headers of the recipe YAMLs (yaml/*.yaml)."""
    commands = []
    for path in [repo / "README.md", *sorted((repo / "docs").glob("*.md"))]:
        commands += markdown_commands(path, repo)
    for path in sorted((repo / "yaml").glob("*.yaml")):
        commands += header_commands(path)
    return commands


@dataclass(frozen=True)
class ConvertCommand:
    """A documented `llava-lf convert`: which dataset it writes and for which template."""

    where: str
    name: str
    template: str  # "llava_v1" when the command leaves --template out (the converter's default)


CONVERT = re.compile(r"llava-lf convert((?:[^`\n]|\n\s*(?=--))*)")  # continued lines start with an option


def convert_commands(repo: Path = REPO) -> list[ConvertCommand]:
    """Every `llava-lf convert ... --name NAME` in README.md, docs/*.md and the YAML headers (yaml/, yaml/demo/)."""
    sources = [(path, path.read_text()) for path in [repo / "README.md", *sorted((repo / "docs").glob("*.md"))]]
    for path in sorted((repo / "yaml").glob("*.yaml")) + sorted((repo / "yaml" / "demo").glob("*.yaml")):
        sources.append((path, _header(path)))
    commands = []
    for path, text in sources:
        for match in CONVERT.finditer(text.replace("\\\n", " \n")):  # line numbers kept
            name = re.search(r"--name\s+(\S+)", match.group(1))
            template = re.search(r"--template\s+(\S+)", match.group(1))
            if name is not None:
                where = f"{path.relative_to(repo).as_posix()}:{text.count(chr(10), 0, match.start()) + 1}"
                commands.append(ConvertCommand(where, name.group(1), template.group(1) if template else "llava_v1"))
    return commands
