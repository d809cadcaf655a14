"""SIGTERM (and SIGHUP) raise in the main thread, so a killed taoremote cleans up like a Ctrl-C does:
the container is stopped, nothing is left running. Kept apart from hosts.py so `--help` stays light."""

from __future__ import annotations

import contextlib
import signal

from taoremote.errors import HungUp, OutputClosed, Terminated  # the vocabulary lives in errors.py

__all__ = ["HungUp", "OutputClosed", "Terminated", "install_sigterm_handler"]


def install_sigterm_handler() -> None:
    def _raise(signum: int, _frame: object) -> None:
        raise Terminated(signum)

    def _hung_up(signum: int, _frame: object) -> None:
        raise HungUp(signum)

    signal.signal(signal.SIGTERM, _raise)
    with contextlib.suppress(AttributeError, ValueError):
        # under `nohup` SIGHUP is ignored on purpose: keep it that way, the run must go to the end
        if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:
            signal.signal(signal.SIGHUP, _hung_up)
