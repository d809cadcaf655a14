"""Which hosts a command targets (--host, repeatable; else an inventory file; else $TAOREMOTE_HOSTS),
the job backend that serves each, and the fan-out over them: every host at once, each with its own
deadline, so a host that fails or hangs costs only itself."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

from taoremote.errors import ConfigError, TaoRemoteError

if TYPE_CHECKING:
    from taoremote.backend import JobBackend
    from taoremote.executor import Executor
    from taoremote.settings import Globals


def parse_inventory(text: str) -> tuple[str, ...]:
    """One host per line (an ~/.ssh/config alias or [user@]host[:port]); blank lines and # comments
    are ignored, so a team can keep its fleet, annotated, next to its configs."""
    hosts: list[str] = []
    for line in text.splitlines():
        entry = line.split("#", 1)[0].strip()
        if entry and entry not in hosts:
            hosts.append(entry)
    return tuple(hosts)


def resolve_hosts(
    explicit: Sequence[str], inventory: str | None, environ: Mapping[str, str]
) -> tuple[str, ...]:
    if explicit:
        return tuple(explicit)
    path = inventory or environ.get("TAOREMOTE_INVENTORY")
    if path:
        try:
            with open(path, encoding="utf-8") as fh:
                hosts = parse_inventory(fh.read())
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read inventory: {exc.strerror}") from None
        if not hosts:
            raise ConfigError(f"{path}: the inventory names no host")
        return hosts
    return tuple(h for h in environ.get("TAOREMOTE_HOSTS", "").replace(",", " ").split() if h)


# ---------------------------------------------------------------------------------------------- fan-out

T = TypeVar("T")
H = TypeVar("H", bound="_Closable")
HOST_DEADLINE_S = 30.0


class _Closable(Protocol):
    def close(self) -> None: ...


@dataclass(frozen=True)
class HostResult(Generic[T]):
    host: str
    value: T | None
    error: TaoRemoteError | None


def fan_out(
    g: Globals, work: Callable[[Executor], T], *, deadline: float = HOST_DEADLINE_S
) -> list[HostResult[T]]:
    """Run work(executor) on every target host at once; a host that fails or hangs costs only itself."""
    from taoremote import hosts

    return _each(_targets(g), lambda host: hosts.open_executor(host, ssh_config=g.ssh_config), work, deadline)


def fan_out_backends(
    g: Globals, work: Callable[[JobBackend], T], *, deadline: float = HOST_DEADLINE_S
) -> list[HostResult[T]]:
    """Run work(backend) on every target at once, as fan_out does: list, stop and prune everywhere."""
    return _each(_targets(g), lambda host: open_backend(g, host), work, deadline)


def open_backend(g: Globals, host: str | None) -> JobBackend:
    """The job backend for one target (None: this machine): the only place that picks one."""
    from taoremote import hosts

    if g.slurm:  # the one target is the cluster, reached through its login node
        from taoremote.slurm import SlurmBackend
        from taoremote.slurm_login import SlurmOptions

        runtime = g.container_runtime if g.container_runtime in ("pyxis", "docker") else None
        options = SlurmOptions(g.sbatch_args, runtime)  # type: ignore[arg-type]
        return SlurmBackend(hosts.open_executor(g.slurm, ssh_config=g.ssh_config), options)
    from taoremote.jobs import DockerBackend

    return DockerBackend(hosts.open_executor(host, ssh_config=g.ssh_config))


def _targets(g: Globals) -> list[str | None]:
    if g.slurm:
        return [g.slurm]
    return [*g.hosts] or [None]


def _each(
    targets: Sequence[str | None],
    open_one: Callable[[str | None], H],
    work: Callable[[H], T],
    deadline: float,
) -> list[HostResult[T]]:
    results: dict[int, HostResult[T]] = {}

    def one(index: int, host: str | None) -> None:
        name = host or "local"
        opened: H | None = None
        try:
            opened = open_one(host)
            results[index] = HostResult(name, work(opened), None)
        except TaoRemoteError as exc:
            results[index] = HostResult(name, None, exc)
        finally:
            if opened is not None:
                opened.close()

    if len(targets) == 1:
        one(0, targets[0])  # in the caller's thread, so that Ctrl-C reaches the work
    else:
        # daemon threads: a host that never answers must not keep the process alive after its deadline
        threads = [threading.Thread(target=one, args=(i, h), daemon=True) for i, h in enumerate(targets)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(deadline)
    out = []
    for index, host in enumerate(targets):
        name = host or "local"
        out.append(
            results.get(index)
            or HostResult(name, None, TaoRemoteError(f"no answer within {deadline:.0f} s", host=name))
        )
    return out
