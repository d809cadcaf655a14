"""docker_errors.py over docker's real error texts (tests/data/docker/): each becomes the class that says
what went wrong, with host, problem and fix as fields, rendered as one line (issue 8 step 2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from taoremote.docker_errors import first_line, is_no_such_container, parse_docker_error
from taoremote.errors import (
    DaemonUnreachable,
    DockerError,
    DockerMissing,
    DockerPermission,
    DriverRequirement,
    ImageUnavailable,
    NameInUse,
    NoGpuRuntime,
    PortInUse,
    PreflightError,
    StartFailed,
    TaoRemoteError,
)
from taoremote.executor import Completed

DATA = Path(__file__).resolve().parents[1] / "data" / "docker"
DAEMON_DOWN = "Cannot connect to the Docker daemon at unix:///nonexistent. Is the docker daemon running?"
DAEMON_FIX = "start dockerd, or check DOCKER_HOST"
NO_GPU_FIX = "install the NVIDIA Container Toolkit and restart dockerd, or pass --gpus none"


def _capture(name: str) -> str:
    return (DATA / name).read_text()


def _failed(stderr: str, *, host: str = "local", returncode: int = 125, stdout: str = "") -> Completed:
    return Completed(host, ("docker", "run"), returncode, stdout, stderr)


@pytest.mark.parametrize(
    ("capture", "host", "kind", "message"),
    [
        (
            "daemon-down.txt",
            "local",
            DaemonUnreachable,
            f"the Docker daemon is not running or not reachable ({DAEMON_DOWN}); {DAEMON_FIX}",
        ),
        (
            "daemon-down.txt",
            "gpu1",
            DaemonUnreachable,
            f"host gpu1: the Docker daemon is not running or not reachable ({DAEMON_DOWN}); {DAEMON_FIX}",
        ),
        (
            "ps-permission-denied.txt",
            "local",
            DockerPermission,
            "no permission to use Docker; add the user to the 'docker' group",
        ),
        (
            "run-gpus-no-device-driver.txt",
            "local",
            NoGpuRuntime,
            f"Docker has no NVIDIA GPU support (could not select device driver); {NO_GPU_FIX}",
        ),
        (
            "run-detached-gpus-no-device-driver.txt",
            "gpu1",
            NoGpuRuntime,
            f"host gpu1: Docker has no NVIDIA GPU support (could not select device driver); {NO_GPU_FIX}",
        ),
        (
            "run-image-missing.txt",
            "local",
            ImageUnavailable,
            "image taoremote.test/absent:1 is not available: Error response from daemon: "
            'Get "https://taoremote.test/v2/": dial tcp: lookup taoremote.test on 10.255.255.53:53: '
            "no such host",
        ),
        (
            "image-inspect-missing.txt",
            "gpu1",
            ImageUnavailable,
            "host gpu1: image taoremote.test/absent:1 is not available: Error response from daemon: "
            "no such image: taoremote.test/absent:1: No such image: taoremote.test/absent:1",
        ),
        (
            "run-port-allocated.txt",
            "local",
            PortInUse,
            "a port in DockerOptions.ports is already in use: Error response from daemon: "
            "driver failed programming external "
            "connectivity on endpoint taoremote-port-b "
            "(569edee8c0b04272774be685b72bb667aae45f4901573a80244567f79b3ea1a7): Bind for 0.0.0.0:18888 "
            "failed: port is already allocated; stop what listens there or change DockerOptions.ports",
        ),
        (
            "run-name-conflict.txt",
            "local",
            NameInUse,
            "a container with this name already exists: Error response from daemon: "
            "Conflict. The container name "
            '"/taoremote-port-a" is already in use by container '
            '"1ee5b26656e545d0f5735afb1c599fd6e255f15700310c4fa2409584ca92bf67". You have to remove (or '
            "rename) that container to be able to reuse that name.",
        ),
        (
            "stop-unknown-container.txt",
            "local",
            DockerError,
            "docker failed: Error response from daemon: No such container: nope",
        ),
        (
            "run-unknown-runtime-nvidia.txt",
            "gpu1",
            DockerError,
            "host gpu1: docker failed: Error response from daemon: Unknown runtime specified nvidia",
        ),
        (
            "bash-docker-not-found.txt",
            "gpu1",
            DockerMissing,
            "host gpu1: docker is not installed (docker: command not found); "
            "install Docker Engine (docs.docker.com/engine/install)",
        ),
    ],
)
def test_real_docker_error_becomes_its_class_and_one_line_exit_69(
    capture: str, host: str, kind: type[DockerError], message: str
) -> None:
    error = parse_docker_error(_failed(_capture(capture), host=host), image="taoremote.test/absent:1")
    assert type(error) is kind
    assert error.exit_code == 69
    assert error.host == (None if host == "local" else host)
    assert str(error) == message
    assert "\n" not in str(error)


def test_driver_too_old_requirement_error_is_a_preflight_error_exit_69() -> None:
    text = _capture("run-nvidia-requirement-error-reference.txt")
    error = parse_docker_error(_failed(text, host="gpu1"), image="nvcr.io/nvidia/tao/tao-toolkit:6.26.3-pyt")
    assert type(error) is DriverRequirement and isinstance(error, PreflightError)
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
    assert str(error).startswith("host gpu1: the image is not available: ")


def test_error_with_empty_output_names_the_exit_code() -> None:
    error = parse_docker_error(_failed("", returncode=125))
    assert type(error) is DockerError
    assert str(error) == "docker failed: exit code 125"


def test_error_text_only_on_stdout_is_used() -> None:
    error = parse_docker_error(_failed("", stdout="Error response from daemon: No such container: nope\n"))
    assert str(error) == "docker failed: Error response from daemon: No such container: nope"


def test_docker_missing_on_a_host_whose_login_shell_is_dash_says_docker_is_not_installed() -> None:
    error = parse_docker_error(_failed(_capture("sh-docker-not-found.txt"), host="gpu1", returncode=127))
    assert type(error) is DockerMissing
    assert error.problem == "docker is not installed (docker: command not found)"


def test_an_unknown_cause_takes_the_class_and_words_the_caller_gives() -> None:
    said = _failed("Error response from daemon: unable to find user x: no matching entries in passwd file")
    error = parse_docker_error(said, "img", failed="docker could not start img", otherwise=StartFailed)
    assert type(error) is StartFailed
    assert error.problem == (
        "docker could not start img: Error response from daemon: unable to find user x: no matching entries "
        "in passwd file"
    )
    # a cause docker explains keeps its own class and fix, whoever asks
    known = parse_docker_error(_failed(_capture("run-gpus-no-device-driver.txt")), otherwise=StartFailed)
    assert type(known) is NoGpuRuntime


def test_first_line_is_dockers_error_itself_and_gone_containers_are_recognised() -> None:
    assert (
        first_line("Unable to find image 'x:1' locally\ndocker: boom.\nSee 'docker run --help'.") == "boom."
    )
    assert is_no_such_container(_capture("stop-unknown-container.txt"))
    assert not is_no_such_container(_capture("daemon-down.txt"))


# ------------------------------------------------------------------------------------- the error fields


def test_fields_render_as_one_line_host_problem_fix() -> None:
    assert str(TaoRemoteError("it broke")) == "it broke"
    assert str(TaoRemoteError("it broke", host="gpu1")) == "host gpu1: it broke"
    assert str(TaoRemoteError("it broke", host="gpu1", fix="mend it")) == "host gpu1: it broke; mend it"
    # the executors' name for this machine is no host to show
    assert TaoRemoteError("it broke", host="local").host is None
    error = PreflightError("old driver", host="gpu1", fix="upgrade it", skippable=True)
    assert str(error) == "host gpu1: old driver; upgrade it; --no-preflight skips this check"
    assert (error.problem, error.fix) == ("old driver", "upgrade it")
