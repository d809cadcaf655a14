"""The pure parts of ssh_config.py: --host forms and the host-key policy read from ssh config."""

from __future__ import annotations

import os

import pytest

from taoremote.errors import HostError
from taoremote.ssh_config import GLOBAL_KNOWN_HOSTS, HostKeyPolicy, host_key_policy, parse_host_spec


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("gpu1", (None, "gpu1", None)),
        ("tao@gpu1", ("tao", "gpu1", None)),
        ("tao@10.0.0.13:2222", ("tao", "10.0.0.13", 2222)),
        ("10.0.0.13:22", (None, "10.0.0.13", 22)),
        ("me@[fe80::1]:2200", ("me", "fe80::1", 2200)),
    ],
)
def test_host_spec_forms(spec: str, expected: tuple[str | None, str, int | None]) -> None:
    assert parse_host_spec(spec) == expected


@pytest.mark.parametrize("spec", ["gpu1:ssh", "tao@", "@:22", "-oProxyCommand=x"])
def test_bad_host_spec_is_a_host_error(spec: str) -> None:
    with pytest.raises(HostError):
        parse_host_spec(spec)


def test_default_policy_is_strict_with_the_users_known_hosts() -> None:
    assert host_key_policy({}) == HostKeyPolicy(
        "yes", (os.path.expanduser("~/.ssh/known_hosts"),), (GLOBAL_KNOWN_HOSTS,)
    )


@pytest.mark.parametrize(
    ("value", "strict"), [("ask", "yes"), ("accept-new", "accept-new"), ("no", "no"), ("off", "no")]
)
def test_strict_host_key_checking_values(value: str, strict: str) -> None:
    assert host_key_policy({"stricthostkeychecking": value}).strict == strict


def test_known_hosts_files_come_from_ssh_config() -> None:
    policy = host_key_policy({"userknownhostsfile": "~/a /etc/b", "globalknownhostsfile": "/dev/null"})
    assert policy.known_hosts == (os.path.expanduser("~/a"), "/etc/b")
    assert policy.global_known_hosts == ("/dev/null",)
