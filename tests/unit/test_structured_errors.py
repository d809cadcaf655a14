"""No module reads back a message another module wrote (issue 8 step 2): doctor and pull_image decide by
class and field. Each test rewords the message it depends on and shows that nothing changes."""

from __future__ import annotations

import pytest

from taoremote import docker_launch, doctor, nvidia_smi, preflight
from taoremote.config import MountsConfig
from taoremote.cuda_table import image_cuda_from_env
from taoremote.errors import SKIP_HINT, DaemonUnreachable, ImageUnavailable, PreflightError
from taoremote.nvidia_smi import Gpu, HostGpuFacts
from tests.unit.captures import PROBE_HEAD, PROBE_TAIL, swap_section
from tests.unit.fakes import FakeExecutor, Prefix, run, run_visible

IMAGE = "nvcr.io/nvidia/tao/tao-toolkit:6.26.3-pyt"
DAEMON_DOWN = (
    "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?"
)
ANY_SH = Prefix(("sh",))


def _doctor(probe: str, images_env: str = "") -> list[doctor.Check]:
    ex = FakeExecutor(run(ANY_SH, stdout=probe), run(ANY_SH, stdout=images_env), host="gpu1", ordered=True)
    return doctor.check_host(ex, [IMAGE], MountsConfig(path=None))


def _reworded_failures(monkeypatch: pytest.MonkeyPatch) -> None:
    """nvidia-smi's known failure, said in words that hold every separator a parser could split on."""
    monkeypatch.setattr(
        nvidia_smi,
        "_FAILURES",
        ((r"No devices were found", 6, "host gpu1: no GPU - none at all; really", "fix it - now; please"),),
    )


@pytest.mark.parametrize("reworded", [False, True])
def test_doctor_shows_the_driver_errors_problem_and_fix_whatever_their_words(
    reworded: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if reworded:
        _reworded_failures(monkeypatch)
        problem, fix = "host gpu1: no GPU - none at all; really", "fix it - now; please"
    else:
        problem, fix = "the NVIDIA driver sees no GPU (nvidia-smi: No devices were found)", None
    smi = "No devices were found\n@@taoremote:end nvidia-smi rc=6@@\n"
    probe = PROBE_HEAD + smi + PROBE_TAIL.split("@@taoremote:end nvidia-smi rc=0@@\n", 1)[1]
    driver = next(c for c in _doctor(probe) if c.check == "NVIDIA driver")
    assert (driver.status, driver.detail) == ("FAIL", problem)
    assert driver.fix == (fix or "install or repair the NVIDIA driver")
    assert SKIP_HINT not in driver.detail + driver.fix  # doctor is no launch: nothing to skip


def test_doctor_shows_the_verdicts_finding_and_fix_whatever_their_words(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    old = HostGpuFacts("550.54.15", "12.4", (Gpu(0, "NVIDIA H100", "GPU-1", 0, 1, 0, "9.0", "nvidia"),))
    env = {"CUDA_VERSION": "12.8.0.038", "NVIDIA_REQUIRE_CUDA": "cuda>=9.0"}
    verdict = preflight.check_cuda_compat("gpu1", old, image_cuda_from_env(IMAGE, env))
    assert not verdict.ok and verdict.fix
    reworded = preflight.Verdict(
        False, "host gpu1: too old - sorry; really", (), "do X - or Y; --no-preflight", "gpu1"
    )
    for given in (verdict, reworded):
        monkeypatch.setattr(preflight, "check_cuda_compat", lambda *_a, v=given, **_k: v)
        images_env = f'{IMAGE}\t["CUDA_VERSION=12.8.0.038"]\n'
        image = next(
            c for c in _doctor(PROBE_HEAD + _smi_r535() + PROBE_TAIL, images_env) if c.check == IMAGE
        )
        assert (image.status, image.detail, image.fix) == ("FAIL", given.finding, given.fix)


def _smi_r535() -> str:
    from tests.unit.captures import smi

    return smi("default-r535-single-t4.txt")


def test_doctor_shows_the_docker_errors_problem_and_fix() -> None:
    probe = swap_section(
        PROBE_HEAD + _smi_r535() + PROBE_TAIL,
        "runtimes",
        DAEMON_DOWN + "\n",
        "@@taoremote:end runtimes rc=1@@",
    )
    docker = next(c for c in _doctor_no_images(probe) if c.check == "docker")
    assert docker.status == "FAIL"
    assert docker.detail == f"the Docker daemon is not running or not reachable ({DAEMON_DOWN})"
    assert docker.fix == "start dockerd, or check DOCKER_HOST"


def _doctor_no_images(probe: str) -> list[doctor.Check]:
    ex = FakeExecutor(run(ANY_SH, stdout=probe), host="gpu1")
    return doctor.check_host(ex, [IMAGE], MountsConfig(path=None))


@pytest.mark.parametrize("reworded", [False, True])
def test_a_pull_that_cannot_reach_docker_says_so_whatever_the_words(
    reworded: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if reworded:  # the words pull_image once looked for are gone: the class still decides
        monkeypatch.setattr(
            "taoremote.docker_launch.parse_docker_error",
            lambda result, image=None, **_: DaemonUnreachable("dockerd is asleep", host=result.host),
        )
    ex = FakeExecutor(run_visible(Prefix(("docker", "pull")), rc=1, stderr=DAEMON_DOWN + "\n"), host="gpu1")
    with pytest.raises(DaemonUnreachable) as info:
        docker_launch.pull_image(ex, IMAGE)
    assert info.value.host == "gpu1"


def test_a_pull_the_registry_refuses_is_an_unavailable_image() -> None:
    refused = "Error response from daemon: pull access denied for x, repository does not exist\n"
    ex = FakeExecutor(run_visible(Prefix(("docker", "pull")), rc=1, stderr=refused))
    with pytest.raises(ImageUnavailable) as info:
        docker_launch.pull_image(ex, IMAGE)
    assert info.value.host is None
    assert info.value.problem.startswith(f"image {IMAGE} is missing and could not be pulled: ")


def test_a_preflight_refusal_raised_by_a_launch_is_the_verdicts_own_fields() -> None:
    old = HostGpuFacts("550.54.15", "12.4", ())
    env = {"CUDA_VERSION": "12.8.0.038", "NVIDIA_REQUIRE_CUDA": "cuda>=9.0"}
    verdict = preflight.check_cuda_compat("gpu1", old, image_cuda_from_env(IMAGE, env))
    error = verdict.error()
    assert isinstance(error, PreflightError)
    assert (error.host, error.problem, error.fix, error.skippable) == (
        "gpu1",
        verdict.finding,
        verdict.fix,
        True,
    )
    assert str(error) == verdict.message
