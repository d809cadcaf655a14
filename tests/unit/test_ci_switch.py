"""In CI a missing Docker engine or sshd must fail the run, never skip it."""

from __future__ import annotations

import pytest

from tests.conftest import running_in_ci


@pytest.mark.parametrize("value", ["true", "True", "1", "yes", "github"])
def test_ci_values_require_the_daemons(value: str) -> None:
    assert running_in_ci({"CI": value})


@pytest.mark.parametrize("environ", [{}, {"CI": ""}, {"CI": "false"}, {"CI": "0"}])
def test_outside_ci_a_missing_daemon_may_skip(environ: dict[str, str]) -> None:
    assert not running_in_ci(environ)


def test_the_require_switches_of_this_run_follow_ci_or_the_command_line(pytestconfig: pytest.Config) -> None:
    import os

    given = pytestconfig.invocation_params.args
    for option in ("require_docker", "require_ssh", "require_slurm"):
        flag = "--" + option.replace("_", "-")
        assert pytestconfig.getoption(option) == (running_in_ci(os.environ) or flag in given)
