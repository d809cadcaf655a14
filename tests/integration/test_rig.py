"""Checks of the test rig itself: the daemons, images and SSH hosts the other
integration tests stand on. If these fail, other failures are about the rig,
not about taoremote."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
from pathlib import Path

from tests.integration.taorun import SESSION_LABEL

REPO_ROOT = Path(__file__).resolve().parents[2]
TAO = "taoremote.test/nvidia/tao/tao-toolkit"


def run(argv: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def image_env(ref: str) -> dict[str, str]:
    r = run(["docker", "image", "inspect", "--format", "{{json .Config.Env}}", ref])
    assert r.returncode == 0, r.stderr
    return dict(item.split("=", 1) for item in json.loads(r.stdout))


# ----------------------------------------------------------------------------- docker


def test_gpu_container_gets_argv_verbatim(test_images: str) -> None:
    r = run(
        [
            "docker",
            "run",
            "--rm",
            "--init",
            "--gpus",
            "all",
            f"{TAO}:5.0.0-tf1.15.5",
            "detectnet_v2",
            "train",
            "-e",
            "a b",
            "it's",
            "$HOME",
            "",
            "x;y",
            "\\n",
            "l1\nl2",
        ]
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout == (
        "TASK<detectnet_v2>\n"
        "ARG<train>\n"
        "ARG<-e>\n"
        "ARG<a b>\n"
        "ARG<it's>\n"
        "ARG<$HOME>\n"
        "ARG<>\n"
        "ARG<x;y>\n"
        "ARG<\\n>\n"
        "ARG<l1\nl2>\n"
    )


def test_stub_exit_code_and_stderr(test_images: str) -> None:
    r = run(
        [
            "docker",
            "run",
            "--rm",
            "--init",
            "-e",
            "RIG_EXIT=7",
            "-e",
            "RIG_STDERR=boom: it's broken",
            f"{TAO}:6.26.3-pyt",
            "dino",
            "evaluate",
        ]
    )
    assert (r.returncode, r.stdout, r.stderr) == (7, "TASK<dino>\nARG<evaluate>\n", "boom: it's broken\n")


def test_every_task_exists_in_its_image(test_images: str) -> None:
    config = json.loads((REPO_ROOT / "taoremote" / "data" / "tao_tasks.json").read_text())
    per_image: dict[str, set[str]] = {}
    for group in config["task_group"].values():
        for image, tags in group["dockers"].items():
            for tag, spec in tags.items():
                per_image.setdefault(f"{test_images}/{image}:{tag}", set()).update(spec["tasks"])
    for ref, tasks in sorted(per_image.items()):
        script = "for t in " + " ".join(sorted(tasks)) + '; do command -v "$t" >/dev/null || echo "$t"; done'
        r = run(["docker", "run", "--rm", ref, "sh", "-c", script])
        assert (r.returncode, r.stdout) == (0, ""), f"{ref}: missing {r.stdout.split()} {r.stderr}"


def test_cuda_env_of_images(test_images: str) -> None:
    tf1 = image_env(f"{TAO}:5.0.0-tf1.15.5")
    assert (tf1["CUDA_VERSION"], tf1["NVIDIA_REQUIRE_CUDA"]) == ("12.0.1", "cuda>=9.0")
    pyt = image_env(f"{TAO}:6.26.3-pyt")
    assert (pyt["CUDA_VERSION"], pyt["NVIDIA_REQUIRE_CUDA"]) == ("12.8.0.038", "cuda>=9.0")

    req128 = image_env(f"{test_images}/cuda:12.8-require")["NVIDIA_REQUIRE_CUDA"].split(" ")
    assert req128[0] == "cuda>=12.8"
    assert len(req128) == 1 + 5 * 12  # 5 driver branches x 12 brands
    assert "brand=tesla,driver>=535,driver<536" in req128
    assert "brand=geforce,driver>=535,driver<536" not in req128  # GeForce dropped from 12.5 on

    req118 = image_env(f"{test_images}/cuda:11.8-require")["NVIDIA_REQUIRE_CUDA"].split(" ")
    assert req118[0] == "cuda>=11.8"
    brands_b1 = ["tesla", "unknown", "nvidia", "nvidiartx", "geforce"]
    brands_b1 += ["geforcertx", "quadro", "quadrortx", "titan", "titanrtx"]
    assert req118[1:] == [f"brand={b},driver>=470,driver<471" for b in brands_b1]


def test_sleeping_job_dies_on_sigterm(test_images: str, clean_jobs) -> None:
    name = "taoremote-rigcheck-sleep"
    r = run(
        [
            "docker",
            "run",
            "-d",
            "--init",
            "--name",
            name,
            "--label",
            "taoremote.job=rigcheck",
            "--label",
            SESSION_LABEL,
            "-e",
            "RIG_SLEEP=600",
            f"{test_images}/demo:latest",
            "detectnet_v2",
            "train",
        ]
    )
    assert r.returncode == 0, r.stderr
    assert [c["Names"] for c in clean_jobs()] == [name]
    # A grace period far longer than any test: if SIGTERM were ignored, docker
    # would SIGKILL at the end and the exit code would be 137, not 143.
    assert run(["docker", "stop", "-t", "120", name], timeout=180).returncode == 0
    code = run(["docker", "inspect", "--format", "{{.State.ExitCode}}", name]).stdout.strip()
    assert code == "143"


# ----------------------------------------------------------------------------- ssh


def test_ssh_runs_docker_with_strict_host_keys(sshd_host, docker_engine: str) -> None:
    r = run(sshd_host.ssh_argv("docker ps --format '{{.ID}}'"))
    assert r.returncode == 0, r.stderr
    # known_hosts has exactly the line the fixture advertises
    assert sshd_host.host_key_line in sshd_host.known_hosts_path.read_text().splitlines()


def test_unknown_host_key_is_refused(sshd_host, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    r = run(sshd_host.ssh_argv("true", "-o", f"UserKnownHostsFile={empty}"))
    assert r.returncode == 255
    assert "Host key verification failed" in r.stderr


def test_address_form_works(sshd_host) -> None:
    r = run(
        [
            "ssh",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            f"UserKnownHostsFile={sshd_host.known_hosts_path}",
            "-o",
            "IdentitiesOnly=yes",
            "-i",
            str(sshd_host.identity_file),
            "-p",
            str(sshd_host.port),
            f"{sshd_host.user}@{sshd_host.hostname}",
            "echo ok",
        ]
    )
    assert (r.returncode, r.stdout) == (0, "ok\n"), r.stderr


def test_each_host_has_its_own_tools_on_path(sshd_host, fleet) -> None:
    hosts = [sshd_host, *fleet]
    for h in hosts:
        h.install_tool("nvidia-smi", stdout=f"fake smi of {h.name}\n", exit_code=0)
    try:
        for h in hosts:
            r = run(h.ssh_argv("command -v nvidia-smi; nvidia-smi --query-gpu=name"))
            assert r.returncode == 0, r.stderr
            assert r.stdout == f"{h.bin_dir / 'nvidia-smi'}\nfake smi of {h.name}\n"
        fleet[0].install_tool("nvidia-smi", stderr="NVIDIA-SMI has failed\n", exit_code=9)
        r = run(fleet[0].ssh_argv("nvidia-smi"))
        assert (r.returncode, r.stdout, r.stderr) == (9, "", "NVIDIA-SMI has failed\n")
    finally:
        for h in hosts:
            h.remove_tool("nvidia-smi")
    r = run(sshd_host.ssh_argv("command -v nvidia-smi"))
    assert r.returncode != 0  # nothing left behind for the next test


def _ssh_session(host) -> subprocess.Popen[str]:
    """An ssh session that prints one line, then stays open."""
    proc = subprocess.Popen(
        host.ssh_argv(shlex.join(["sh", "-c", "echo started; exec sleep 300"])),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == "started\n"
    return proc


def _client_port(pid: int, server_port: int) -> int:
    """Local port of the TCP connection that ssh client `pid` has to server_port."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        target = os.readlink(f"/proc/{pid}/fd/{fd}")
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            cols = line.split()
            if cols[9] in inodes and int(cols[2].rsplit(":", 1)[1], 16) == server_port:
                return int(cols[1].rsplit(":", 1)[1], 16)
    raise AssertionError(f"no connection to port {server_port} held by pid {pid}")


def test_killing_sshd_child_drops_the_session(sshd_factory, sshd_host) -> None:
    keep = _ssh_session(sshd_host)
    drop = _ssh_session(sshd_host)
    try:
        killed = sshd_factory.kill_connections(sshd_host, client_port=_client_port(drop.pid, sshd_host.port))
        assert killed
        assert drop.wait(timeout=15) == 255  # ssh: connection lost
        assert keep.poll() is None  # the other connection is untouched

        sshd_factory.kill_connections(sshd_host)  # all of them
        assert keep.wait(timeout=15) == 255
        # the listener survives: new logins work
        assert run(sshd_host.ssh_argv("true")).returncode == 0
    finally:
        for p in (keep, drop):
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
            p.communicate()
