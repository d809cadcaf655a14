"""One driver per sweep: an exclusive `flock` on `<state dir>/<name>.lock`, held for the driver's life.

The kernel drops the lock when the holder dies, SIGKILL included: nothing stale to clean up. The descriptor
is not inheritable (PEP 446), so an ssh or docker child that outlives the driver does not keep it. The file
names its holder (pid, machine, since when), for the refusal a second driver gets.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time

from taoremote.errors import UsageError


class DriverLock:
    """The exclusive lock of one sweep's driver: `acquire` or a UsageError naming who holds it."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self, name: str) -> DriverLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)  # not inheritable (PEP 446)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise UsageError(
                f"sweep {name} already has a driver ({holder}); it keeps running the sweep - "
                f"watch it with `taoremote sweep status {name}`, or stop that driver first"
            ) from None
        os.ftruncate(fd, 0)
        since = time.strftime("%Y-%m-%d %H:%M:%S")
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}, since {since}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None
