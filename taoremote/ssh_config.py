"""ssh config: `--host` forms, the `ssh -G` command that evaluates a host's config as OpenSSH does
(`Include`, `Match`, first value wins), its output turned into paramiko `Host` blocks, and the host-key
and keepalive rules read from it. Running `ssh -G` is hosts.py's business: it is handed in."""

from __future__ import annotations

import os
import pwd
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from taoremote.errors import HostError

if TYPE_CHECKING:
    from taoremote.executor import Completed

GLOBAL_KNOWN_HOSTS = "/etc/ssh/ssh_known_hosts"
KEEPALIVE_S = 15  # OpenSSH sends none by default; a frozen host must still be given up, and NAT kept open
KEEPALIVE_COUNT = 3  # OpenSSH's ServerAliveCountMax default
# what fabric/paramiko act on; the rest of `ssh -G` (ciphers, forwarding, ...) is left to their defaults
PASSED_ON = (
    "hostname",
    "port",
    "user",
    "identityfile",
    "identitiesonly",
    "proxycommand",
    "proxyjump",
    "connecttimeout",
    "serveraliveinterval",
    "serveralivecountmax",
    "stricthostkeychecking",
    "userknownhostsfile",
    "globalknownhostsfile",
)


@dataclass(frozen=True)
class HostKeyPolicy:
    strict: str  # "yes" | "accept-new" | "no"
    known_hosts: tuple[str, ...]  # UserKnownHostsFile: the first one is where accept-new records keys
    global_known_hosts: tuple[str, ...] = ()


def parse_host_spec(spec: str) -> tuple[str | None, str, int | None]:
    """`[user@]host[:port]` -> (user, host, port); an ~/.ssh/config alias is just a host."""
    user, _, rest = spec.rpartition("@")
    host, port = rest, None
    if rest.startswith("["):  # [ipv6]:port
        inner, _, tail = rest[1:].partition("]")
        host, port = inner, int(tail[1:]) if tail.startswith(":") and tail[1:].isdigit() else None
    elif rest.count(":") == 1:
        name, _, port_text = rest.partition(":")
        if not port_text.isdigit():
            raise HostError(f"--host {spec}: port must be a number")
        host, port = name, int(port_text)
    if not host:
        raise HostError(f"--host {spec!r}: no host name")
    if host.startswith("-"):  # it would be an option to ssh -G
        raise HostError(f"--host {spec!r}: a host name cannot start with '-'")
    return user or None, host, port


def openssh_g_argv(
    host: str, *, user: str | None, port: int | None, config_file: str | None
) -> tuple[str, ...]:
    """`ssh -G`: OpenSSH prints the options it would use for `host`, and connects to nothing.
    config_file: `-F FILE` (`none`: no file at all), else ssh's own ~/.ssh/config and system file."""
    argv = ["ssh", "-G"]
    if config_file:
        argv += ["-F", config_file]
    if user:
        argv += ["-l", user]
    if port:
        argv += ["-p", str(port)]
    return (*argv, host)  # parse_host_spec refused a host that starts with `-`


def parse_openssh_g(text: str) -> dict[str, list[str]]:
    """`ssh -G` output: one lower-case `key value` per line; identityfile and the like repeat."""
    options: dict[str, list[str]] = {}
    for line in text.splitlines():
        key, _, value = line.strip().partition(" ")
        if key and value:
            options.setdefault(key.lower(), []).append(value.strip())
    return options


def proxy_jump_hosts(options: Mapping[str, list[str]]) -> list[tuple[str | None, str, int | None]]:
    """The hops of ProxyJump (`[user@]host[:port]`, comma-separated), each to be evaluated on its own."""
    value = (options.get("proxyjump") or ["none"])[0]
    if value == "none":
        return []
    return [parse_host_spec(hop.removeprefix("ssh://")) for hop in value.split(",")]


def host_block(alias: str, options: Mapping[str, list[str]], *, hop: bool = False) -> str:
    """One `Host alias` block for paramiko's parser holding what OpenSSH evaluated. An IdentityFile
    that does not exist is left out (ssh -G lists the default ones whether they exist or not), and
    a hop's own proxies too: fabric chains the hops of the target's ProxyJump itself."""
    lines = [f"Host {alias}"]
    for key in PASSED_ON:
        if hop and key in ("proxycommand", "proxyjump"):
            continue
        for value in options.get(key, []):
            if value == "none" and key in ("proxycommand", "proxyjump", "connecttimeout"):
                continue
            if key == "identityfile" and not os.path.isfile(os.path.expanduser(value)):
                continue
            lines.append(f"    {key} {value}")
    return "\n".join(lines) + "\n"


def host_key_policy(ssh_cfg: Mapping[str, object]) -> HostKeyPolicy:
    strict = str(ssh_cfg.get("stricthostkeychecking", "yes")).lower()
    strict = {"off": "no", "false": "no", "ask": "yes", "true": "yes", "on": "yes"}.get(strict, strict)
    user_files = _paths(ssh_cfg.get("userknownhostsfile")) or (os.path.expanduser("~/.ssh/known_hosts"),)
    global_files = _paths(ssh_cfg.get("globalknownhostsfile")) or (GLOBAL_KNOWN_HOSTS,)
    return HostKeyPolicy(strict, user_files, global_files)


def keepalive(ssh_cfg: Mapping[str, object]) -> tuple[float, int]:
    """(ServerAliveInterval, ServerAliveCountMax); 0 or unset: ours, so a frozen host is still noticed."""
    interval = _number(ssh_cfg.get("serveraliveinterval")) or KEEPALIVE_S
    count = _number(ssh_cfg.get("serveralivecountmax")) or KEEPALIVE_COUNT
    return float(interval), int(count)


def _number(value: object) -> int:
    if isinstance(value, list):
        value = value[0] if value else None
    text = str(value or "").strip()
    return int(text) if text.isdigit() else 0


def _paths(value: object) -> tuple[str, ...]:
    if isinstance(value, Sequence) and not isinstance(value, str):
        value = " ".join(str(v) for v in value)
    return tuple(os.path.expanduser(p) for p in str(value).split()) if value else ()


def openssh_config_text(
    spec: str,
    hostname: str,
    user: str | None,
    port: int | None,
    ssh_config: str | None,
    evaluate_ssh_config: Callable[[Sequence[str]], Completed | None],
) -> str | None:
    """ssh config for this host as OpenSSH evaluates it (`ssh -G`), as paramiko config text; None where
    there is no OpenSSH client. Its ProxyJump hops are evaluated the same way, each on its own."""
    config_file = ssh_config or _own_config_file()
    result = evaluate_ssh_config(openssh_g_argv(hostname, user=user, port=port, config_file=config_file))
    if result is None:
        return None
    if result.returncode != 0:
        why = (result.stderr.strip().splitlines() or [f"exit code {result.returncode}"])[-1]
        raise HostError(f"host {spec}: bad ssh configuration: {why}")
    options = _home_for_tilde(parse_openssh_g(result.stdout))
    blocks = [host_block(hostname, options)]
    for hop_user, hop_host, hop_port in proxy_jump_hosts(options):
        hop = evaluate_ssh_config(
            openssh_g_argv(hop_host, user=hop_user, port=hop_port, config_file=config_file)
        )
        if hop is not None and hop.returncode == 0:
            blocks.append(host_block(hop_host, _home_for_tilde(parse_openssh_g(hop.stdout)), hop=True))
    return "\n".join(blocks)


def _own_config_file() -> str | None:
    """None: ssh's own choice (~/.ssh/config of the login's home, then the system file). Where $HOME
    is not that home (sudo -E, containers, tests), the files under $HOME are meant, as `~` is everywhere
    else in taoremote."""
    home = os.path.expanduser("~")
    if home == pwd.getpwuid(os.getuid()).pw_dir:
        return None
    own = os.path.join(home, ".ssh", "config")
    return own if os.path.isfile(own) else "none"


def _home_for_tilde(options: dict[str, list[str]]) -> dict[str, list[str]]:
    """ssh -G expands `~` in known_hosts paths to the login's home; taoremote's `~` is $HOME."""
    login_home, home = pwd.getpwuid(os.getuid()).pw_dir.rstrip("/"), os.path.expanduser("~").rstrip("/")
    if login_home == home:
        return options
    for key in ("userknownhostsfile", "globalknownhostsfile"):
        options[key] = [
            " ".join(home + p[len(login_home) :] if p.startswith(login_home + "/") else p for p in v.split())
            for v in options.get(key, [])
        ]
    return options
