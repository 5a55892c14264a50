"""Load benchmark of `mlbert serve`: requests/s and latency at several concurrencies, micro-batching on vs off.

    python bench/serve.py --model runs/goemotions            # 1, 8, 64 clients; then a 5-minute soak

Starts the real server (`mlbert serve`, loopback only) as a subprocess for each setting, sends one-text
requests with real texts from ../shared/data/goemotions/test.jsonl from N concurrent clients (each on its
own keep-alive connection, through a minimal asyncio HTTP/1.1 client: the load generator shares the two
cores with the server, and a heavier client would mostly measure itself), bounded by --requests and
--max-seconds per level, and records requests/s, p50/p99 latency, errors and the server's resident memory.
The soak keeps 8 clients busy for --soak-seconds with batching on and reports RSS at its start and end.
Results: bench/results/serve.json, and a markdown table on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np

from common import RESULTS_DIR, SHARED_DATA, free_port, rss_mb

RESULTS = RESULTS_DIR / "serve.json"


class Connection:
    """One keep-alive HTTP/1.1 connection with the least client work per request (the load generator
    shares the two cores with the server, so a heavy client would measure itself)."""

    def __init__(self, port: int):
        self.port = port
        self.reader = self.writer = None

    async def post(self, path: str, body: bytes) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.writer.write(
            b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (path.encode(), len(body), body)
        )
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        await self.reader.readexactly(length)
        return status

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


class Server:
    def __init__(self, model: str, batching: bool, extra: list[str]):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "mlbert", "serve", "--model", model, "--port", str(self.port), "--quiet"]
        if not batching:
            cmd.append("--no-batching")
        cmd += extra
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    async def ready(self, client, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.proc.stderr.read().decode()[-2000:]}")
            try:
                if (await client.get(f"{self.base}/readyz")).status_code == 200:
                    return
            except Exception:  # noqa: BLE001 - not listening yet
                pass
            await asyncio.sleep(0.2)
        raise TimeoutError("server not ready")

    def stop(self) -> int:
        self.proc.terminate()
        return self.proc.wait(timeout=60)


async def load(port: int, texts: list[str], concurrency: int, n_requests: int, max_seconds: float) -> dict:
    """`concurrency` clients, each on its own keep-alive connection, send one-text requests back to back
    until n_requests or max_seconds."""
    latencies, errors, sent = [], 0, 0
    stop_at = time.monotonic() + max_seconds
    bodies = [json.dumps({"texts": [t]}).encode() for t in texts]

    async def worker(k: int):
        nonlocal errors, sent
        conn = Connection(port)
        while sent < n_requests and time.monotonic() < stop_at:
            body = bodies[sent % len(bodies)]
            sent += 1
            started = time.perf_counter()
            try:
                ok = await conn.post("/v1/predict", body) == 200
            except Exception:  # noqa: BLE001 - counted; reconnect
                ok = False
                conn.close()
                conn = Connection(port)
            if ok:
                latencies.append(time.perf_counter() - started)
            else:
                errors += 1
        conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker(k) for k in range(concurrency)))
    seconds = time.perf_counter() - started
    lat = np.array(latencies) * 1000
    return {
        "requests": len(latencies) + errors,
        "errors": errors,
        "seconds": round(seconds, 2),
        "requests_per_s": round(len(latencies) / seconds, 2),
        "p50_ms": round(float(np.percentile(lat, 50)), 1) if len(lat) else None,
        "p99_ms": round(float(np.percentile(lat, 99)), 1) if len(lat) else None,
    }


async def run(args) -> list[dict]:
    import httpx

    with open(args.data, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    texts = [r["text"] for r in rows]
    records = []
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        for batching in (True, False):
            server = Server(args.model, batching, ["--backend", args.backend, "--max-wait-ms", str(args.max_wait_ms)])
            try:
                await server.ready(client)
                await load(server.port, texts, 4, 40, 30)  # warm the model
                for concurrency in args.concurrency:
                    result = await load(server.port, texts, concurrency, args.requests, args.max_seconds)
                    result.update(concurrency=concurrency, batching=batching, rss_mb=round(rss_mb(server.proc.pid), 1))
                    records.append(result)
                    print(json.dumps(result), flush=True)
                if batching and args.soak_seconds > 0:
                    start_rss = rss_mb(server.proc.pid)
                    soak = await load(server.port, texts, 8, 10**9, args.soak_seconds)
                    soak.update(
                        what="soak",
                        concurrency=8,
                        batching=True,
                        rss_start_mb=round(start_rss, 1),
                        rss_end_mb=round(rss_mb(server.proc.pid), 1),
                    )
                    records.append(soak)
                    print(json.dumps(soak), flush=True)
            finally:
                code = server.stop()
                for r in records:
                    if r["batching"] == batching:
                        r["exit_code"] = code
    return records


def table(records: list[dict]) -> str:
    lines = [
        "| clients | batching | requests | errors | requests/s | p50 ms | p99 ms | server RSS MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        if r.get("what") == "soak":
            continue
        lines.append(
            f"| {r['concurrency']} | {'on' if r['batching'] else 'off'} | {r['requests']} | {r['errors']} | "
            f"{r['requests_per_s']} | {r['p50_ms']} | {r['p99_ms']} | {r['rss_mb']} |"
        )
    by = {(r["concurrency"], r["batching"]): r for r in records if r.get("what") != "soak"}
    for c in sorted({r["concurrency"] for r in by.values()}):
        if (c, True) in by and (c, False) in by:
            ratio = by[(c, True)]["requests_per_s"] / max(by[(c, False)]["requests_per_s"], 1e-9)
            lines.append(f"\n{c} clients: batching on / off = {ratio:.2f}x requests/s")
    for r in records:
        if r.get("what") == "soak":
            lines.append(
                f"\nsoak: {r['seconds']:.0f}s at 8 clients, {r['requests']} requests, {r['errors']} errors, "
                f"RSS {r['rss_start_mb']} -> {r['rss_end_mb']} MB"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--model", required=True, help="model folder from mlbert train (the packaged MiniLM, fine-tuned)"
    )
    parser.add_argument("--data", default=str(SHARED_DATA / "goemotions" / "test.jsonl"))
    parser.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[1, 8, 64])
    parser.add_argument("--requests", type=int, default=2000, help="requests per level at most")
    parser.add_argument("--max-seconds", type=float, default=60, help="seconds per level at most")
    parser.add_argument("--soak-seconds", type=float, default=300, help="0 skips the soak")
    parser.add_argument("--backend", default="torch", help="inference backend of the server (both modes)")
    parser.add_argument("--max-wait-ms", type=float, default=5.0, help="the server's --max-wait-ms (batching on)")
    args = parser.parse_args(argv)
    if not Path(args.data).is_file():
        print(f"serve.py: {args.data} not found; the benchmark needs ../shared/data", file=sys.stderr)
        return 2
    records = asyncio.run(run(args))
    command = shlex.join(["python", "bench/serve.py", *(argv if argv is not None else sys.argv[1:])])
    meta = {
        "command": command,
        "date": date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.processor() or platform.platform()}",
    }
    from mlbert.fileio import write_json

    write_json(RESULTS, {**meta, "records": records})
    print(table(records))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
