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


class HungUp(Terminated):
    """SIGHUP: the user's terminal (or the session it ran in) went away. A job is left running and
    the way to reattach is printed, as when the SSH link to the host drops."""


class OutputClosed(Terminated):
    """Our stdout went away (`| head`, a closed `less`): nobody can watch the foreground job any more,
    so it is stopped like on SIGTERM, and we exit 141 as a process killed by SIGPIPE would."""

    def __init__(self, message: str = "output closed") -> None:
        super().__init__(signal.SIGPIPE)
        self.message = message


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
