"""The one-round-trip host probe: its argv, and what its output says (a capture of the script run by dash)."""

from __future__ import annotations

import shlex

import pytest

from taoremote.errors import PreflightError, UsageError
from taoremote.nvidia_smi import QUERY_FIELDS
from taoremote.preflight import host_facts
from taoremote.probe import (
    LAUNCH_PROBE_SCRIPT,
    PROBE_SCRIPT,
    PathState,
    build_probe_argv,
    parse_image_env,
    parse_probe,
    parse_runtimes,
)
from tests.unit.captures import CAPTURED_PROBE, smi, swap_section

# --- docker output ------------------------------------------------------------------------------------------


def test_parse_image_env() -> None:
    text = '["PATH=/usr/local/bin:/usr/bin","CUDA_VERSION=12.8.0.038","NVIDIA_REQUIRE_CUDA=cuda>=9.0",'
    text += '"A=b=c","BARE"]\n'
    assert parse_image_env(text) == {
        "PATH": "/usr/local/bin:/usr/bin",
        "CUDA_VERSION": "12.8.0.038",
        "NVIDIA_REQUIRE_CUDA": "cuda>=9.0",
        "A": "b=c",
    }
    assert parse_image_env("null\n") == {}
    assert parse_image_env("[]") == {}


@pytest.mark.parametrize("text", ["Error response from daemon: No such image: x:1", '{"PATH": "/bin"}'])
def test_parse_image_env_rejects_non_lists(text: str) -> None:
    with pytest.raises(PreflightError):
        parse_image_env(text)


def test_parse_runtimes() -> None:
    text = '{"io.containerd.runc.v2":{"path":"runc"},"nvidia":{"path":"nvidia-container-runtime"},'
    text += '"runc":{"path":"runc"}}'
    assert parse_runtimes(text) == ("io.containerd.runc.v2", "nvidia", "runc")
    assert parse_runtimes("Cannot connect to the Docker daemon at unix:///var/run/docker.sock.") == ()


# --- the probe ----------------------------------------------------------------------------------------------


def test_probe_argv_passes_image_and_paths_as_separate_arguments() -> None:
    image, paths = "nvcr.io/nvidia/tao/tao-toolkit:5.5.0-pyt", ["~/data", "/srv/a b"]
    assert build_probe_argv(image, paths, runtime=True) == (
        "sh",
        "-c",
        PROBE_SCRIPT,
        "sh",
        "nvcr.io/nvidia/tao/tao-toolkit:5.5.0-pyt",
        "~/data",
        "/srv/a b",
    )


def test_probe_script_survives_a_login_shell() -> None:
    # one line, no history-expansion "!": csh and friends pass it through when SSH hands it to them
    for script in (PROBE_SCRIPT, LAUNCH_PROBE_SCRIPT):
        assert "\n" not in script and "!" not in script
    argv = build_probe_argv("img", ["it's", "$HOME"])
    assert shlex.split(shlex.join(argv)) == list(argv)


def test_probe_refuses_a_path_with_a_newline() -> None:
    with pytest.raises(UsageError):
        build_probe_argv("img", ["/srv/a\nb"])


def test_parse_probe_sections() -> None:
    probe = parse_probe(CAPTURED_PROBE)
    assert probe.smi_rc == 0 and probe.smi_text == smi("default-r535-single-t4.txt").rstrip("\n")
    assert probe.query_rc == 0 and probe.query_fields == QUERY_FIELDS
    assert probe.query_text.splitlines()[1] == "1, NVIDIA H100 80GB HBM3, GPU-bbbb, 0, 81559, 0, 9.0"
    assert probe.image_rc == 0
    assert probe.image_env == {
        "PATH": "/usr/bin",
        "CUDA_VERSION": "12.8.0.038",
        "NVIDIA_REQUIRE_CUDA": "cuda>=9.0",
        "X": "a=b",
    }
    assert probe.runtimes == ("io.containerd.runc.v2", "nvidia", "runc")
    assert probe.hook_path is None
    assert probe.host_disable_require is False
    assert probe.paths == {
        "~/data": PathState("~/data", "/tmp/work/home/data", True, True, True),
        "~/empty": PathState("~/empty", "/tmp/work/home/empty", True, True, False),
        "/srv/missing": PathState("/srv/missing", "/srv/missing", False, False, False),
    }


def test_probe_without_nvidia_smi_or_docker() -> None:
    # dash's words when neither is installed
    text = swap_section(
        CAPTURED_PROBE, "nvidia-smi", "sh: 1: nvidia-smi: not found\n", "@@taoremote:end nvidia-smi rc=127@@"
    )
    text = swap_section(text, "image", "sh: 1: docker: not found\n", "@@taoremote:end image rc=127@@")
    probe = parse_probe(text)
    assert (probe.smi_rc, probe.image_rc, probe.image_env) == (127, 127, None)
    with pytest.raises(PreflightError, match=r"^host gpu1: nvidia-smi was not found"):
        host_facts(probe, host="gpu1")


def test_probe_reads_missing_image_hook_and_host_wide_disable_require() -> None:
    text = swap_section(
        CAPTURED_PROBE,
        "image",
        "Error response from daemon: No such image: x:1\n",
        "@@taoremote:end image rc=1@@",
    )
    text = swap_section(
        text, "hook", "/usr/bin/nvidia-container-runtime-hook\n", "@@taoremote:end hook rc=0@@"
    )
    text = swap_section(
        text, "runtime-config", "disable-require = true\n", "@@taoremote:end runtime-config rc=0@@"
    )
    probe = parse_probe(text)
    assert probe.image_env is None and probe.image_text.startswith("Error response from daemon")
    assert probe.hook_path == "/usr/bin/nvidia-container-runtime-hook"
    assert probe.host_disable_require is True
    text = swap_section(
        text, "runtime-config", "#disable-require = true\n", "@@taoremote:end runtime-config rc=0@@"
    )
    assert parse_probe(text).host_disable_require is False


@pytest.mark.parametrize(
    "cut",
    [
        CAPTURED_PROBE.replace("@@taoremote:end-of-probe@@\n", ""),  # the link dropped
        CAPTURED_PROBE[: CAPTURED_PROBE.index("@@taoremote:end nvidia-smi")],
        "",
        "bash: sh: command not found\n",
    ],
)
def test_incomplete_probe_output_is_refused(cut: str) -> None:
    with pytest.raises(PreflightError, match="incomplete"):
        parse_probe(cut, host="gpu1")
