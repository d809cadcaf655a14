"""The process tree from /proc, for test fixtures and benchmarks that must kill what they started
(by pid, never by name) and simulate dropped links by killing one sshd child."""

from __future__ import annotations

import os


def ppid_map() -> dict[int, tuple[int, str]]:
    """pid -> (ppid, comm) for every process (from /proc/*/stat)."""
    procs: dict[int, tuple[int, str]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may contain spaces and parentheses.
        head, _, rest = stat.rpartition(")")
        fields = rest.split()
        if len(fields) > 1:
            procs[int(entry.name)] = (int(fields[1]), head.partition("(")[2])
    return procs


def descendants(root: int, procs: dict[int, tuple[int, str]] | None = None) -> list[int]:
    """Every process below root, children before grandchildren."""
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in (procs if procs is not None else ppid_map()).items():
        children.setdefault(ppid, []).append(pid)
    out: list[int] = []
    stack = list(children.get(root, []))
    while stack:
        pid = stack.pop()
        out.append(pid)
        stack.extend(children.get(pid, []))
    return out
