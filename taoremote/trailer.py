"""PURE: the stderr filter of a followed command that ends with a marked answer (command.FOLLOW_WAIT_RM).

The command's stderr passes through to ours as it comes, except the line MARKER<number>: that number
is the command's answer (a job's exit code), kept from the terminal and acknowledged with one line on
the command's stdin, which lets the command finish (remove the container). MARKER holds a nonce the
task never saw, so nothing the task prints can pass for it. Text that may be the start of the marker
is held back until the next write shows it is not.
"""

from __future__ import annotations

from typing import TextIO


class MarkedAnswer:
    """A file-like err_stream for invoke's Runner, and its watcher (submit) that sends the ack."""

    def __init__(self, marker: str, out: TextIO) -> None:
        self.marker = marker
        self.out = out
        self.code: int | None = None
        self._held = ""
        self._acked = False

    def write(self, text: str) -> int:
        if self.code is None:
            self.out.write(self._pass(self._held + text))
        else:  # after the answer: the command's own complaints (a failed rm) are shown
            self.out.write(text)
        return len(text)

    def flush(self) -> None:
        self.out.flush()

    def finish(self) -> None:
        """The command ended: what was held back was not the marker after all."""
        held, self._held = self._held, ""
        if held:
            self.out.write(held)
            self.out.flush()

    def submit(self, stream: str) -> list[str]:
        """invoke's StreamWatcher interface: the line to write to the command's stdin, once the answer
        has come. Called from the stdout and the stderr reader threads: a second ack would be one more
        line the command never reads, harmless."""
        if self.code is None or self._acked:
            return []
        self._acked = True
        return ["\n"]

    def _pass(self, text: str) -> str:
        """What of TEXT to show now; the answer is taken out, a possible start of it held back."""
        at = text.find(self.marker)
        if at >= 0:
            end = text.find("\n", at)
            if end < 0:
                self._held = text[at:]
                return text[:at]
            number = text[at + len(self.marker) : end]
            self._held = ""
            if not number.isdigit():  # not the answer's form: show it as it is
                return text
            self.code = int(number)
            return text[:at] + text[end + 1 :]
        longest = min(len(text), len(self.marker) - 1)
        keep = next((n for n in range(longest, 0, -1) if self.marker.startswith(text[-n:])), 0)
        self._held = text[len(text) - keep :]
        return text[: len(text) - keep]
