"""The preflight through the real Docker engine: images with real CUDA_VERSION / NVIDIA_REQUIRE_CUDA,
nvidia-smi replaced by a script printing a real captured output of each era."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.conftest import SshHost
from tests.integration.taorun import (
    DATA,
    base_env,
    docker,
    mine,
    session_job_ids,
    taoremote,
    write_fake_nvidia_smi,
    write_mounts,
)

pytestmark = pytest.mark.usefixtures("test_images", "clean_jobs")
SMI = DATA / "nvidia-smi"
TF1 = "detectnet_v2"  # 5.0.0-tf1.15.5: CUDA_VERSION 12.0.1, NVIDIA_REQUIRE_CUDA cuda>=9.0
PYT = "dino"  # 6.26.3-pyt
H100 = "0, NVIDIA H100 80GB HBM3, GPU-a, 10, 81559, 0, 9.0\n"
T4 = "0, Tesla T4, GPU-b, 0, 15360, 0, 7.5\n"
RTX = "0, NVIDIA GeForce RTX 4090, GPU-c, 0, 24564, 0, 8.9\n"


def _host(tmp_path: Path, smi_file: str, query: str = H100, rc: int = 0, **extra: str) -> dict[str, str]:
    home = tmp_path / "home"
    (home / "ws" / "specs").mkdir(parents=True, exist_ok=True)
    (home / "ws" / "specs" / "train.txt").write_text("spec\n")
    bin_dir = tmp_path / "bin"
    write_fake_nvidia_smi(bin_dir, (SMI / smi_file).read_text(), query, rc=rc)
    mounts = write_mounts(
        tmp_path / "mounts.json", {"Mounts": [{"source": "~/ws", "destination": "/workspace/ws"}]}
    )
    return base_env(home, bin_dir, mounts, **extra)


def _no_job_created() -> bool:
    return session_job_ids() == ""


@pytest.mark.parametrize(
    "smi_file",
    [
        "header-r535.txt",
        "header-r550.txt",
        "header-r580.txt",
        "header-r610-kmd.txt",
        "default-r535-single-t4.txt",
    ],
)
def test_new_enough_driver_of_every_era_launches(tmp_path: Path, smi_file: str) -> None:
    result = taoremote([TF1, "train", "x"], _host(tmp_path, smi_file))
    assert result.returncode == 0, result.stderr
    assert "ARG<x>" in result.stdout


def test_old_driver_is_refused_before_anything_is_created(tmp_path: Path) -> None:
    result = taoremote([TF1, "train", "x"], _host(tmp_path, "header-r470.txt"))
    assert result.returncode == 69
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1, message
    for fragment in ("470.256.02", "CUDA 11.4", "5.0.0-tf1.15.5", "12.0", "upgrade the driver to >="):
        assert fragment in message
    assert _no_job_created()


def test_no_preflight_skips_the_check(tmp_path: Path) -> None:
    result = taoremote(["--no-preflight", TF1, "train", "x"], _host(tmp_path, "header-r470.txt"))
    assert result.returncode == 0, result.stderr


def test_image_cuda_newer_than_host_cuda_is_refused_though_require_says_cuda_9(tmp_path: Path) -> None:
    # the image's NVIDIA_REQUIRE_CUDA is NGC's cuda>=9.0; only CUDA_VERSION tells the truth
    env = docker(
        "image",
        "inspect",
        "--format",
        "{{json .Config.Env}}",
        "taoremote.test/nvidia/tao/tao-toolkit:6.26.3-pyt",
    )
    assert "NVIDIA_REQUIRE_CUDA=cuda>=9.0" in env.stdout
    result = taoremote([PYT, "train", "x"], _host(tmp_path, "header-r550.txt"))
    assert result.returncode == 69
    assert "CUDA 12.4" in result.stderr and "6.26.3-pyt" in result.stderr


def test_absent_image_is_refused_from_the_bundled_table_before_any_pull(tmp_path: Path) -> None:
    env = _host(tmp_path, "header-r550.txt", OVERRIDE_REGISTRY="absent.invalid")
    result = taoremote([PYT, "train", "x"], env)
    assert result.returncode == 69
    assert "absent.invalid/nvidia/tao/tao-toolkit:6.26.3-pyt" in result.stderr
    assert "pulling" not in result.stderr  # refused up front: no doomed multi-GB pull


def test_require_cuda_with_brand_clauses_passes_on_datacenter_forward_compat_with_note(
    tmp_path: Path,
) -> None:
    env = _host(tmp_path, "header-r535.txt", T4)
    result = taoremote(["--image", "taoremote.test/cuda:12.8-require", TF1, "train", "x"], env)
    assert result.returncode == 0, result.stderr
    assert "note:" in result.stderr and "forward" in result.stderr.lower()


def test_require_cuda_with_brand_clauses_refuses_a_geforce_on_the_same_driver(tmp_path: Path) -> None:
    env = _host(tmp_path, "header-r535.txt", RTX)
    result = taoremote(["--image", "taoremote.test/cuda:12.8-require", TF1, "train", "x"], env)
    assert result.returncode == 69
    assert "12.8" in result.stderr and _no_job_created()


def test_cuda_11_8_image_runs_on_a_12_2_driver(tmp_path: Path) -> None:
    result = taoremote(
        ["--image", "taoremote.test/cuda:11.8-require", TF1, "train", "x"], _host(tmp_path, "header-r535.txt")
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("smi_file", "rc", "expected"),
    [("failure-mismatch.txt", 18, "mismatch"), ("failure-driver-not-loaded.txt", 9, "driver")],
)
def test_nvidia_smi_failure_modes_are_one_line_exit_69(
    tmp_path: Path, smi_file: str, rc: int, expected: str
) -> None:
    result = taoremote([TF1, "train", "x"], _host(tmp_path, smi_file, rc=rc))
    assert result.returncode == 69
    assert expected in result.stderr.lower()
    assert "Traceback" not in result.stderr and _no_job_created()


def test_no_nvidia_smi_at_all_is_exit_69_and_gpus_none_needs_no_driver(tmp_path: Path) -> None:
    env = _host(tmp_path, "header-r580.txt")
    (tmp_path / "bin" / "nvidia-smi").unlink()
    result = taoremote([TF1, "train", "x"], env)
    assert result.returncode == 69 and "nvidia-smi" in result.stderr
    assert taoremote(["--gpus", "none", TF1, "train", "x"], env).returncode == 0


def test_gpus_auto_picks_the_least_loaded_and_shows_them(tmp_path: Path) -> None:
    query = (
        "0, NVIDIA H100 80GB HBM3, GPU-0, 70000, 81559, 95, 9.0\n"
        "1, NVIDIA H100 80GB HBM3, GPU-1, 10, 81559, 0, 9.0\n"
        "2, NVIDIA H100 80GB HBM3, GPU-2, 40000, 81559, 50, 9.0\n"
        "3, NVIDIA H100 80GB HBM3, GPU-3, 12, 81559, 3, 9.0\n"
    )
    env = _host(tmp_path, "header-r580.txt", query)
    dry = taoremote(["--dry-run", "--gpus", "auto:2", TF1, "train", "x"], env)
    assert dry.returncode == 0, dry.stderr
    assert "--gpus '\"device=1,3\"'" in dry.stdout
    job = taoremote(["-d", "--gpus", "auto:2", TF1, "run", "sleep", "30"], env).stdout.strip()
    rows = mine(json.loads(taoremote(["list", "--format", "json"], env).stdout))
    assert [(r["job"], r["gpus"]) for r in rows] == [(job, "device=1,3")]
    too_many = taoremote(["--dry-run", "--gpus", "auto:5", TF1, "train", "x"], env)
    assert too_many.returncode == 69


# ---------------------------------------------------------------------------------------------- paths


def test_missing_spec_file_names_both_paths(tmp_path: Path) -> None:
    env = _host(tmp_path, "header-r580.txt")
    result = taoremote([TF1, "train", "-e", "/workspace/ws/specs/nope.txt"], env)
    assert result.returncode == 69
    assert "/workspace/ws/specs/nope.txt" in result.stderr
    assert str(tmp_path / "home" / "ws" / "specs" / "nope.txt") in result.stderr


def test_host_path_given_for_spec_gets_the_container_path_suggested(tmp_path: Path) -> None:
    env = _host(tmp_path, "header-r580.txt")
    host_spec = tmp_path / "home" / "ws" / "specs" / "train.txt"
    result = taoremote([TF1, "train", "-e", str(host_spec)], env)
    assert result.returncode == 69
    assert "in the container it is /workspace/ws/specs/train.txt" in result.stderr


def test_path_under_no_mount_is_a_warning_naming_the_mounts(tmp_path: Path) -> None:
    env = _host(tmp_path, "header-r580.txt")
    result = taoremote([TF1, "train", "-e", "/workspace/ws/specs/train.txt", "-r", "/results/run1"], env)
    assert result.returncode == 0, result.stderr
    assert (
        "warning: /results/run1 is under no mount" in result.stderr
        and "~/ws -> /workspace/ws" in result.stderr
    )


def test_non_empty_results_dir_warns_and_clean_results_empties_it(tmp_path: Path) -> None:
    env = _host(tmp_path, "header-r580.txt")
    results = tmp_path / "home" / "ws" / "results"
    results.mkdir()
    (results / "old.tlt").write_text("x")
    args = [TF1, "train", "-e", "/workspace/ws/specs/train.txt", "-r", "/workspace/ws/results"]
    warned = taoremote(args, env)
    assert warned.returncode == 0 and "results directory /workspace/ws/results" in warned.stderr
    refused = taoremote(["--clean-results", *args], env)
    assert refused.returncode == 2 and "add --yes" in refused.stderr
    assert (results / "old.tlt").exists()
    cleaned = taoremote(["--clean-results", "--yes", *args], env)
    assert cleaned.returncode == 0, cleaned.stderr
    # emptied before the launch; the rig's train then writes its own status.json and weights there
    assert results.is_dir() and not (results / "old.tlt").exists()


def test_wandb_with_user_is_warned(tmp_path: Path) -> None:
    env = _host(tmp_path, "header-r580.txt")
    doc = {
        "Mounts": [],
        "Envs": [{"variable": "WANDB_API_KEY", "value": "k"}],
        "DockerOptions": {"user": "1000:1000"},
    }
    mounts = write_mounts(tmp_path / "wandb.json", doc)
    result = taoremote(["--dry-run", TF1, "train"], {**env, "LAUNCHER_MOUNTS": str(mounts)})
    assert "W&B" in result.stdout and "root" in result.stdout


# ---------------------------------------------------------------------------------------------- remote


def test_remote_old_driver_is_refused_naming_the_host(tmp_path: Path, sshd_host: SshHost) -> None:
    write_fake_nvidia_smi(sshd_host.bin_dir, (SMI / "header-r470.txt").read_text())
    env = base_env(tmp_path)
    result = taoremote(
        ["--ssh-config", str(sshd_host.ssh_config_path), "--host", sshd_host.name, TF1, "train"], env
    )
    assert result.returncode == 69
    assert f"host {sshd_host.name}" in result.stderr and "470.256.02" in result.stderr
    assert _no_job_created()


def test_doctor_reports_every_check_and_exits_by_verdict(tmp_path: Path, sshd_host: SshHost) -> None:
    write_fake_nvidia_smi(sshd_host.bin_dir, (SMI / "header-r580.txt").read_text())
    env = base_env(tmp_path)
    cfg = ["--ssh-config", str(sshd_host.ssh_config_path), "--host", sshd_host.name]
    result = taoremote(
        [
            *cfg,
            "--image",
            "taoremote.test/nvidia/tao/tao-toolkit:5.0.0-tf1.15.5",
            "doctor",
            "--format",
            "json",
        ],
        env,
    )
    rows = json.loads(result.stdout)
    assert {r["check"] for r in rows} >= {"docker", "NVIDIA driver", "NVIDIA container runtime"}
    assert all(r["status"] == "ok" for r in rows), rows
    assert result.returncode == 0
    write_fake_nvidia_smi(sshd_host.bin_dir, (SMI / "header-r470.txt").read_text())
    old = taoremote([*cfg, "--image", "taoremote.test/nvidia/tao/tao-toolkit:5.0.0-tf1.15.5", "doctor"], env)
    assert old.returncode == 1
    assert "FAIL" in old.stdout and "upgrade the driver" in old.stdout


def test_doctor_fans_out_to_every_host_and_reports_ports_in_use(tmp_path: Path, fleet: list[SshHost]) -> None:
    import socket

    for host in fleet[:2]:
        write_fake_nvidia_smi(host.bin_dir, (SMI / "header-r580.txt").read_text())
    listener = socket.socket()
    listener.bind(("0.0.0.0", 0))
    listener.listen(1)
    busy = listener.getsockname()[1]
    mounts = write_mounts(tmp_path / "ports.json", {"DockerOptions": {"ports": {"8888": busy}}})
    env = base_env(tmp_path, mounts=mounts)
    cfg = ["--ssh-config", str(fleet[0].ssh_config_path), "--host", "node1", "--host", "node2"]
    image = "taoremote.test/nvidia/tao/tao-toolkit:5.0.0-tf1.15.5"
    try:
        result = taoremote([*cfg, "--image", image, "doctor", "--format", "json"], env)
    finally:
        listener.close()
    rows = json.loads(result.stdout)
    assert {r["host"] for r in rows} == {"node1", "node2"}
    ports = [r for r in rows if r["check"] == f"port {busy}"]
    assert [(r["host"], r["status"]) for r in ports] == [("node1", "warn"), ("node2", "warn")]
    assert result.returncode == 0, result.stderr  # a busy port warns; it is not a required check
