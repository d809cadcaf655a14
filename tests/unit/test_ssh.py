"""The pure parts of the SSH side: known_hosts read as OpenSSH reads it, `ssh -G` output turned into
paramiko config, keepalive rules, and the env-file script sent with the create command."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import subprocess
from pathlib import Path

import paramiko
import pytest

from taoremote.command import ENV_FILE_END, build_write_env_file_then_argv
from taoremote.known_hosts import host_matches, keys_for, lookup_name, parse_known_hosts
from taoremote.ssh_config import (
    HostKeyPolicy,
    host_block,
    keepalive,
    openssh_g_argv,
    parse_openssh_g,
    proxy_jump_hosts,
)
from taoremote.ssh_trust import MissingKeyPolicy, RevokedHostKey


def _blob(keytype: str, body: bytes = b"k" * 32) -> bytes:
    name = keytype.encode()
    return len(name).to_bytes(4, "big") + name + len(body).to_bytes(4, "big") + body


def _line(patterns: str, keytype: str = "ssh-ed25519", body: bytes = b"k" * 32, marker: str = "") -> str:
    encoded = base64.b64encode(_blob(keytype, body)).decode()
    return f"{marker + ' ' if marker else ''}{patterns} {keytype} {encoded}"


def _hashed(name: str, salt: bytes = b"s" * 20) -> str:
    digest = hmac.new(salt, name.encode(), hashlib.sha1).digest()
    return f"|1|{base64.b64encode(salt).decode()}|{base64.b64encode(digest).decode()}"


# ---------------------------------------------------------------------------------------------- known_hosts


def test_unusable_lines_are_skipped_and_the_rest_is_read() -> None:
    text = "\n".join(
        [
            "# a comment",
            "",
            _line("*.example.com", marker="@cert-authority"),
            "a line that is no known_hosts line",
            "example.org ssh-ed25519 not-base64!!",
            "short line",
            _line("gpu1"),
        ]
    )
    keys = parse_known_hosts(text)
    assert [(k.patterns, k.keytype, k.revoked) for k in keys] == [(("gpu1",), "ssh-ed25519", False)]


def test_a_key_whose_blob_names_another_type_is_skipped() -> None:
    encoded = base64.b64encode(_blob("ssh-rsa")).decode()
    assert parse_known_hosts(f"gpu1 ssh-ed25519 {encoded}") == []


def test_lookup_name_brackets_ports_other_than_22() -> None:
    assert lookup_name("gpu1", 22) == "gpu1"
    assert lookup_name("127.0.0.1", 2222) == "[127.0.0.1]:2222"


@pytest.mark.parametrize(
    ("patterns", "name", "matches"),
    [
        (["gpu1"], "gpu1", True),
        (["GPU1"], "gpu1", True),
        (["gpu1,gpu2"], "gpu2", False),  # one pattern per list item: the caller splits on commas
        (["gpu1", "gpu2"], "gpu2", True),
        (["gpu*"], "gpu7", True),
        (["gpu?"], "gpu17", False),
        (["*", "!gpu7"], "gpu7", False),
        (["[127.0.0.1]:2222"], "[127.0.0.1]:2222", True),  # brackets are literal, no character class
        (["[127.0.0.1]:2222"], "1", False),
        ([_hashed("[127.0.0.1]:2222")], "[127.0.0.1]:2222", True),
        ([_hashed("gpu1")], "gpu2", False),
        (["|1|bad"], "gpu1", False),
    ],
)
def test_host_patterns(patterns: list[str], name: str, matches: bool) -> None:
    assert host_matches(patterns, name) is matches


def test_a_revoked_key_is_never_trusted_even_where_another_line_trusts_it() -> None:
    text = "\n".join([_line("*", marker="@revoked"), _line("gpu1"), _line("gpu1", body=b"n" * 32)])
    keys = keys_for(parse_known_hosts(text), "gpu1")
    assert [k.blob for k in keys.trusted] == [_blob("ssh-ed25519", b"n" * 32)]
    assert keys.is_revoked("ssh-ed25519", _blob("ssh-ed25519"))
    assert not keys.is_revoked("ssh-ed25519", _blob("ssh-ed25519", b"n" * 32))


def test_keys_of_other_hosts_are_not_trusted() -> None:
    keys = keys_for(parse_known_hosts(_line("gpu2") + "\n" + _line(_hashed("gpu3"))), "gpu1")
    assert keys.trusted == () and keys.revoked == frozenset()


def test_a_real_ssh_keygen_key_and_its_hashed_form_are_read(tmp_path: Path) -> None:
    key = tmp_path / "k"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    keytype, encoded = key.with_suffix(".pub").read_text().split()[:2]
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:2222 {keytype} {encoded}\n")
    subprocess.run(["ssh-keygen", "-q", "-H", "-f", str(known)], check=True, capture_output=True)
    keys = keys_for(parse_known_hosts(known.read_text()), "[127.0.0.1]:2222")
    assert [(k.keytype, k.blob) for k in keys.trusted] == [(keytype, base64.b64decode(encoded))]


# ---------------------------------------------------------------------------------------------- ssh -G


def test_openssh_g_argv() -> None:
    assert openssh_g_argv("gpu1", user=None, port=None, config_file=None) == ("ssh", "-G", "gpu1")
    assert openssh_g_argv("h", user="me", port=2222, config_file="/c") == (
        "ssh",
        "-G",
        "-F",
        "/c",
        "-l",
        "me",
        "-p",
        "2222",
        "h",
    )


G_OUTPUT = """host gpu1
user tao
hostname 10.0.0.13
port 2222
identityfile ~/.ssh/definitely-missing-key
identityfile {key}
proxycommand none
proxyjump bastion,me@jump2:2200
connecttimeout none
serveraliveinterval 5
serveralivecountmax 4
stricthostkeychecking accept-new
userknownhostsfile /home/tao/.ssh/known_hosts /home/tao/.ssh/known_hosts2
forwardagent no
"""


def test_openssh_g_output_becomes_one_paramiko_host_block(tmp_path: Path) -> None:
    key = tmp_path / "id"
    key.write_text("key")
    options = parse_openssh_g(G_OUTPUT.format(key=key))
    assert host_block("gpu1", options) == (
        "Host gpu1\n"
        "    hostname 10.0.0.13\n"
        "    port 2222\n"
        "    user tao\n"
        f"    identityfile {key}\n"
        "    proxyjump bastion,me@jump2:2200\n"
        "    serveraliveinterval 5\n"
        "    serveralivecountmax 4\n"
        "    stricthostkeychecking accept-new\n"
        "    userknownhostsfile /home/tao/.ssh/known_hosts /home/tao/.ssh/known_hosts2\n"
    )
    assert "proxyjump" not in host_block("bastion", options, hop=True)
    assert proxy_jump_hosts(options) == [(None, "bastion", None), ("me", "jump2", 2200)]
    assert proxy_jump_hosts(parse_openssh_g("proxyjump none\n")) == []


def test_the_block_reads_back_through_paramiko(tmp_path: Path) -> None:
    options = parse_openssh_g(G_OUTPUT.format(key=tmp_path / "none"))
    found = paramiko.SSHConfig.from_text(host_block("gpu1", options)).lookup("gpu1")
    assert (found["hostname"], found["port"], found["user"]) == ("10.0.0.13", "2222", "tao")
    assert "identityfile" not in found  # neither key file exists


@pytest.mark.parametrize(
    ("cfg", "expected"),
    [
        ({}, (15.0, 3)),
        ({"serveraliveinterval": "0", "serveralivecountmax": "3"}, (15.0, 3)),  # what ssh -G says unset
        ({"serveraliveinterval": "1", "serveralivecountmax": "3"}, (1.0, 3)),
        ({"serveraliveinterval": ["7"]}, (7.0, 3)),
    ],
)
def test_keepalive_follows_server_alive_options(cfg: dict[str, object], expected: tuple[float, int]) -> None:
    assert keepalive(cfg) == expected


# ---------------------------------------------------------------------------------------------- env-file


def _run_script(
    tmp_path: Path, stdin: str, env_file: str = ".cache/taoremote-env-1-ab/env"
) -> tuple[int, str]:
    probe = 'cat "$0.seen" 2>/dev/null; test -f "$1" && cat "$1"'
    argv = build_write_env_file_then_argv(("sh", "-c", probe, str(tmp_path / "x"), env_file), env_file)
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, cwd=tmp_path, check=False)
    return done.returncode, done.stdout + done.stderr


def test_the_env_file_is_written_from_stdin_read_by_the_command_and_gone_after(tmp_path: Path) -> None:
    code, out = _run_script(tmp_path, "A=1\n" + ENV_FILE_END)
    assert code == 0
    assert out == "A=1\n" + ENV_FILE_END  # the command saw the whole file
    assert os.listdir(tmp_path / ".cache") == []


def test_an_env_file_cut_short_is_never_used(tmp_path: Path) -> None:
    code, out = _run_script(tmp_path, "A=1\n")  # the link dropped before the end marker
    assert code == 125
    assert "did not arrive whole" in out and "A=1" not in out
    assert os.listdir(tmp_path / ".cache") == []


def test_a_stale_env_file_directory_is_swept_and_a_recent_one_kept(tmp_path: Path) -> None:
    cache = tmp_path / ".cache"
    stale, recent = cache / "taoremote-env-old", cache / "taoremote-env-new"
    for d in (stale, recent):
        d.mkdir(parents=True)
        (d / "env").write_text("S=1\n")
    os.utime(stale, (0, 0))
    assert _run_script(tmp_path, ENV_FILE_END)[0] == 0
    assert sorted(p.name for p in cache.iterdir()) == ["taoremote-env-new"]


# ---------------------------------------------------------------------------------------- host-key policy


def _client_and_key(tmp_path: Path) -> tuple[paramiko.SSHClient, paramiko.PKey, str]:
    path = tmp_path / "hostkey"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    keytype, encoded = path.with_suffix(".pub").read_text().split()[:2]
    key = paramiko.PKey.from_type_string(keytype, base64.b64decode(encoded))
    return paramiko.SSHClient(), key, f"{keytype} {encoded}"


@pytest.mark.parametrize("strict", ["yes", "accept-new", "no"])
def test_a_revoked_key_is_refused_whatever_strict_host_key_checking_says(tmp_path: Path, strict: str) -> None:
    client, key, line = _client_and_key(tmp_path)
    keys = keys_for(parse_known_hosts(f"@revoked * {line}\n"), "[h]:2222")
    policy = MissingKeyPolicy(HostKeyPolicy(strict, (str(tmp_path / "kh"),)), keys)
    with pytest.raises(RevokedHostKey):
        policy.missing_host_key(client, "[h]:2222", key)
    assert not (tmp_path / "kh").exists()


def test_a_host_known_only_by_other_keys_is_a_changed_host_even_with_checking_off(tmp_path: Path) -> None:
    client, key, _ = _client_and_key(tmp_path)
    keys = keys_for(parse_known_hosts(_line("[h]:2222", keytype="ssh-rsa", body=b"r" * 64)), "[h]:2222")
    policy = MissingKeyPolicy(HostKeyPolicy("no", (str(tmp_path / "kh"),)), keys)
    with pytest.raises(paramiko.BadHostKeyException):
        policy.missing_host_key(client, "[h]:2222", key)


@pytest.mark.parametrize(("strict", "recorded"), [("accept-new", True), ("no", False)])
def test_an_unknown_host_is_trusted_as_strict_host_key_checking_says(
    tmp_path: Path, strict: str, recorded: bool
) -> None:
    client, key, line = _client_and_key(tmp_path)
    known = tmp_path / "ssh" / "known_hosts"
    policy = MissingKeyPolicy(HostKeyPolicy(strict, (str(known),)), keys_for([], "[h]:2222"))
    policy.missing_host_key(client, "[h]:2222", key)
    assert known.exists() is recorded
    if recorded:
        assert known.read_text() == f"[h]:2222 {line}\n"


def test_an_unknown_host_is_refused_by_default(tmp_path: Path) -> None:
    client, key, _ = _client_and_key(tmp_path)
    policy = MissingKeyPolicy(HostKeyPolicy("yes", (str(tmp_path / "kh"),)), keys_for([], "h"))
    with pytest.raises(paramiko.SSHException, match="not found in known_hosts"):
        policy.missing_host_key(client, "h", key)
