"""SIGTERM (and SIGHUP) raise in the main thread, so a killed taoremote cleans up like a Ctrl-C does:
the container is stopped, nothing is left running. Kept apart from hosts.py so `--help` stays light."""

from __future__ import annotations

import contextlib
import signal


class Terminated(BaseException):
    """Raised in the main thread on SIGTERM/SIGHUP; BaseException so no `except Exception` eats it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def install_sigterm_handler() -> None:
    def _raise(signum: int, _frame: object) -> None:
        raise Terminated(signum)

    signal.signal(signal.SIGTERM, _raise)
    with contextlib.suppress(AttributeError, ValueError):
        signal.signal(signal.SIGHUP, _raise)
