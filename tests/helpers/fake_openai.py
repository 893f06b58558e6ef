"""Fake OpenAI-compatible servers: real `ThreadingHTTPServer`s on 127.0.0.1 answering `/chat/completions`.

`FakeOpenAI` answers each POST with a `Reply` from a script (consumed in order, the last one repeats)
or from a `respond(body, index)` callback, and logs every request it saw (time, path, headers, body).
`ScriptedTeacher` scripts replies per (image, type) for `llava-lf generate`: it knows which pair a
request is about from its messages (the system prompt names the type, the last user turn starts with
the image's captions). Used by the generate and the judge tests alike.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self

USAGE = {"prompt_tokens": 100, "completion_tokens": 20}


@dataclass(frozen=True)
class Reply:
    status: int = 200
    text: str | None = None  # the completion's content; None: the server's default for this request
    finish_reason: str = "stop"
    raw: bytes | None = None  # sent as the body instead of a completion (error bodies, garbage)
    headers: tuple[tuple[str, str], ...] = ()
    delay_s: float = 0.0  # before answering
    hang_up: bool = False  # close the kept-alive connection after replying, without saying so
    model: str | None = None  # the served model reported; None: the server's


def ok(text: str, delay_s: float = 0.0) -> Reply:
    return Reply(text=text, delay_s=delay_s)


def status(code: int, body: bytes = b"", **headers: str) -> Reply:
    """An error reply; headers as keywords with `_` for `-` (Retry_After="1")."""
    return Reply(code, raw=body or json.dumps({"error": {"message": f"scripted {code}"}}).encode(),
                 headers=tuple((name.replace("_", "-"), value) for name, value in headers.items()))


@dataclass(frozen=True)
class Seen:
    at: float  # time.monotonic() when the request arrived
    path: str
    headers: dict[str, str]
    body: dict | None
    status: int
    tag: object = None  # what the server made of the request (ScriptedTeacher: (image_id, type))

    @property
    def authorization(self) -> str | None:
        return self.headers.get("Authorization")


class FakeOpenAI:
    """Answers every POST; `script` replies in order (the last repeats), `respond` computes one instead."""

    def __init__(self, script: Sequence[Reply] = (), respond: Callable[[dict, int], Reply] | None = None,
                 served_model: str | None = None):
        self._script, self._respond, self.served_model = list(script), respond, served_model
        self.seen: list[Seen] = []
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall

            def log_message(self, *args) -> None:
                pass

            def handle(self) -> None:
                try:
                    super().handle()
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up on a slow reply or closed a kept-alive connection

            def do_POST(self) -> None:
                data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    body = json.loads(data)
                except ValueError:
                    body = None
                fake._answer(self, body)

            do_GET = do_POST  # a client that follows a redirect may turn the POST into a GET: log it too

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.origin = f"http://127.0.0.1:{self.server.server_port}"
        self.url = f"{self.origin}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.server.shutdown()
        self.server.server_close()

    # What to answer: override these two in a subclass, or pass `script` / `respond`.
    def reply_for(self, body: dict | None, index: int) -> tuple[Reply, object]:
        if self._respond is not None:
            return self._respond(body, index), None
        if not self._script:
            return Reply(), None
        return self._script[min(index, len(self._script) - 1)], None

    def default_text(self, body: dict | None, tag: object) -> str:
        return "ok"

    def _answer(self, handler: BaseHTTPRequestHandler, body: dict | None) -> None:
        with self.lock:
            index = len(self.seen)
            reply, tag = self.reply_for(body, index)
            self.seen.append(Seen(time.monotonic(), handler.path, dict(handler.headers), body, reply.status, tag))
        time.sleep(reply.delay_s)
        if reply.raw is not None:
            payload = reply.raw
        else:
            text = self.default_text(body, tag) if reply.text is None else reply.text
            model = reply.model or self.served_model or (body or {}).get("model", "fake")
            payload = json.dumps({"id": "chatcmpl-1", "object": "chat.completion", "model": model, "usage": USAGE,
                                  "choices": [{"index": 0, "finish_reason": reply.finish_reason,
                                               "message": {"role": "assistant", "content": text}}]}).encode()
        handler.send_response(reply.status)
        for name, value in reply.headers:
            handler.send_header(name, value)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)
        handler.close_connection = reply.hang_up

    def count(self, **match) -> int:
        return sum(all(getattr(seen, k) == v for k, v in match.items()) for seen in self.seen)


def good_text(task: str, context) -> str:
    """A reply `llava-lf generate` accepts for `task` about the image `context` describes."""
    first, second = context.captions[0], context.captions[1]
    if task == "detail":
        return " ".join(context.captions)
    if task == "complex":
        return f"Question: Why might these shapes be arranged this way?\nAnswer: {first}\nThey are spread out."
    return f"Question: What does the picture show?\nAnswer: {first}\nQuestion: Where are they?\nAnswer: {second}"


class ScriptedTeacher(FakeOpenAI):
    """A teacher for `generate`: `script[(image_id, task)]` lists that pair's replies (consumed in order, the
    last repeats); unscripted pairs get good replies. Each Seen's tag is its (image_id, task)."""

    def __init__(self, contexts: list, script: dict | None = None):
        from llava_lf.data.generate.tasks import load_prompts

        super().__init__()
        # The last user turn opens with the image's captions, one a line (boxes follow after a blank line).
        self.contexts_by_caption = {"\n".join(context.captions): context for context in contexts}
        assert len(self.contexts_by_caption) == len(contexts), "two images have the same captions: cannot tell apart"
        self.systems = {prompt.system: task for task, prompt in load_prompts().tasks.items()}
        self.pair_script = {key: list(replies) for key, replies in (script or {}).items()}

    def reply_for(self, body: dict | None, index: int) -> tuple[Reply, object]:
        task = self.systems[body["messages"][0]["content"]]
        context = self.contexts_by_caption[body["messages"][-1]["content"].split("\n\n")[0]]
        replies = self.pair_script.get((context.image_id, task))
        reply = Reply() if not replies else (replies.pop(0) if len(replies) > 1 else replies[0])
        return reply, (context.image_id, task)

    def default_text(self, body: dict | None, tag: object) -> str:
        image_id, task = tag
        context = next(c for c in self.contexts_by_caption.values() if c.image_id == image_id)
        return good_text(task, context)

    def pairs(self) -> list[str]:
        """`<image id>-<type>` of every request seen, in arrival order."""
        return [f"{seen.tag[0]}-{seen.tag[1]}" for seen in self.seen]
