"""Benchmark: requests/s of `llava-lf generate` against a loopback teacher that answers instantly.

Run: .venv/bin/python benchmarks/generate_throughput.py [--images 400] [--chart runs/benchmarks/generate_throughput.png]
The teacher runs in its own process (a stdlib ThreadingHTTPServer, HTTP/1.1 keep-alive) and returns a
canned good reply for each type, so the figure is the whole pipeline's: building messages, the HTTP
client, parsing replies and appending records. Target: >= 200 requests/s at concurrency 32.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import tempfile
import time
from pathlib import Path

CONCURRENCY = (1, 8, 32)
TARGET_AT_32 = 200.0
REPLIES = {  # a phrase of each type's system prompt -> a reply that parses for that type
    b"talking about one picture": "Question: What is shown?\nAnswer: Coloured shapes.\nQuestion: How many?\nAnswer: Two.",
    b"describing one picture": "Two coloured shapes sit on a plain grey background, one near the top and one lower.",
    b"reasoning about one picture": "Question: Why are they apart?\nAnswer: They sit in different cells of a grid.",
}


def serve(ready: multiprocessing.Queue) -> None:
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    bodies = {phrase: json.dumps({
        "object": "chat.completion", "usage": {"prompt_tokens": 500, "completion_tokens": 30},
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
    }).encode() for phrase, text in REPLIES.items()}

    class Instant(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall

        def log_message(self, *args) -> None:
            pass

        def do_POST(self) -> None:
            request = self.rfile.read(int(self.headers["Content-Length"]))
            body = next(body for phrase, body in bodies.items() if phrase in request)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Instant)
    server.daemon_threads = True
    ready.put(server.server_port)
    server.serve_forever()


def measure(url: str, data_root: Path, out_dir: Path, concurrency: int) -> tuple[float, int]:
    from llava_lf.data.generate import GenerateJob, TeacherConfig, run_generation
    from llava_lf.data.generate.tasks import TASK_TYPES

    job = GenerateJob(data_root / "captions_train.json", data_root / "instances_train.json", list(TASK_TYPES),
                      out_dir / f"c{concurrency}.jsonl", TeacherConfig(base_url=url, model="instant"),
                      concurrency=concurrency, progress=False)
    began = time.perf_counter()
    report = run_generation(job)
    elapsed = time.perf_counter() - began
    if report.failures or report.rejected or report.unfinished:
        raise RuntimeError(f"the benchmark run was not clean:\n{report.summary()}")
    return report.requests / elapsed, report.requests


def chart(rates: dict[int, float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(5, 3.2))
    axes.bar([str(c) for c in rates], list(rates.values()), color="#4c72b0")
    axes.axhline(TARGET_AT_32, color="#c44e52", linestyle="--", label=f"target at 32: {TARGET_AT_32:.0f}")
    axes.set_xlabel("requests in flight (--concurrency)")
    axes.set_ylabel("requests / s")
    axes.set_title("llava-lf generate vs an instant loopback teacher")
    axes.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=400, help="synthetic images; three requests each")
    parser.add_argument("--chart", type=Path, default=Path("runs/benchmarks/generate_throughput.png"))
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()

    from llava_lf.demo.dataset import write_demo_data

    ready: multiprocessing.Queue = multiprocessing.get_context("spawn").Queue()
    server = multiprocessing.get_context("spawn").Process(target=serve, args=(ready,), daemon=True)
    server.start()
    url = f"http://127.0.0.1:{ready.get(timeout=30)}/v1"
    rates, counts = {}, {}
    with tempfile.TemporaryDirectory() as scratch:
        data = write_demo_data(Path(scratch) / "coco", n_train=args.images, n_test=1, image_size=48, seed=0)
        for concurrency in CONCURRENCY:
            rates[concurrency], requests = measure(url, data.root, Path(scratch), concurrency)
            counts[concurrency] = requests
            print(f"concurrency {concurrency:>2}: {rates[concurrency]:7.0f} requests/s ({requests} requests)", flush=True)
    server.terminate()
    verdict = "meets" if rates[32] >= TARGET_AT_32 else "MISSES"
    print(f"at 32 in flight: {rates[32]:.0f} requests/s, {verdict} the {TARGET_AT_32:.0f} requests/s target")
    chart(rates, args.chart)
    print(f"chart: {args.chart}")
    if args.json is not None:
        args.json.write_text(json.dumps({"images": args.images, "requests": counts, "requests_per_s": rates}, indent=1))


if __name__ == "__main__":
    main()
