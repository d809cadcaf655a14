"""The Slurm test rig itself (issue 10): what the Slurm backend's tests rely on, checked against the real
one-node cluster of scripts/start-slurm.sh — a GPU request gets exactly one fake GPU, the output file
appears, a job can run containers on this machine's dockerd, and a client over the test sshd finds the
cluster without any SLURM_CONF."""

from __future__ import annotations

import re
import shlex
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.conftest import SlurmCluster, SshHost
from tests.integration.taorun import SESSION_LABEL

FINISHED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED"}


def _sbatch(script: str, *options: str) -> str:
    done = subprocess.run(
        ["sbatch", "--parsable", *options],
        input=script,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().split(";")[0]


def _job_fields(job_id: str) -> dict[str, str]:
    out = subprocess.run(
        ["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True, timeout=30
    ).stdout
    return dict(re.findall(r"(\w+)=(\S*)", out))


def _wait_finished(job_id: str, timeout: float = 60) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while True:
        fields = _job_fields(job_id)
        if fields.get("JobState") in FINISHED:
            return fields
        if time.monotonic() > deadline:
            subprocess.run(["scancel", job_id], timeout=30)
            pytest.fail(f"job {job_id} did not finish within {timeout:.0f} s: {fields}")
        time.sleep(0.1)


@pytest.mark.parametrize("request_gpu", [["--gres=gpu:1"], ["--gpus", "1"]], ids=["gres", "gpus"])
def test_a_job_asking_for_one_gpu_gets_exactly_one_and_writes_its_output(
    slurm_cluster: SlurmCluster, tmp_path: Path, request_gpu: list[str]
) -> None:
    out = tmp_path / "job-%j.out"
    script = '#!/bin/bash\necho "job_gpus=$SLURM_JOB_GPUS cvd=$CUDA_VISIBLE_DEVICES"\n'
    job_id = _sbatch(script, *request_gpu, "--job-name=taoremote-rig-gpu", f"--output={out}")

    fields = _wait_finished(job_id)

    assert (fields["JobState"], fields["ExitCode"]) == ("COMPLETED", "0:0")
    text = (tmp_path / f"job-{job_id}.out").read_text()
    match = re.fullmatch(r"job_gpus=(\d+) cvd=(\d+)\n", text)
    assert match, text
    assert match[1] == match[2]
    assert int(match[1]) in range(slurm_cluster.gpus)


def test_a_job_runs_containers_on_this_machines_dockerd_and_keeps_their_exit_code(
    slurm_cluster: SlurmCluster, test_images: str, tmp_path: Path
) -> None:
    image = f"{test_images}/demo:latest"
    label = shlex.quote(SESSION_LABEL)
    script = (
        "#!/bin/bash\n"
        f'docker run --rm --label {label} --gpus "\\"device=$SLURM_JOB_GPUS\\"" {image} true || exit 90\n'
        f"docker run --rm --label {label} {image} sh -c 'exit 3'\n"
    )
    job_id = _sbatch(script, "--gpus", "1", f"--output={tmp_path}/docker-%j.out")

    fields = _wait_finished(job_id)

    output = (tmp_path / f"docker-{job_id}.out").read_text()
    assert (fields["JobState"], fields["ExitCode"]) == ("FAILED", "3:0"), output


def test_a_client_over_the_test_sshd_finds_the_cluster_without_slurm_conf(
    slurm_cluster: SlurmCluster, sshd_host: SshHost
) -> None:
    done = subprocess.run(
        sshd_host.ssh_argv("echo conf=${SLURM_CONF-unset}; sinfo -h -N -o '%N %P %G'"),
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )

    assert done.returncode == 0, done.stderr
    node_line = f"{slurm_cluster.node} {slurm_cluster.partition}* gpu:{slurm_cluster.gpus}"
    assert done.stdout.splitlines() == ["conf=unset", node_line]
