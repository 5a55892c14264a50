"""Threads for the CPUs this process may actually use, set before torch starts its thread pools.

Two habits of the OpenMP runtime under torch hurt on small machines: it starts one thread per core of
the host even when affinity or a container's CPU quota allows fewer, and its idle threads busy-wait
(spin, 300,000 rounds in GNU OpenMP) for the next piece of work. Two trainings side by side on 2 cores
then ran 10-15x slower each instead of 2x (BENCHMARKS.md, "Threads"). Unless the environment already says
otherwise, mlbert asks for one thread per usable CPU and a short spin (GOMP_SPINCOUNT=10000): side by side
2.4x, alone as fast as before (measured). Sleeping at once (OMP_WAIT_POLICY=PASSIVE) shared best (1.5x)
but cost 40 % alone, the common case. `MLBERT_THREADS=off` leaves the environment alone;
`MLBERT_THREADS=N` asks for N threads.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

ENV = "MLBERT_THREADS"
SPINCOUNT = "10000"  # GNU OpenMP's busy-wait rounds before a thread sleeps (its default: 300,000)


def cgroup_cpu_quota(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """CPUs a container's quota allows (cgroup v2 cpu.max, or v1 cfs quota / period), None when unlimited."""
    try:
        v2 = root / "cpu.max"
        if v2.is_file():
            quota, period = v2.read_text().split()[:2]
            return None if quota == "max" else int(quota) / int(period)
        v1 = root / "cpu" / "cpu.cfs_quota_us"
        if v1.is_file():
            quota = int(v1.read_text())
            period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
            return None if quota <= 0 else quota / period
    except (OSError, ValueError):
        pass
    return None


def usable_cpus(root: Path = Path("/sys/fs/cgroup")) -> int:
    """CPUs this process may run on: its affinity mask, capped by a container's CPU quota."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = cgroup_cpu_quota(root)
    if quota is not None:
        n = min(n, max(1, math.floor(quota)))
    return max(1, n)


def thread_environment(environ: dict[str, str], cpus: int) -> dict[str, str]:
    """The settings to add to `environ` (never overriding one it has)."""
    wanted = environ.get(ENV, "").strip().lower()
    if wanted == "off":
        return {}
    add = {}
    if "OMP_WAIT_POLICY" not in environ and "GOMP_SPINCOUNT" not in environ:
        add["GOMP_SPINCOUNT"] = SPINCOUNT
    if "OMP_NUM_THREADS" not in environ:
        add["OMP_NUM_THREADS"] = wanted if wanted.isdigit() and int(wanted) > 0 else str(cpus)
    return add


def prepare() -> None:
    """Apply `thread_environment` to this process, if torch has not started its thread pools yet."""
    if "torch" in sys.modules:  # too late for the OpenMP runtime to read them; leave the caller's process be
        return
    os.environ.update(thread_environment(dict(os.environ), usable_cpus()))
