"""`taoremote --slurm LOGIN` against the real one-node test cluster with the docker runtime and the real
dockerd (issue 10), with the login node this machine (`--slurm local`) and through the test sshd: exit
codes, arguments byte-exact, the secret in no script text and no Slurm record, exactly the allocated GPU,
stop and Ctrl-C leave no container and no job, list/logs/prune, unknown ids, an sbatch rejection."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest

from tests.integration.conftest import SlurmCluster, SshHost
from tests.integration.taorun import (
    DEFAULT_SMI,
    REGISTRY,
    base_env,
    mine,
    session_job_ids,
    start_taoremote,
    taoremote,
    wait_for,
    write_fake_nvidia_smi,
    write_mounts,
)

pytestmark = pytest.mark.usefixtures("test_images", "clean_jobs", "slurm_cluster")
SECRET = "s3cr3t-Slurm-9vQm2LxT"
ARGS = ["-e", "spec file.txt", "it's", 'a"b', "$HOME", ";echo INJECTED", "", "x\ty", "*.json"]
PRINT_ARGS = 'for a in "$@"; do printf "<%s>\\n" "$a"; done; echo "gpus=$NVIDIA_VISIBLE_DEVICES"'


@pytest.fixture(params=["local", "ssh"])
def login(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[list[str], dict[str, str]]:
    """The global options naming the login node, and the environment taoremote runs in."""
    ws = tmp_path / "ws"
    ws.mkdir()
    mounts = write_mounts(
        tmp_path / "mounts.json",
        {
            "Mounts": [{"source": str(ws), "destination": "/workspace/ws"}],
            "Envs": [{"variable": "API_TOKEN", "value": SECRET}],
        },
    )
    env = base_env(tmp_path / "home", None, mounts)
    (tmp_path / "home").mkdir()
    if request.param == "local":
        return ["--slurm", "local"], env
    host: SshHost = request.getfixturevalue("sshd_host")
    return ["--ssh-config", str(host.ssh_config_path), "--slurm", host.name], env


def _run(
    login: tuple[list[str], dict[str, str]], *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    options, env = login
    return taoremote([*options, *args], env, timeout=timeout)


def _rows(login: tuple[list[str], dict[str, str]]) -> list[dict[str, object]]:
    listed = _run(login, "list", "--all", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    return mine(json.loads(listed.stdout))


def _squeue_has(slurm_id: str) -> bool:
    out = subprocess.run(["squeue", "-h", "-j", slurm_id, "-o", "%T"], capture_output=True, text=True).stdout
    return out.strip() in ("PENDING", "RUNNING", "COMPLETING", "CONFIGURING")


def test_exit_codes_and_arguments_arrive_byte_exact_with_exactly_the_allocated_gpu(
    login: tuple[list[str], dict[str, str]], slurm_cluster: SlurmCluster
) -> None:
    ok = _run(login, "--gpus", "1", "detectnet_v2", "run", "sh", "-c", PRINT_ARGS, "sh", *ARGS)
    failed = _run(login, "detectnet_v2", "run", "sh", "-c", 'echo "token=$API_TOKEN"; exit 3')

    assert ok.returncode == 0, ok.stderr
    lines = ok.stdout.splitlines()
    assert lines[:-1] == [f"<{a}>" for a in ARGS]
    assert lines[-1] in {f"gpus={i}" for i in range(slurm_cluster.gpus)}  # one GPU, one Slurm gave
    assert (failed.returncode, failed.stdout) == (3, f"token={SECRET}\n"), failed.stderr
    assert _rows(login) == []  # a foreground job leaves nothing behind


def test_a_detached_job_keeps_its_secret_out_of_the_script_and_slurm_then_logs_list_and_prune(
    login: tuple[list[str], dict[str, str]],
) -> None:
    started = _run(
        login, "-d", "detectnet_v2", "run", "sh", "-c", 'sleep 2; echo "seen=${#API_TOKEN}"; exit 3'
    )
    assert started.returncode == 0, started.stderr
    job_id = started.stdout.strip()
    (row,) = [r for r in _rows(login) if r["job"] == job_id]
    slurm_id = str(row["container_id"])
    record = subprocess.run(["scontrol", "show", "job", slurm_id], capture_output=True, text=True).stdout
    script = subprocess.run(
        ["scontrol", "write", "batch_script", slurm_id, "-"], capture_output=True, text=True
    )

    followed = _run(login, "logs", "-f", job_id)
    assert (followed.returncode, followed.stdout) == (3, f"seen={len(SECRET)}\n"), followed.stderr
    assert "--env-file" in script.stdout and SECRET not in script.stdout + record
    (row,) = [r for r in _rows(login) if r["job"] == job_id]
    assert (row["exit_code"], row["status"]) == (3, "Exited (3)")
    assert _run(login, "logs", job_id).stdout == f"seen={len(SECRET)}\n"

    pruned = _run(login, "prune")
    assert pruned.returncode == 0 and job_id in pruned.stdout, pruned.stderr
    assert [r for r in _rows(login) if r["job"] == job_id] == []


def test_stop_cancels_the_job_and_leaves_no_container_and_no_env_file(
    login: tuple[list[str], dict[str, str]],
) -> None:
    started = _run(login, "-d", "detectnet_v2", "run", "sleep", "300")
    job_id = started.stdout.strip()
    # the one-node cluster may still be finishing an earlier test's job: give the queue time
    assert wait_for(lambda: session_job_ids(include_stopped=False) != "", timeout=180)

    stopped = _run(login, "stop", job_id, "no-such-job", "other-unknown")

    assert stopped.returncode == 1
    assert f"stopped {job_id}" in stopped.stdout
    errors = stopped.stderr.splitlines()
    assert len(errors) == 2 and "'no-such-job'" in errors[0] and "'other-unknown'" in errors[1]
    assert wait_for(lambda: session_job_ids() == "", timeout=30)
    (row,) = [r for r in _rows(login) if r["job"] == job_id]
    assert row["exit_code"] == 143  # the script's TERM trap stopped the container
    assert _run(login, "prune").returncode == 0


def test_ctrl_c_cancels_the_job_exits_130_and_leaves_nothing(login: tuple[list[str], dict[str, str]]) -> None:
    options, env = login
    proc = start_taoremote([*options, "detectnet_v2", "run", "sleep", "300"], env)
    assert wait_for(lambda: session_job_ids(include_stopped=False) != "", timeout=60)
    slurm_ids = [str(r["container_id"]) for r in _rows(login)]

    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=90)

    assert proc.returncode == 130, err
    assert wait_for(lambda: session_job_ids() == "", timeout=30)
    assert not any(_squeue_has(i) for i in slurm_ids)
    assert _rows(login) == []


def test_an_sbatch_rejection_is_one_line_with_slurms_reason_and_69(
    login: tuple[list[str], dict[str, str]],
) -> None:
    refused = _run(login, "--sbatch", "--partition=no-such-partition", "detectnet_v2", "run", "true")

    assert refused.returncode == 69
    assert refused.stderr.strip().splitlines() == [
        f"taoremote: error: {_where(login)}sbatch refused the job: "
        "Batch job submission failed: Invalid partition name specified"
    ]
    assert _rows(login) == []  # nothing of it stays


def _where(login: tuple[list[str], dict[str, str]]) -> str:
    host = login[0][-1]
    return "" if host == "local" else f"host {host}: "


def test_slurm_with_host_is_a_usage_error(tmp_path: Path) -> None:
    env = base_env(tmp_path)
    result = taoremote(["--slurm", "local", "--host", "gpu1", "list"], env)
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == "taoremote: error: --slurm and --host exclude each other: Slurm picks the nodes"
    )


def test_no_slurm_on_the_login_node_is_69_with_the_fix(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sh", "cat", "grep", "mkdir"):
        (bin_dir / tool).symlink_to(
            subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True, text=True).stdout.strip()
        )
    env = {**base_env(tmp_path), "PATH": str(bin_dir)}
    result = taoremote(["--slurm", "local", "list"], env)

    assert result.returncode == 69
    (line,) = result.stderr.splitlines()
    assert "no Slurm here" in line and "install the Slurm client tools" in line


def test_doctor_finds_slurm_its_gpu_partition_and_the_runtime_and_probes_a_gpu_node_on_request(
    login: tuple[list[str], dict[str, str]], tmp_path: Path
) -> None:
    bin_dir = tmp_path / "smi"
    write_fake_nvidia_smi(bin_dir, DEFAULT_SMI.read_text())  # sbatch passes PATH on to the job
    options, env = login
    env = {**env, "PATH": f"{bin_dir}:{env['PATH']}"}
    image = f"{REGISTRY}/nvidia/tao/tao-toolkit:5.0.0-tf1.15.5"

    plain = taoremote([*options, "--format", "json", "doctor"], env)
    probed = taoremote([*options, "--image", image, "--format", "json", "doctor", "--probe-node"], env)

    assert plain.returncode == 0, plain.stdout + plain.stderr
    verdicts = {r["check"]: r["status"] for r in json.loads(plain.stdout)}
    assert verdicts["Slurm"] == verdicts["partition gpu*"] == verdicts["container runtime"] == "ok"
    assert verdicts["NVIDIA driver"] == "skip"
    if options[-1] == "local":  # over the test sshd the GPU node's PATH is the login shell's: no fake smi
        assert probed.returncode == 0, probed.stdout + probed.stderr
        node = {r["check"]: r for r in json.loads(probed.stdout) if "(GPU node)" in str(r["host"])}
        assert node["NVIDIA driver"]["status"] == "ok" and "CUDA 13.0" in str(node["NVIDIA driver"]["detail"])
        assert node[image]["status"] == "ok"
