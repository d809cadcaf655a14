"""jobs.py's pure parts over real docker output: `docker ps` rows, docker's error texts, job matching."""

from __future__ import annotations

from pathlib import Path

import pytest

from taoremote.errors import DockerError, PreflightError
from taoremote.hosts import Completed
from taoremote.jobs import Job, _exit_code, match_job, parse_docker_error, parse_ps

DATA = Path(__file__).resolve().parents[1] / "data" / "docker"
IMAGE = "taoremote.test/nvidia/tao/tao-toolkit:5.0.0-tf1.15.5"
PS_JOBS = (DATA / "ps-jobs.jsonl").read_text()


def _capture(name: str) -> str:
    return (DATA / name).read_text()


def _failed(stderr: str, *, host: str = "local", returncode: int = 125, stdout: str = "") -> Completed:
    return Completed(host, ("docker", "run"), returncode, stdout, stderr)


# ---------------------------------------------------------------------------------------------- parse_ps


def test_parse_ps_reads_every_row_of_a_real_capture_in_docker_order() -> None:
    jobs = parse_ps("local", PS_JOBS)
    assert [j.job_id for j in jobs] == ["7b8a9f0e", "3f4e5d6c", "9c0d1e2f", "5e6f7a8b", "a1b2c3d4"]


def test_parse_ps_running_job_has_all_fields_and_no_exit_code() -> None:
    job = parse_ps("local", PS_JOBS)[4]
    assert job == Job(
        host="local",
        job_id="a1b2c3d4",
        name="taoremote-detectnet_v2-a1b2c3d4",
        container_id="40436aed562e95a1b8666016c478393e5574c041eb7418efacb7b5b7ec270478",
        task="detectnet_v2",
        command="detectnet_v2 train -e /workspace/specs/train.txt -r /workspace/results",
        image=IMAGE,
        state="running",
        status="Up 7 seconds",
        exit_code=None,
        created="2026-11-25 08:14:19 +0000 UTC",
        gpus="all",
    )


def test_parse_ps_exited_job_carries_its_exit_code() -> None:
    job = parse_ps("local", PS_JOBS)[2]
    assert (job.name, job.state, job.status, job.exit_code) == (
        "taoremote-yolo_v4-9c0d1e2f",
        "exited",
        "Exited (3) 7 seconds ago",
        3,
    )
    assert job.command == "yolo_v4 run sh -c 'exit 3'"


def test_parse_ps_job_stopped_under_init_exits_143() -> None:
    job = parse_ps("local", PS_JOBS)[0]
    assert (job.state, job.exit_code) == ("exited", 143)


def test_parse_ps_created_but_never_started_job_has_no_exit_code() -> None:
    job = parse_ps("local", PS_JOBS)[1]
    assert (job.state, job.status, job.exit_code, job.gpus) == ("created", "Created", None, "1")


def test_parse_ps_keeps_commas_and_quotes_in_the_command_label_intact() -> None:
    job = parse_ps("local", PS_JOBS)[3]
    assert job.command == (
        "classification_tf1 evaluate -e '/workspace/specs/eval, final.txt' --note 'it'\"'\"'s \"best\", 1,2'"
    )


def test_parse_ps_keeps_a_gpu_device_list_label_with_commas() -> None:
    assert parse_ps("local", PS_JOBS)[3].gpus == "device=0,2"


def test_parse_ps_stamps_every_job_with_the_host_it_was_listed_on() -> None:
    assert {j.host for j in parse_ps("gpu1", PS_JOBS)} == {"gpu1"}


def test_parse_ps_of_empty_output_is_no_jobs() -> None:
    assert parse_ps("local", "") == []
    assert parse_ps("local", "\n\n") == []


def test_parse_ps_missing_labels_become_empty_strings() -> None:
    # a container with the job label but none of the others: the template prints "" for each
    line = (
        '{"id":"abc123","name":"taoremote-x-1","image":"img:1","state":"running","status":"Up 1 second",'
        '"created":"2026-11-25 08:14:19 +0000 UTC","job":"1","task":"","command":"","gpus":"","started":""}'
    )
    (job,) = parse_ps("local", line)
    assert (job.task, job.command, job.gpus) == ("", "", "")


# ---------------------------------------------------------------------------------------------- _exit_code


@pytest.mark.parametrize(
    ("status", "code"),
    [
        ("Exited (0) 5 minutes ago", 0),
        ("Exited (3) 7 seconds ago", 3),
        ("Exited (143) 1 second ago", 143),
        ("Exited (255) About an hour ago", 255),
    ],
)
def test_exit_code_is_read_from_an_exited_status(status: str, code: int) -> None:
    assert _exit_code(status) == code


@pytest.mark.parametrize(
    "status",
    ["Up 7 seconds", "Up 3 minutes (Paused)", "Created", "Restarting (1) 2 seconds ago", "Dead", ""],
)
def test_exit_code_is_none_unless_the_container_exited(status: str) -> None:
    assert _exit_code(status) is None


# ---------------------------------------------------------------------------------------------- match_job


JOBS = parse_ps("local", PS_JOBS)


def test_job_matches_by_its_job_id() -> None:
    assert match_job(JOBS, "5e6f7a8b") is JOBS[3]


def test_job_matches_by_its_container_name() -> None:
    assert match_job(JOBS, "taoremote-yolo_v4-9c0d1e2f") is JOBS[2]


def test_job_matches_by_full_container_id() -> None:
    full = "40436aed562e95a1b8666016c478393e5574c041eb7418efacb7b5b7ec270478"
    assert match_job(JOBS, full) is JOBS[4]


def test_job_matches_by_a_12_char_container_id_prefix_as_docker_ps_shows_it() -> None:
    assert match_job(JOBS, "735b44d2e3a5") is JOBS[1]


def test_job_matches_by_a_4_char_container_id_prefix() -> None:
    assert match_job(JOBS, "758c") is JOBS[3]


def test_unknown_id_prefix_shorter_than_4_chars_does_not_match() -> None:
    assert match_job(JOBS, "758") is None
    assert match_job(JOBS, "7") is None


def test_prefix_of_a_job_id_or_name_does_not_match() -> None:
    assert match_job(JOBS, "5e6f7a") is None
    assert match_job(JOBS, "taoremote-yolo") is None


def test_unknown_id_does_not_match() -> None:
    assert match_job(JOBS, "deadbeef") is None
    assert match_job([], "5e6f7a8b") is None


def _job(job_id: str, container_id: str) -> Job:
    return Job(
        "local",
        job_id,
        f"taoremote-t-{job_id}",
        container_id,
        "t",
        "",
        IMAGE,
        "running",
        "Up",
        None,
        "",
        "all",
    )


def test_container_id_prefix_shared_by_two_jobs_matches_neither() -> None:
    first = _job("11111111", "abcd1111" + "0" * 56)
    second = _job("22222222", "abcd2222" + "0" * 56)
    assert match_job([first, second], "abcd") is None


# ---------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("capture", "host", "message"),
    [
        (
            "daemon-down.txt",
            "local",
            "the Docker daemon on this machine is not running or not reachable (Cannot connect to the "
            "Docker daemon at unix:///nonexistent. Is the docker daemon running?)",
        ),
        (
            "daemon-down.txt",
            "gpu1",
            "the Docker daemon on host gpu1 is not running or not reachable (Cannot connect to the "
            "Docker daemon at unix:///nonexistent. Is the docker daemon running?)",
        ),
        (
            "ps-permission-denied.txt",
            "local",
            "no permission to use Docker on this machine: add the user to the 'docker' group",
        ),
        (
            "run-gpus-no-device-driver.txt",
            "local",
            "Docker on this machine has no NVIDIA GPU support (could not select device driver): install "
            "the NVIDIA Container Toolkit and restart dockerd, or pass --gpus none",
        ),
        (
            "run-detached-gpus-no-device-driver.txt",
            "gpu1",
            "Docker on host gpu1 has no NVIDIA GPU support (could not select device driver): install "
            "the NVIDIA Container Toolkit and restart dockerd, or pass --gpus none",
        ),
        (
            "run-image-missing.txt",
            "local",
            "image taoremote.test/absent:1 is not available on this machine: Error response from daemon: "
            'Get "https://taoremote.test/v2/": dial tcp: lookup taoremote.test on 10.255.255.53:53: '
            "no such host",
        ),
        (
            "image-inspect-missing.txt",
            "gpu1",
            "image taoremote.test/absent:1 is not available on host gpu1: Error response from daemon: "
            "no such image: taoremote.test/absent:1: No such image: taoremote.test/absent:1",
        ),
        (
            "run-port-allocated.txt",
            "local",
            "a port in DockerOptions.ports is already in use on this machine: Error response from daemon: "
            "driver failed programming external "
            "connectivity on endpoint taoremote-port-b "
            "(569edee8c0b04272774be685b72bb667aae45f4901573a80244567f79b3ea1a7): Bind for 0.0.0.0:18888 "
            "failed: port is already allocated",
        ),
        (
            "run-name-conflict.txt",
            "local",
            "a container with this name already exists on this machine: Error response from daemon: "
            "Conflict. The container name "
            '"/taoremote-port-a" is already in use by container '
            '"1ee5b26656e545d0f5735afb1c599fd6e255f15700310c4fa2409584ca92bf67". You have to remove (or '
            "rename) that container to be able to reuse that name.",
        ),
        (
            "stop-unknown-container.txt",
            "local",
            "docker failed on this machine: Error response from daemon: No such container: nope",
        ),
        (
            "run-unknown-runtime-nvidia.txt",
            "gpu1",
            "docker failed on host gpu1: Error response from daemon: Unknown runtime specified nvidia",
        ),
        ("bash-docker-not-found.txt", "gpu1", "docker is not installed on host gpu1"),
    ],
)
def test_real_docker_error_becomes_one_line_docker_error_exit_69(
    capture: str, host: str, message: str
) -> None:
    error = parse_docker_error(_failed(_capture(capture), host=host), image="taoremote.test/absent:1")
    assert type(error) is DockerError
    assert error.exit_code == 69
    assert str(error) == message
    assert "\n" not in str(error)


def test_driver_too_old_requirement_error_is_a_preflight_error_exit_69() -> None:
    text = _capture("run-nvidia-requirement-error-reference.txt")
    error = parse_docker_error(_failed(text, host="gpu1"), image="nvcr.io/nvidia/tao/tao-toolkit:6.26.3-pyt")
    assert type(error) is PreflightError
    assert error.exit_code == 69
    assert str(error) == (
        "host gpu1: nvidia-container-cli: requirement error: unsatisfied condition: cuda>=12.8, please "
        "update your driver to a newer version, or use an earlier cuda container: unknown "
        "(the host driver is too old for this image)"
    )


def test_docker_run_help_hint_and_unable_to_find_image_lines_are_not_the_message() -> None:
    message = str(parse_docker_error(_failed(_capture("run-image-missing.txt")), image="x:1"))
    assert "Unable to find image" not in message
    assert "docker run --help" not in message
    assert "docker: " not in message


def test_image_error_without_an_image_name_still_says_which_host() -> None:
    error = parse_docker_error(_failed(_capture("image-inspect-missing.txt"), host="gpu1"))
    assert str(error).startswith("the image is not available on host gpu1: ")


def test_error_with_empty_output_names_the_exit_code() -> None:
    error = parse_docker_error(_failed("", returncode=125))
    assert type(error) is DockerError
    assert str(error) == "docker failed on this machine: exit code 125"


def test_error_text_only_on_stdout_is_used() -> None:
    error = parse_docker_error(_failed("", stdout="Error response from daemon: No such container: nope\n"))
    assert str(error) == "docker failed on this machine: Error response from daemon: No such container: nope"


def test_docker_missing_on_a_host_whose_login_shell_is_dash_says_docker_is_not_installed() -> None:
    error = parse_docker_error(_failed(_capture("sh-docker-not-found.txt"), host="gpu1", returncode=127))
    assert str(error) == "docker is not installed on host gpu1"
