"""The launch probe asks the host only what a launch reads: no `docker info`, no hook lookup (doctor's)."""

from __future__ import annotations

import re

import pytest

from taoremote.errors import PreflightError
from taoremote.probe import LAUNCH_PROBE_SCRIPT, PROBE_SCRIPT, build_probe_argv, parse_probe
from tests.unit.captures import CAPTURED_PROBE


def _without_section(text: str, name: str) -> str:
    return re.sub(rf"@@taoremote:begin {name}@@\n.*?@@taoremote:end {name} rc=\d+@@\n", "", text, flags=re.S)


def test_a_launch_probes_no_docker_runtimes_and_no_hook() -> None:
    assert build_probe_argv("img", ["/data"])[2] == LAUNCH_PROBE_SCRIPT
    assert "docker info" not in LAUNCH_PROBE_SCRIPT and "docker info" in PROBE_SCRIPT
    assert "nvidia-container-runtime-hook" not in LAUNCH_PROBE_SCRIPT
    # what a launch does read: both nvidia-smi calls, the image env, the host-wide disable-require
    for needed in ("--query-gpu", "docker image inspect", "disable-require", "end-of-probe"):
        assert needed in LAUNCH_PROBE_SCRIPT


def test_launch_probe_output_parses_without_runtime_sections() -> None:
    text = _without_section(_without_section(CAPTURED_PROBE, "runtimes"), "hook")
    assert "begin runtimes" not in text and "begin hook" not in text
    probe = parse_probe(text, host="gpu1")
    assert probe.image_env is not None and probe.smi_rc == 0 and probe.runtimes == ()
    with pytest.raises(PreflightError, match="incomplete"):
        parse_probe(text, host="gpu1", runtime=True)  # doctor needs them
