"""Project-wide pytest configuration.

`pytest_addoption` must live in the rootdir conftest (it is read before
collection), so the integration suite's command-line switches are declared
here; the fixtures that honour them are in `tests/integration/conftest.py`.

--require-docker / --require-ssh / --require-slurm: in CI a missing daemon (or
Slurm cluster) is a broken machine,
not a reason to skip, so these turn the integration fixtures' skips into
failures (DESIGN.md §4). They are on by default whenever $CI is set.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import pytest

# Fixtures (directly or through their dependencies) that need a daemon; a test
# using any of them gets the matching marker, so `-m "not docker"` /
# `-m "not ssh"` select the pure tests.
DOCKER_FIXTURES = frozenset({"docker_engine", "test_images", "clean_jobs"})
SSH_FIXTURES = frozenset({"sshd_factory", "sshd_host", "fleet"})
SLURM_FIXTURES = frozenset({"slurm_cluster"})


def running_in_ci(environ: Mapping[str, str]) -> bool:
    """CI=true (what CI sets), or any other non-empty value but 0/false: a plain `pytest` run in CI
    must fail on a missing daemon as surely as `make test` with its --require-* flags does."""
    return environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("taoremote integration")
    in_ci = running_in_ci(os.environ)
    group.addoption(
        "--require-docker",
        action="store_true",
        default=in_ci,
        help="fail (instead of skip) tests whose Docker engine cannot be reached or started",
    )
    group.addoption(
        "--require-ssh",
        action="store_true",
        default=in_ci,
        help="fail (instead of skip) tests whose OpenSSH server cannot be started",
    )
    group.addoption(
        "--require-slurm",
        action="store_true",
        default=in_ci,
        help="fail (instead of skip) tests whose Slurm test cluster (start-slurm.sh) cannot be started",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if names & DOCKER_FIXTURES:
            item.add_marker(pytest.mark.docker)
        if names & SSH_FIXTURES:
            item.add_marker(pytest.mark.ssh)
        if names & SLURM_FIXTURES:
            item.add_marker(pytest.mark.slurm)
