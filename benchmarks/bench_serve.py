"""Serving throughput and latency: `tfcli serve` with batching against one request at a time.

    python benchmarks/bench_serve.py -m runs/quickstart --threads 2 --precision auto
    python benchmarks/bench_serve.py --random-model base --device cuda     # a GPU, random weights

Each mode runs a real server process (`python -m tfcli serve --port 0`), one after the
other: batched (the defaults) and unbatched (`--batch-requests 1`: the worker translates one
request at a time, as a server without batching does). Clients are threads with a keep-alive
HTTP connection each, sending one test sentence per request (the bundled data/de-en/test.de,
in order) to POST /translate, the next as soon as the answer is back. For 1, 8 and 32
clients it prints requests per second (wall time of all requests) and the p50/p95/p99
latency of a request, after a warm-up, and the batched/unbatched ratio at each.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch
from common import DATA, bench_tokenizer, format_table, model_shape, write_json

from tfcli.checkpoint import Checkpoint, save_checkpoint
from tfcli.model.transformer import Transformer
from tfcli.run_dir import RunDir


class Server:
    """`tfcli serve` in its own process; its port read from the line it prints."""

    def __init__(self, run: Path, args: list[str], threads: int, workdir: Path) -> None:
        self.log = workdir / f"serve-{len(list(workdir.iterdir()))}.err"
        env = dict(os.environ)
        if threads:
            env["OMP_NUM_THREADS"] = str(threads)
        command = [sys.executable, "-m", "tfcli", "serve", "-m", str(run), "--port", "0"]
        with open(self.log, "w", encoding="utf-8") as err:
            self.proc = subprocess.Popen(
                [*command, "--quiet", *args], stdout=subprocess.DEVNULL, stderr=err, env=env
            )
        self.port = self._port()

    def _port(self) -> int:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            found = re.search(r"on http://127\.0\.0\.1:(\d+) ", self.log.read_text("utf-8"))
            if found and _healthy(int(found.group(1))):
                return int(found.group(1))
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        self.stop()
        sys.exit(f"the server did not start:\n{self.log.read_text('utf-8')}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=120)


def _healthy(port: int) -> bool:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/health")
        return conn.getresponse().status == 200
    except OSError:
        return False


def run_clients(port: int, sentences: list[str], clients: int, requests: int) -> dict:
    """`requests` requests from `clients` threads; requests/s and latency percentiles (ms)."""
    latencies: list[float] = []
    lock = threading.Lock()
    counter = iter(range(requests))

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        headers = {"Content-Type": "application/json"}
        for n in counter:  # shared: each request number is taken by one thread
            body = json.dumps(
                {"q": sentences[n % len(sentences)], "source": "auto", "target": "en"}
            )
            start = time.perf_counter()
            conn.request("POST", "/translate", body, headers)
            reply = conn.getresponse()
            reply.read()
            took = time.perf_counter() - start
            if reply.status != 200:
                raise RuntimeError(f"HTTP {reply.status}")
            with lock:
                latencies.append(took)
        conn.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return {
        "clients": clients,
        "requests": len(latencies),
        "requests_per_s": len(latencies) / wall,
        "p50_ms": cuts[49] * 1000,
        "p95_ms": cuts[94] * 1000,
        "p99_ms": cuts[98] * 1000,
    }


def random_run(shape_name: str, workdir: Path) -> Path:
    """A run directory holding a model of `shape_name`'s shape with random weights."""
    shape = model_shape(shape_name)
    tok = bench_tokenizer(shape.vocab)
    torch.manual_seed(1)
    model = Transformer(shape.model, len(tok), len(tok))
    run = workdir / f"random-{shape_name}"
    run.mkdir()
    save_checkpoint(RunDir(run).best, Checkpoint(model.state_dict(), shape.config, tok, tok))
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-m", "--model", type=Path, default=Path("runs/quickstart"))
    parser.add_argument("--random-model", metavar="SHAPE", help="random weights: quickstart, base")
    parser.add_argument("--clients", default="1,8,32", help="client counts, comma-separated")
    parser.add_argument("--requests", type=int, default=8, help="requests per client (at least 64)")
    parser.add_argument("--sentences", type=int, default=1000, help="test sentences cycled")
    parser.add_argument("--threads", type=int, default=0, help="server threads; 0: all cores")
    parser.add_argument("--device", default=None, help="the server's --device")
    parser.add_argument("--precision", default=None, help="the server's --precision")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args()
    sentences = (DATA / "test.de").read_text("utf-8").splitlines()[: args.sentences]
    counts = [int(c) for c in args.clients.split(",")]
    extra = ["--device", args.device] if args.device else []
    extra += ["--precision", args.precision] if args.precision else []
    results: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        run = random_run(args.random_model, workdir) if args.random_model else args.model
        for mode, flags in (("batched", []), ("unbatched", ["--batch-requests", "1"])):
            server = Server(run, [*flags, *extra], args.threads, workdir)
            try:
                run_clients(server.port, sentences, 4, 16)  # warm-up: first shapes, caches
                results[mode] = [
                    run_clients(server.port, sentences, c, max(64, c * args.requests))
                    for c in counts
                ]
            finally:
                server.stop()
    print_results(results, run, args)
    if args.json:
        facts = {"run": str(run), "threads": args.threads, "precision": args.precision}
        write_json(args.json, {**facts, "results": results})


def print_results(results: dict[str, list[dict]], run: Path, args: argparse.Namespace) -> None:
    rows = []
    for batched, unbatched in zip(results["batched"], results["unbatched"]):
        for mode, r in (("batched", batched), ("unbatched", unbatched)):
            ratio = r["requests_per_s"] / unbatched["requests_per_s"]
            rows.append(
                [
                    r["clients"],
                    mode,
                    r["requests"],
                    r["requests_per_s"],
                    r["p50_ms"],
                    r["p95_ms"],
                    r["p99_ms"],
                    ratio,
                ]
            )
    headers = [
        "clients",
        "serving",
        "requests",
        "req/s",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "x unbatched",
    ]
    threads, precision = args.threads or "all", args.precision or "the run's"
    print(
        f"tfcli serve, {run}, server threads: {threads}, precision: {precision}, "
        "one sentence per request"
    )
    print(format_table(headers, rows))


if __name__ == "__main__":
    main()
