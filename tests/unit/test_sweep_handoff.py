"""The driver polls faster only when a hand-off is near (issue 9, "Speed": a trial's exit to the next queued
trial's start within 2 s): trials wait and a running trial has begun its last epoch."""

from __future__ import annotations

import pytest

from taoremote.sweep_run import HANDOFF_POLL_S, POLL_S, _last_epoch
from taoremote.sweep_view import Live


@pytest.mark.parametrize(
    ("live", "near"),
    [
        (None, False),  # nothing read yet
        (Live(None, None, None), False),
        (Live(3, None, 0.5), False),  # no total: cannot tell
        (Live(3, 5, 0.5), False),
        (Live(4, 5, 0.5), True),  # 4 of 5 done: the last epoch runs
        (Live(5, 5, 0.9), True),  # all done: evaluation or the checkpoint's save, then the exit
    ],
)
def test_a_trial_in_its_last_epoch_is_about_to_free_its_gpus(live: Live | None, near: bool) -> None:
    assert _last_epoch(live) is near


def test_the_fast_poll_is_only_faster() -> None:
    assert 0 < HANDOFF_POLL_S < POLL_S
