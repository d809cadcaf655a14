"""A failed docker call's text, read into the error class that says what went wrong. PURE.

docker's messages are the one text we must read (its exit code is 125 for nearly everything); this is
the one module that reads them. What comes out is typed (errors.py), so callers tell a daemon that is
down from a missing image by class, and never read our own messages back. Captures: tests/data/docker/.
"""

from __future__ import annotations

import re

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
)
from taoremote.executor import Completed

INSTALL_DOCKER = "install Docker Engine (docs.docker.com/engine/install)"
_IMAGE_MISSING = ("no such image", "unable to find image", "pull access denied", "manifest unknown")


def parse_docker_error(
    result: Completed,
    image: str | None = None,
    *,
    failed: str | None = None,
    otherwise: type[DockerError] = DockerError,
) -> DockerError | PreflightError:
    """The error for a failed docker CLI call, with the fix where we know it. A cause we do not know
    becomes `otherwise`, its problem led by `failed` (what failed) and docker's own last line."""
    text = result.stderr.strip() or result.stdout.strip() or f"exit code {result.returncode}"
    host = result.host
    said = first_line(text)
    lowered = text.lower()
    if "port is already allocated" in lowered or "address already in use" in lowered:
        return PortInUse(
            f"a port in DockerOptions.ports is already in use: {said}",
            host=host,
            fix="stop what listens there or change DockerOptions.ports",
        )
    if "is already in use by container" in lowered:
        return NameInUse(f"a container with this name already exists: {said}", host=host)
    if "cannot connect to the docker daemon" in lowered or "is the docker daemon running" in lowered:
        return DaemonUnreachable(
            f"the Docker daemon is not running or not reachable ({said})",
            host=host,
            fix="start dockerd, or check DOCKER_HOST",
        )
    if "permission denied" in lowered and "docker" in lowered and "sock" in lowered:
        return DockerPermission(
            "no permission to use Docker", host=host, fix="add the user to the 'docker' group"
        )
    if "could not select device driver" in lowered:
        return NoGpuRuntime(
            "Docker has no NVIDIA GPU support (could not select device driver)",
            host=host,
            fix="install the NVIDIA Container Toolkit and restart dockerd, or pass --gpus none",
        )
    if "requirement error" in lowered and "nvidia-container-cli" in lowered:
        return DriverRequirement(f"{said} (the host driver is too old for this image)", host=host)
    if any(s in lowered for s in _IMAGE_MISSING):
        what = f"image {image}" if image else "the image"
        return ImageUnavailable(f"{what} is not available: {said}", host=host)
    if re.search(r"docker: (command )?not found|docker: no such file", lowered):
        return docker_missing(host)
    return otherwise(f"{failed or 'docker failed'}: {said}", host=host)


def docker_missing(host: str | None) -> DockerMissing:
    return DockerMissing("docker is not installed (docker: command not found)", host=host, fix=INSTALL_DOCKER)


def is_no_such_container(text: str) -> bool:
    """docker's answer when the container is gone already (a concurrent stop or prune was first)."""
    return "no such container" in text.lower()


def first_line(text: str) -> str:
    """docker's error itself: docker ends with "See 'docker run --help'." and may start with
    "Unable to find image ...", so it is the last line that is neither."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    meaningful = [ln for ln in lines if not ln.startswith(("See '", "Run '"))] or lines or [text]
    return meaningful[-1].removeprefix("docker: ")


def checked(
    result: Completed, image: str | None = None, *, failed: str | None = None, gone_is_fine: bool = False
) -> Completed:
    """RESULT if the docker call succeeded, else the error its text says (parse_docker_error): the one
    place a failed docker call becomes an error. gone_is_fine: a container that is gone already (a
    concurrent stop or prune was first) is no failure."""
    if result.returncode == 0 or (gone_is_fine and is_no_such_container(result.stderr)):
        return result
    raise parse_docker_error(result, image, failed=failed)
