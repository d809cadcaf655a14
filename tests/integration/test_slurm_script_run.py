"""The batch scripts of taoremote/slurm_script.py run on the real one-node cluster with the docker runtime
(issue 10): exit code file, secret reaches the container through the env file only, the env file is gone
once no task needs it, and `scancel` leaves no container."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from pathlib import Path

from taoremote.command import RunSpec
from taoremote.slurm_script import SlurmJob, build_batch_script, build_sbatch_argv, env_file_text
from tests.integration.conftest import SlurmCluster
from tests.integration.taorun import SESSION_LABEL, docker

SECRET = "s3cr3t-" + uuid.uuid4().hex[:8]
# what the container saw, then sleep $1 and exit $2
PROBE = 'echo "secret=$MY_SECRET slurm=$(env | grep -c ^SLURM_) gpus=$NVIDIA_VISIBLE_DEVICES"; sleep "$1"; exit "$2"'  # noqa: E501


def _submit(job: SlurmJob) -> str:
    Path(job.job_dir).mkdir(mode=0o700)
    Path(job.job_dir, "job.sbatch").write_text(build_batch_script(job))
    fd = os.open(Path(job.job_dir, "env"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, env_file_text("docker", {"MY_SECRET": SECRET}).encode())
    os.close(fd)
    done = subprocess.run(build_sbatch_argv(job.job_dir), capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def _spec(image: str, *command: str) -> RunSpec:
    key, value = SESSION_LABEL.split("=", 1)
    job_id = uuid.uuid4().hex[:8]
    return RunSpec(image, command, job_id, "demo", env_names=("MY_SECRET",), gpus="1", labels=((key, value),))


def _wait_for(path: Path, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear within {timeout:.0f} s"
        time.sleep(0.1)
    return path.read_text()


def _containers(name: str) -> str:
    return docker("ps", "-a", "--filter", f"name={name}", "--format", "{{.Names}}").stdout.strip()


def test_a_job_records_its_exit_code_and_gets_its_secret_only_from_the_env_file(
    slurm_cluster: SlurmCluster, test_images: str, tmp_path: Path
) -> None:
    job = SlurmJob(
        _spec(f"{test_images}/demo:latest", "sh", "-c", PROBE, "sh", "0", "3"), f"{tmp_path}/job", "root"
    )
    _submit(job)

    assert _wait_for(Path(job.job_dir, "exit_code")) == "3\n"
    assert Path(job.job_dir, "output").read_text() == f"secret={SECRET} slurm=0 gpus=0\n"
    assert not Path(job.job_dir, "env").exists()
    assert _containers(f"taoremote-demo-{job.spec.job_id}") == ""


def test_scancel_stops_the_container_and_the_exit_code_says_so(
    slurm_cluster: SlurmCluster, test_images: str, tmp_path: Path
) -> None:
    job = SlurmJob(
        _spec(f"{test_images}/demo:latest", "sh", "-c", PROBE, "sh", "300", "0"), f"{tmp_path}/job", "root"
    )
    slurm_id = _submit(job)
    name = f"taoremote-demo-{job.spec.job_id}"
    deadline = time.monotonic() + 60
    while "Up" not in docker("ps", "--filter", f"name={name}", "--format", "{{.Status}}").stdout:
        assert time.monotonic() < deadline, "the container never started"
        time.sleep(0.1)

    subprocess.run(["scancel", slurm_id], check=True, timeout=30)

    assert _wait_for(Path(job.job_dir, "exit_code")) == "143\n"
    assert _containers(name) == ""


def test_every_array_task_reads_the_env_file_and_the_last_one_deletes_it(
    slurm_cluster: SlurmCluster, test_images: str, tmp_path: Path
) -> None:
    tasks = tuple(("sh", "-c", PROBE, "sh", "1", str(i)) for i in range(3))
    job = SlurmJob(
        _spec(f"{test_images}/demo:latest"), f"{tmp_path}/job", "root", task_commands=tasks, max_parallel=1
    )
    _submit(job)

    codes = [_wait_for(Path(job.job_dir, f"exit_code.{i}")) for i in range(3)]

    assert codes == ["0\n", "1\n", "2\n"]
    for i in range(3):
        assert Path(job.job_dir, f"output.{i}").read_text() == f"secret={SECRET} slurm=0 gpus=0\n"
    assert not Path(job.job_dir, "env").exists()
