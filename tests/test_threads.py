"""Thread settings from the CPUs a process may use (affinity, a container's quota), never overriding the user's."""

import os

from mlbert.threads import cgroup_cpu_quota, thread_environment, usable_cpus


def test_cgroup_v2_and_v1_quotas_are_read(tmp_path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cgroup_cpu_quota(tmp_path) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_quota(tmp_path) is None
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("200000")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000")
    assert cgroup_cpu_quota(v1) == 2.0
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("-1")
    assert cgroup_cpu_quota(v1) is None
    assert cgroup_cpu_quota(tmp_path / "absent") is None


def test_a_quota_caps_the_cpus_and_never_below_one(tmp_path):
    (tmp_path / "cpu.max").write_text("50000 100000\n")
    assert usable_cpus(tmp_path) == 1
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert usable_cpus(tmp_path) == len(os.sched_getaffinity(0))


def test_the_environment_is_only_added_to():
    assert thread_environment({}, 4) == {"GOMP_SPINCOUNT": "10000", "OMP_NUM_THREADS": "4"}
    assert thread_environment({"OMP_NUM_THREADS": "1"}, 4) == {"GOMP_SPINCOUNT": "10000"}
    assert thread_environment({"OMP_WAIT_POLICY": "ACTIVE", "OMP_NUM_THREADS": "8"}, 4) == {}
    assert thread_environment({"GOMP_SPINCOUNT": "0"}, 4) == {"OMP_NUM_THREADS": "4"}
    assert thread_environment({"MLBERT_THREADS": "off"}, 4) == {}
    assert thread_environment({"MLBERT_THREADS": "3"}, 4)["OMP_NUM_THREADS"] == "3"


def test_the_command_line_runs_with_the_settings(tmp_path):
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "GOMP_")) and k != "MLBERT_THREADS"}
    code = "import os, mlbert, torch; print(os.environ['GOMP_SPINCOUNT'], torch.get_num_threads())"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["10000", str(usable_cpus())]
