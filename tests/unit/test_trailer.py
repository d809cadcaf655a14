"""trailer.MarkedAnswer: a followed command's stderr passes through, except its marked exit-code line,
which is taken out, read, and answered on stdin once; nothing the task prints can pass for it."""

from __future__ import annotations

import io

import pytest

from taoremote.trailer import MarkedAnswer

MARKER = "@@taoremote-exit-0123456789abcdef@@"


def _fed(*chunks: str) -> tuple[MarkedAnswer, str]:
    out = io.StringIO()
    answer = MarkedAnswer(MARKER, out)
    for chunk in chunks:
        answer.write(chunk)
    answer.finish()
    return answer, out.getvalue()


def test_the_marked_line_is_taken_out_and_read() -> None:
    answer, shown = _fed("epoch 1\n", "done, no newline", f"{MARKER}137\n")
    assert answer.code == 137
    assert shown == "epoch 1\ndone, no newline"


@pytest.mark.parametrize("cut", range(1, len(MARKER) + 4))
def test_a_marker_split_across_writes_is_still_found_and_never_shown(cut: int) -> None:
    whole = f"last words\n{MARKER}3\n"
    at = len("last words\n") + cut
    answer, shown = _fed(whole[:at], whole[at:])
    assert (answer.code, shown) == (3, "last words\n")


def test_text_held_back_as_a_possible_marker_is_shown_when_it_is_not() -> None:
    answer, shown = _fed("mail me @", "@ home\n", "@@taoremote-exit-")
    assert answer.code is None
    assert shown == "mail me @@ home\n@@taoremote-exit-"


def test_the_task_cannot_forge_the_exit_code_without_the_nonce() -> None:
    forged = "@@taoremote-exit-ffffffffffffffff@@0\n"
    answer, shown = _fed(forged, "@@taoremote-exit-@@0\n")
    assert answer.code is None
    assert shown == forged + "@@taoremote-exit-@@0\n"


def test_the_marker_with_no_number_is_not_an_answer() -> None:
    answer, shown = _fed(f"{MARKER}\n")
    assert answer.code is None
    assert shown == f"{MARKER}\n"


def test_the_answer_is_acknowledged_once_and_only_after_it_came() -> None:
    answer = MarkedAnswer(MARKER, io.StringIO())
    assert answer.submit("anything") == []
    answer.write(f"{MARKER}0\n")
    assert answer.submit("") == ["\n"]
    assert answer.submit("") == []
    assert answer.code == 0


def test_what_comes_after_the_answer_is_shown() -> None:
    answer, shown = _fed(f"{MARKER}5\n", "Error response from daemon: removal in progress\n")
    assert answer.code == 5
    assert shown == "Error response from daemon: removal in progress\n"
