"""Does `mlbert serve` give memory back after large requests? Resident memory of a served model before,
during and after a burst of the largest requests the default limits allow (256 texts x 20,000 characters),
then after a stretch of small requests.

    python bench/server_memory.py --model runs/threads/default-1-0 [--bursts 5]

Writes bench/results/server_memory.json and prints the readings.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time
from datetime import date

from common import RESULTS_DIR, free_port, machine, rss_mb
from mlbert.fileio import write_json

RESULTS = RESULTS_DIR / "server_memory.json"


def main(argv: list[str] | None = None) -> int:
    import httpx

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="model folder to serve")
    parser.add_argument("--bursts", type=int, default=5, help="large requests in the burst")
    parser.add_argument("--small", type=int, default=200, help="small requests after the burst")
    parser.add_argument("--env", action="append", default=[], metavar="K=V", help="environment of the server")
    args = parser.parse_args(argv)
    port = free_port()
    env = dict(__import__("os").environ, **dict(kv.split("=", 1) for kv in args.env))
    server = subprocess.Popen(
        [sys.executable, "-m", "mlbert", "serve", "--model", args.model, "--port", str(port), "--quiet"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    readings = []
    try:
        deadline = time.time() + 180
        while time.time() < deadline:
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        readings.append({"when": "ready", "rss_mb": rss_mb(server.pid)})
        big = {"texts": [("word " * 4000)[:20_000] for _ in range(256)]}
        with httpx.Client(timeout=600) as client:
            for i in range(args.bursts):
                assert client.post(f"{base}/v1/predict", json=big).status_code == 200
                readings.append({"when": f"after large request {i + 1}", "rss_mb": rss_mb(server.pid)})
            for _ in range(args.small):
                client.post(f"{base}/v1/predict", json={"texts": ["a short text to label"]})
            readings.append({"when": f"after {args.small} small requests", "rss_mb": rss_mb(server.pid)})
            time.sleep(5)
            readings.append({"when": "5 s idle", "rss_mb": rss_mb(server.pid)})
    finally:
        server.terminate()
        server.wait(timeout=60)
    for r in readings:
        print(f"{r['when']:>28}: {r['rss_mb']:.0f} MB")
    record = {
        "date": date.today().isoformat(),
        "machine": machine(),
        "env": args.env,
        "readings": readings,
        "command": shlex.join(["python", "bench/server_memory.py", *(argv or sys.argv[1:])]),
    }
    old = __import__("json").loads(RESULTS.read_text())["runs"] if RESULTS.is_file() else []
    write_json(RESULTS, {"runs": [*old, record]})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
