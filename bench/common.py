"""What the benchmark scripts share: paths, the machine's name, memory readings, a free port, and the
runner of one measurement in a fresh child process.

The scripts run as `python bench/NAME.py` with the project's environment (mlbert installed), so Python
puts bench/ on the path and `from common import ...` needs nothing more.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "bench" / "results"
SHARED_DATA = ROOT.parent / "shared" / "data"
WORK_DIR = ROOT / "runs"


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), recorded with every result: the machines vary between sessions."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} CPUs, {cpu_model()}"


def gpu_name() -> str | None:
    """The first CUDA device's name, or None on a CPU-only machine."""
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def peak_rss_mb() -> float:
    """This process's own peak RSS (VmHWM). Not ru_maxrss: Linux carries that across exec, so a child
    would report its parent's peak when the parent was larger."""
    return _status_mb("self", "VmHWM:")


def rss_mb(pid: int) -> float:
    """Another process's current RSS."""
    return _status_mb(str(pid), "VmRSS:")


def _status_mb(pid: str, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1]) / 1024
    return float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_child(script: str, spec: dict, env: dict | None = None, timeout: float = 3600) -> dict:
    """Run `script --child SPEC` in a fresh Python; its last stdout line is a JSON result, merged into `spec`
    (with "error" and the end of stderr when it failed), so one measurement never sees another's memory."""
    proc = subprocess.run(
        [sys.executable, script, "--child", json.dumps(spec)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        return {**spec, "error": proc.stderr[-1500:]}
    return {**spec, **json.loads(proc.stdout.strip().splitlines()[-1])}


# One small, fast `mlbert train` run's flags (1 epoch, short texts, thresholds on dev, no checkpoints), for
# benchmarks that measure something other than accuracy.
QUICK_TRAIN_FLAGS = ["--epochs", "1", "--max-length", "64", "--batch-size", "16", "--threshold-data", "dev",
                     "--save-steps", "0", "--overwrite", "--quiet"]  # fmt: skip


def start_server(model: str, env: dict | None = None, timeout: float = 180) -> tuple[subprocess.Popen, str]:
    """`mlbert serve --model MODEL` on a free port, once it answers /readyz -> (process, base URL)."""
    import time

    import httpx

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mlbert", "serve", "--model", str(model), "--port", str(port), "--quiet"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return server, base
        except httpx.HTTPError:
            time.sleep(0.5)
    server.terminate()
    raise SystemExit(f"mlbert serve --model {model} was not ready after {timeout:.0f} s")


def merge_record(path: Path, record: dict, key: tuple[str, ...]) -> None:
    """Put `record` into the JSON list at `path` in place of any record with the same `key` fields, and print
    it in short (floats rounded, the long fields left out)."""
    records = json.loads(path.read_text()) if path.exists() else []
    same = tuple(record.get(k) for k in key)
    records = [r for r in records if tuple(r.get(k) for k in key) != same] + [record]
    path.write_text(json.dumps(records, indent=2) + "\n")
    print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in record.items()
                      if k not in ("command", "machine", "date", "model")}), flush=True)  # fmt: skip
