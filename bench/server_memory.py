"""Does `mlbert serve` give memory back after large requests? Resident memory of a served model before,
during and after a burst of the largest requests the default limits allow (256 texts x 20,000 characters),
then after a stretch of small requests.

    python bench/server_memory.py --model runs/threads/default-1-0 [--bursts 5]

Writes bench/results/server_memory.json and prints the readings.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from datetime import date

from common import RESULTS_DIR, machine, rss_mb, start_server
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
    env = dict(os.environ, **dict(kv.split("=", 1) for kv in args.env))
    server, base = start_server(args.model, env=env)
    readings = []
    try:
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
    old = json.loads(RESULTS.read_text())["runs"] if RESULTS.is_file() else []
    write_json(RESULTS, {"runs": [*old, record]})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
