"""`llava-lf chat`: a terminal chat about a picture, on the host's own ChatModel engine.

`llamafactory-cli chat` reads text only. This is the same loop on the same engine (so the same template,
mm plugin, adapters and generation settings) with an image: `--image PATH` for the first picture,
`/image PATH` to talk about another one (a new conversation: LLaVA binds the image to the first turn),
`clear` and `exit` as in the host's chat. A typed `<image>` is answered with what to do instead.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from .errors import LlavaLfError

if TYPE_CHECKING:
    from llamafactory.chat import ChatModel

PLACEHOLDER = "<image>"  # the host's IMAGE_PLACEHOLDER; importing the host for it would cost seconds at parse time
HELP = ("`/image PATH` talks about another picture (a new conversation), `clear` removes the history, "
        "`exit` ends.")


@dataclass
class Session:
    """One conversation: the picture it is about and its turns so far."""

    image: Path | None
    messages: list[dict[str, str]] = field(default_factory=list)


def add_subcommand(commands) -> None:
    chat = commands.add_parser(
        "chat", help="chat about an image in the terminal (llamafactory-cli chat's engine, with images)",
        description=__doc__.split("\n\n")[1])
    chat.add_argument("--model", required=True, help="a llava-hf model folder (assembled, trained or exported)")
    chat.add_argument("--adapter", default=None, help="a LoRA adapter folder trained on --model")
    chat.add_argument("--template", default="llava_v1", help="chat template (default: llava_v1)")
    chat.add_argument("--image", type=Path, default=None, help="the picture to talk about (or give one with /image)")
    chat.add_argument("--max-new-tokens", type=int, default=512)
    chat.add_argument("--greedy", action="store_true", help="no sampling: the same answer every time")
    chat.add_argument("settings", nargs="*", metavar="KEY=VALUE",
                      help="any other llamafactory-cli inference setting, e.g. temperature=0.2")
    chat.set_defaults(run=run_chat)


def engine_args(args: argparse.Namespace) -> dict[str, str | int | bool]:
    """The host's inference arguments for these options (what `llamafactory-cli chat` would read)."""
    config: dict[str, str | int | bool] = {"model_name_or_path": args.model, "template": args.template,
                                           "infer_backend": "huggingface", "max_new_tokens": args.max_new_tokens}
    if args.adapter:
        config.update(adapter_name_or_path=args.adapter, finetuning_type="lora")
    if args.greedy:
        config["do_sample"] = False
    problems = []
    for setting in args.settings:
        key, sep, value = setting.partition("=")
        if not sep or not key:
            problems.append(f"setting {setting!r}: write KEY=VALUE, e.g. temperature=0.2")
        else:
            config[key] = value
    if problems:
        raise LlavaLfError(problems)
    return config


def check_image(path: Path) -> Path:
    """The picture opens as an image, or a message saying why not."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.verify()
    except FileNotFoundError:
        raise LlavaLfError(f"image {path}: no such file; give the path of a picture") from None
    except (UnidentifiedImageError, OSError) as error:
        raise LlavaLfError(f"image {path}: not a readable picture ({error}); give a PNG, JPEG or similar") from None
    return path


def run_chat(args: argparse.Namespace) -> int:
    image = check_image(args.image) if args.image else None
    config = engine_args(args)
    if not Path(args.model).is_dir():
        raise LlavaLfError(f"--model {args.model}: no such folder; give a llava-hf model folder")
    from llamafactory.chat import ChatModel

    import llava_lf.templates  # noqa: F401  (our templates and mm plugin, also where the import hook is off)

    model = ChatModel(dict(config))
    return chat_loop(model, Session(image), sys.stdin, sys.stdout)


def chat_loop(model: ChatModel, session: Session, stdin: TextIO, stdout: TextIO) -> int:
    """The host's chat loop, with a picture; ends on `exit` or at the end of the input."""
    picture = f"about {session.image}" if session.image else "without a picture (give one with /image PATH)"
    print(f"Chatting {picture}. {HELP}", file=stdout)
    while True:
        print("\nUser: ", end="", file=stdout, flush=True)
        line = stdin.readline()
        if not line:  # end of input: leave as `exit` does
            print(file=stdout)
            return 0
        query = line.rstrip("\n")
        if query.strip() == "exit":
            return 0
        if query.strip() == "clear":
            session.messages.clear()
            print("History has been removed.", file=stdout)
            continue
        if query.strip().split(" ", 1)[0] == "/image":
            _change_image(session, query.strip()[len("/image"):].strip(), stdout)
            continue
        if PLACEHOLDER in query:
            print(f"The picture goes with your first question by itself: type the question without {PLACEHOLDER}, "
                  f"or use /image PATH for another picture.", file=stdout)
            continue
        session.messages.append({"role": "user", "content": query})
        print("Assistant: ", end="", file=stdout, flush=True)
        response = ""
        images = [str(session.image)] if session.image else None
        # copies: the engine writes the image placeholder into the first turn it is given
        for text in model.stream_chat([dict(message) for message in session.messages], images=images):
            print(text, end="", file=stdout, flush=True)
            response += text
        print(file=stdout)
        session.messages.append({"role": "assistant", "content": response})


def _change_image(session: Session, path: str, stdout: TextIO) -> None:
    if not path:
        print(f"Now: {session.image or 'no picture'}. Give a path: /image PATH", file=stdout)
        return
    try:
        session.image = check_image(Path(path).expanduser())
    except LlavaLfError as error:
        print("; ".join(error.problems) + f". Still talking about {session.image or 'no picture'}.", file=stdout)
        return
    session.messages.clear()
    print(f"Now talking about {session.image}; history has been removed.", file=stdout)
