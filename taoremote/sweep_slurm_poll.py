"""PURE: a Slurm sweep's commands on the login node and what they print (DESIGN.md §5-§6).

A tick of the Slurm sweep driver is ONE command on the login node (`build_poll_argv`): the Slurm backend's
own listing (squeue, then every job directory's meta, Slurm id and exit-code files: slurm_queue.LIST_SCRIPT)
followed by what each followed trial's status.json grew by since the last tick. The cluster's filesystem
is shared, so the login node reads what the GPU nodes write. Before the array is submitted, one command
makes every trial's results dir and writes its spec copy (`build_prepare_trials_argv`): contents travel
on stdin, base64 (byte-exact whatever the spec holds), never in an argv.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence

from taoremote import slurm_queue as q

_HOME = 'case $p in "~/"*) p=$HOME/${p#"~/"} ;; "~") p=$HOME ;; esac;'
_TAILS_MARK = "@@slurm-sweep:tails@@"
_TAILS = (
    f"printf '%s\\n' '{_TAILS_MARK}';"
    " while [ $# -ge 3 ]; do p=$3; " + _HOME + " printf '@@slurm-sweep:status %s@@\\n' \"$1\";"
    ' if [ -f "$p" ]; then tail -c "+$(($2 + 1))" "$p"; fi;'
    " printf '\\n@@slurm-sweep:status-end %s@@\\n' \"$1\"; shift 3; done"
)
_STATUS = re.compile(r"@@slurm-sweep:status (\d+)@@")
SUBMITTING = "submitting:"  # a trial's `container` while its job's submit has not answered: + the job id


def build_poll_argv(statuses: Sequence[tuple[int, int, str]]) -> tuple[str, ...]:
    """STATUSES: (trial, bytes already read, status.json path on the login node) for each trial to follow."""
    script = q.LIST_SCRIPT + "; " + _TAILS
    return ("sh", "-c", script, "sh", *(str(x) for s in statuses for x in s))


def parse_poll(stdout: str) -> tuple[q.Listing, dict[int, str]]:
    """The listing (slurm_queue.parse_listing) and, per followed trial, its status.json's new text."""
    head, sep, tails = stdout.partition(f"@@end\n{_TAILS_MARK}\n")
    listing = q.parse_listing(head + "@@end\n" if sep else stdout)
    grown: dict[int, str] = {}
    lines = tails.split("\n") if sep else []
    i = 0
    while i < len(lines):
        mark = _STATUS.fullmatch(lines[i])
        i += 1
        if mark is None:
            continue
        start = i
        while i < len(lines) and lines[i] != f"@@slurm-sweep:status-end {mark.group(1)}@@":
            i += 1
        grown[int(mark.group(1))] = "\n".join(lines[start:i])  # the newline before the end mark is ours
    return listing, grown


def build_prepare_trials_argv(
    trials: Sequence[tuple[str, str | None]],
) -> tuple[str, ...]:
    """The command making each (trial dir, spec copy path or None) and writing the spec copies, whose
    texts are given in the same order by `prepare_trials_stdin`. Paths under `~/` are the login home."""
    script = (
        "while [ $# -ge 2 ]; do p=$1; " + _HOME + ' mkdir -p -- "$p" || exit 1; p=$2; shift 2;'
        ' [ -n "$p" ] || continue; ' + _HOME + ' mkdir -p -- "${p%/*}" || exit 1;'
        ' IFS= read -r line || { echo "taoremote: spec copies cut short" >&2; exit 1; };'
        ' printf "%s" "$line" | base64 -d >"$p" || exit 1; done'
    )
    return ("sh", "-c", script, "sh", *(x for d, s in trials for x in (d, s or "")))


def prepare_trials_stdin(texts: Sequence[str]) -> str:
    """One base64 line per spec copy, in the order of the argv's spec paths."""
    return "".join(base64.b64encode(t.encode()).decode("ascii") + "\n" for t in texts)
