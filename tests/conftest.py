"""Project-wide pytest configuration.

`pytest_addoption` must live in the rootdir conftest (it is read before
collection), so the integration suite's command-line switches are declared
here; the fixtures that honour them are in `tests/integration/conftest.py`.

--require-docker / --require-ssh: in CI a missing daemon is a broken machine,
not a reason to skip, so these turn the integration fixtures' skips into
failures (DESIGN.md §4).
"""

from __future__ import annotations

import pytest

# Fixtures (directly or through their dependencies) that need a daemon; a test
# using any of them gets the matching marker, so `-m "not docker"` /
# `-m "not ssh"` select the pure tests.
DOCKER_FIXTURES = frozenset({"docker_engine", "test_images", "clean_jobs"})
SSH_FIXTURES = frozenset({"sshd_factory", "sshd_host", "fleet"})


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("taoremote integration")
    group.addoption(
        "--require-docker",
        action="store_true",
        default=False,
        help="fail (instead of skip) tests whose Docker engine cannot be reached or started",
    )
    group.addoption(
        "--require-ssh",
        action="store_true",
        default=False,
        help="fail (instead of skip) tests whose OpenSSH server cannot be started",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if names & DOCKER_FIXTURES:
            item.add_marker(pytest.mark.docker)
        if names & SSH_FIXTURES:
            item.add_marker(pytest.mark.ssh)
