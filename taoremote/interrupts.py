"""PURE: what an interruption does to a job being launched, written once for every backend (and for
the trials of a sweep). The backend carries the reaction out with its own commands.

- Ctrl-C, SIGTERM: a foreground job must not outlive us; a detached one was asked to outlive us.
- SIGHUP: the terminal went away, not the wish to run: the job goes on (and must have begun), except
  an interactive shell, which nobody can type into any more and which only holds GPUs.
- closed output (`| head`): nobody can watch a foreground job any more: it is stopped.
- a lost SSH link: the job goes on; the caller prints how to reattach.
"""

from __future__ import annotations

from enum import Enum

from taoremote.errors import HungUp, LinkLostError, OutputClosed, Terminated


class Reaction(Enum):
    LEAVE = "leave"  # the job goes on: nothing to do here
    STOP = "stop"  # stop it and remove it: nothing is left running, nothing kept
    REMOVE_UNSTARTED = "remove-unstarted"  # it never ran: remove it without a stop, in seconds
    KEEP_RUNNING = "keep-running"  # make sure it started (a hang-up between create and start)


def reaction(exc: BaseException, *, started: bool, detach: bool, interactive: bool) -> Reaction | None:
    """The reaction to EXC arriving during a launch; None: EXC is no interruption (an error, which
    the step that failed has answered already). started: the job may have begun running."""
    if isinstance(exc, LinkLostError):
        return Reaction.LEAVE
    if isinstance(exc, HungUp):
        return Reaction.STOP if interactive else Reaction.KEEP_RUNNING
    if isinstance(exc, OutputClosed):
        return Reaction.LEAVE if detach else Reaction.STOP
    if isinstance(exc, (KeyboardInterrupt, Terminated)):
        if detach:
            return Reaction.LEAVE
        return Reaction.STOP if started else Reaction.REMOVE_UNSTARTED
    return None
