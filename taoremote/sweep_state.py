"""A sweep's state: its definition, its trials and their events, in SQLite under $XDG_STATE_HOME/taoremote/.

Imported by the sweep command only (sqlite3 costs start-up that `--help` and `list` must not pay).
- One file, `sweeps.db`, in a 0700 directory, itself 0600. WAL mode: `sweep status` reads while a driver
  writes; every write is one short transaction. It never holds an env value: the definition takes the keys
  of DEFINITION_KEYS only, and the driver puts no env value in any of them.
- One driver per sweep: `lock()` holds `<name>.lock` for the driver's life (sweep_lock.py).
- No trial launched twice (the protocol the driver follows):
  1. `mark_launching` records host, GPUs and the container name BEFORE `docker run`. The name and the job
     id are deterministic (`job_id_for`: the sweep's random id and the trial index), never drawn again.
  2. After `docker run -d` answered, `mark_running`.
  3. On resume, a `launching` trial is looked up by that name on its recorded host: found (in any state)
     it is adopted; provably absent (the host answered `docker ps -a` without it) it is launched again
     on that same host under that same name, so that a `docker run` of the dead driver still in flight
     (the remote command ignores SIGHUP) makes docker refuse the second one ("name in use") and the
     driver adopts instead. While the host does not answer, the trial stays `launching`.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from taoremote.errors import UsageError
from taoremote.sweep_lock import DriverLock

if TYPE_CHECKING:
    from taoremote.trials import Trial

STATES = ("queued", "launching", "running", "succeeded", "failed", "stopped", "pruned", "unknown")
FINISHED = frozenset({"succeeded", "failed", "stopped", "pruned"})
# The definition's keys, in the order differences are named; the flag a user changes, where not `--key`.
DEFINITION_KEYS: tuple[str, ...] = ("params", "search", "trials", "seed", "metric", "direction")
DEFINITION_KEYS += ("max_parallel", "gpus_per_trial", "prune", "prune_warmup", "hosts", "task")
DEFINITION_KEYS += ("slurm", "sbatch")  # a Slurm sweep: the login node and the --sbatch args (else null)
_FLAGS = {"params": "--param", "hosts": "--host", "task": "the task's arguments"}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}\Z")
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS sweeps (name TEXT PRIMARY KEY, sweep_id TEXT NOT NULL, definition TEXT NOT NULL,
    created REAL NOT NULL, stop_requested INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS trials (sweep TEXT NOT NULL REFERENCES sweeps(name), idx INTEGER NOT NULL,
    params TEXT NOT NULL, state TEXT NOT NULL CHECK (state IN ({", ".join(f"'{s}'" for s in STATES)})),
    job_id TEXT NOT NULL, host TEXT, gpus TEXT, container TEXT, exit_code INTEGER, best_metric REAL,
    best_epoch INTEGER, started REAL, finished REAL, PRIMARY KEY (sweep, idx));
CREATE TABLE IF NOT EXISTS progress (sweep TEXT NOT NULL, idx INTEGER NOT NULL, epoch INTEGER,
    max_epoch INTEGER, metric REAL, PRIMARY KEY (sweep, idx));
CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY AUTOINCREMENT, sweep TEXT NOT NULL,
    time REAL NOT NULL, trial INTEGER, text TEXT NOT NULL);
"""


@dataclass(frozen=True)
class Sweep:
    name: str
    sweep_id: str  # 8 hex digits drawn once: a sweep made again under an old name gets new job ids
    definition: Mapping[str, Any]
    created: float
    stop_requested: bool = False


@dataclass(frozen=True)
class TrialRecord:
    index: int
    params: tuple[tuple[str, str], ...]
    state: str
    job_id: str
    host: str | None = None
    gpus: tuple[int, ...] = ()
    container: str | None = None
    exit_code: int | None = None
    best_metric: float | None = None
    best_epoch: int | None = None
    started: float | None = None
    finished: float | None = None


@dataclass(frozen=True)
class Event:
    id: int
    time: float
    trial: int | None
    text: str


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise UsageError(f"sweep name {name!r}: use letters, digits, '.', '_' and '-' (at most 63)")
    return name


def state_dir(environ: Mapping[str, str], home: str) -> str:
    """$XDG_STATE_HOME/taoremote, or ~/.local/state/taoremote (a relative XDG_STATE_HOME is ignored, as
    the XDG spec says)."""
    base = environ.get("XDG_STATE_HOME", "")
    return os.path.join(base if os.path.isabs(base) else os.path.join(home, ".local", "state"), "taoremote")


def job_id_for(sweep_id: str, index: int) -> str:
    return f"{sweep_id}-t{index}"


def definition_differences(stored: Mapping[str, Any], given: Mapping[str, Any]) -> list[str]:
    """Each difference as a user reads it: `--param lr differs: stored 0.1,0.01, given 0.1`."""
    found = []
    for key in DEFINITION_KEYS:
        old, new, flag = stored.get(key), given.get(key), _FLAGS.get(key, "--" + key.replace("_", "-"))
        if old == new:
            continue
        if key == "params":
            found += _param_differences(old or [], new or [])
        elif key == "task":
            found.append(f"{flag} differ: stored `{shlex.join(old or [])}`, given `{shlex.join(new or [])}`")
        else:
            found.append(f"{flag} differs: stored {_text(old)}, given {_text(new)}")
    return found


def _param_differences(old: Sequence[Sequence[str]], new: Sequence[Sequence[str]]) -> list[str]:
    before, after = dict((p, v) for p, v in old), dict((p, v) for p, v in new)
    found = [
        f"--param {p} differs: stored {before[p]}, given {after[p]}"
        for p in before
        if p in after and before[p] != after[p]
    ]
    found += [f"--param {p} is stored but not given" for p in before if p not in after]
    found += [f"--param {p} is given but not stored" for p in after if p not in before]
    if not found:  # same values, another order: the trials would be numbered differently
        found.append(f"--param order differs: stored {', '.join(before)}, given {', '.join(after)}")
    return found


def _text(value: Any) -> str:
    if value is None or value == []:
        return "none"
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


class SweepStore:
    """The state file. `create=False` (status, best, list, stop): no file is made when none exists."""

    def __init__(self, directory: str, *, create: bool = True) -> None:
        self.directory = directory
        path = os.path.join(directory, "sweeps.db")
        if not os.path.exists(path):
            if not create:
                raise UsageError(f"no sweep has been run yet (no {path})")
            os.makedirs(directory, mode=0o700, exist_ok=True)  # the holder's eyes only, as the db
            os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))  # SQLite gives -wal and -shm its mode
        # every write is one short transaction (`with self._db` commits it); WAL lets readers read meanwhile
        self._db = sqlite3.connect(path, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def lock(self, name: str) -> DriverLock:
        return DriverLock(os.path.join(self.directory, f"{check_name(name)}.lock")).acquire(name)

    # ------------------------------------------------------------------------------------------ sweeps

    def define(self, name: str, given: Mapping[str, Any] | None) -> Sweep:
        """The sweep NAME runs: made from GIVEN, or the stored one when GIVEN is None or the same."""
        check_name(name)
        if given is not None and set(given) - set(DEFINITION_KEYS):  # an env value has no place here
            raise ValueError(f"not a definition key: {sorted(set(given) - set(DEFINITION_KEYS))}")
        # every key, tuples as lists: the JSON it is stored as, so that equal arguments compare equal
        canonical = (
            None if given is None else json.loads(json.dumps({k: given.get(k) for k in DEFINITION_KEYS}))
        )
        if canonical is not None:  # OR IGNORE: of two first runs racing, one makes it, the other compares
            with self._db as db:
                db.execute(
                    "INSERT OR IGNORE INTO sweeps (name, sweep_id, definition, created) VALUES (?, ?, ?, ?)",
                    (name, secrets.token_hex(4), json.dumps(canonical, sort_keys=True), time.time()),
                )
        stored = self.sweep(name)
        if stored is None:
            raise UsageError(f"no sweep named {name}: give its --param options and the task")
        # a key a sweep stored before it existed reads as null, as a given definition without it does
        if canonical is not None and canonical != {k: stored.definition.get(k) for k in DEFINITION_KEYS}:
            raise UsageError(
                f"sweep {name} exists with other arguments: "
                + "; ".join(definition_differences(stored.definition, canonical))
                + f"; resume it with `taoremote sweep run {name}` alone, or choose another name"
            )
        return stored

    def sweep(self, name: str) -> Sweep | None:
        row = self._db.execute("SELECT * FROM sweeps WHERE name = ?", (name,)).fetchone()
        return _sweep(row) if row else None

    def sweeps(self) -> tuple[Sweep, ...]:
        return tuple(_sweep(r) for r in self._db.execute("SELECT * FROM sweeps ORDER BY created, name"))

    def request_stop(self, name: str) -> None:
        """`sweep stop`: the driver stops launching and records the trials it stops as `stopped`."""
        with self._db as db:
            db.execute("UPDATE sweeps SET stop_requested = 1 WHERE name = ?", (name,))

    # ------------------------------------------------------------------------------------------ trials

    def add_trials(self, name: str, trials: Iterable[Trial]) -> None:
        """Queue TRIALS; a trial already stored keeps its record (a resume adds nothing twice)."""
        sweep = self.sweep(name)
        assert sweep is not None
        with self._db as db:
            db.executemany(
                "INSERT OR IGNORE INTO trials (sweep, idx, params, state, job_id)"
                " VALUES (?, ?, ?, 'queued', ?)",
                [(name, t.index, json.dumps(t.params), job_id_for(sweep.sweep_id, t.index)) for t in trials],
            )

    def trials(self, name: str) -> tuple[TrialRecord, ...]:
        rows = self._db.execute("SELECT * FROM trials WHERE sweep = ? ORDER BY idx", (name,))
        return tuple(_trial(r) for r in rows)

    def trial(self, name: str, index: int) -> TrialRecord:
        row = self._db.execute("SELECT * FROM trials WHERE sweep = ? AND idx = ?", (name, index)).fetchone()
        if row is None:
            raise KeyError(f"{name} trial {index}")
        return _trial(row)

    def mark_launching(self, name: str, index: int, host: str, gpus: Sequence[int], container: str) -> None:
        """Step 1 of the launch protocol, committed before `docker run`; only a queued trial may launch."""
        self._move(
            name, index, ("queued",), "launching", host=host, gpus=json.dumps(list(gpus)), container=container
        )

    def record_submitted(self, name: str, index: int, host: str, container: str) -> None:
        """A Slurm trial's job answered sbatch: where it is (`slurm:<id>`) and its Slurm id."""
        self._move(name, index, ("launching",), "launching", host=host, container=container)

    def mark_running(self, name: str, index: int) -> None:
        """Launched, adopted or back: `started` keeps the time it was first set."""
        self._move(name, index, ("launching", "unknown", "running"), "running", started=time.time())

    def mark_unknown(self, name: str, index: int) -> None:
        """The trial's host stopped answering: neither running nor finished as far as we know."""
        self._move(name, index, ("launching", "running", "unknown"), "unknown")

    def mark_finished(self, name: str, index: int, state: str, exit_code: int | None) -> None:
        if state not in FINISHED:
            raise ValueError(f"not a finished state: {state}")
        unfinished = tuple(s for s in STATES if s not in FINISHED)  # a finished trial stays as it ended
        self._move(name, index, unfinished, state, exit_code=exit_code, finished=time.time())

    def mark_unfinished_stopped(self, name: str, *, unknown_too: bool) -> int:
        """`sweep stop`: every unfinished trial is recorded stopped, so a rerun never starts it; one whose
        host did not answer (`unknown`) only with UNKNOWN_TOO. How many were."""
        stopped = 0
        for r in self.trials(name):
            if r.state in ("queued", "launching", "running") or (r.state == "unknown" and unknown_too):
                try:
                    self.mark_finished(name, r.index, "stopped", None)
                except ValueError:  # it finished meanwhile
                    continue
                stopped += 1
        return stopped

    def record_metric(self, name: str, index: int, best: float | None, epoch: int | None) -> None:
        with self._db as db:
            db.execute(
                "UPDATE trials SET best_metric = ?, best_epoch = ? WHERE sweep = ? AND idx = ?",
                (best, epoch, name, index),
            )

    def record_progress(
        self, name: str, index: int, epoch: int | None, max_epoch: int | None, metric: float | None
    ) -> None:
        """A trial's latest epoch (done/total) and metric, as the driver read them: `sweep status` shows
        them while the trial runs (its own table: a state file from before it gains it on open)."""
        with self._db as db:
            db.execute(
                "INSERT OR REPLACE INTO progress (sweep, idx, epoch, max_epoch, metric)"
                " VALUES (?, ?, ?, ?, ?)",
                (name, index, epoch, max_epoch, metric),
            )

    def progress(self, name: str) -> dict[int, tuple[int | None, int | None, float | None]]:
        """Trial -> (epoch, max_epoch, metric), for the trials the driver has read progress of."""
        rows = self._db.execute("SELECT idx, epoch, max_epoch, metric FROM progress WHERE sweep = ?", (name,))
        return {index: (epoch, max_epoch, metric) for index, epoch, max_epoch, metric in rows}

    def _move(self, name: str, index: int, sources: Sequence[str], state: str, **fields: object) -> None:
        columns = "".join(f", {c} = COALESCE({c}, ?)" if c == "started" else f", {c} = ?" for c in fields)
        with self._db as db:
            changed = db.execute(
                f"UPDATE trials SET state = ?{columns} WHERE sweep = ? AND idx = ?"
                f" AND state IN ({', '.join('?' * len(sources))})",
                (state, *fields.values(), name, index, *sources),
            ).rowcount
        if changed != 1:
            raise ValueError(f"sweep {name} trial {index}: {self.trial(name, index).state} -> {state}")

    # ------------------------------------------------------------------------------------------ events

    def add_event(self, name: str, text: str, trial: int | None = None) -> None:
        with self._db as db:
            db.execute(
                "INSERT INTO events (sweep, time, trial, text) VALUES (?, ?, ?, ?)",
                (name, time.time(), trial, text),
            )

    def events(self, name: str, after: int = 0) -> tuple[Event, ...]:
        """Events of NAME with an id above AFTER, oldest first (a follower passes the last id it saw)."""
        rows = self._db.execute(
            "SELECT id, time, trial, text FROM events WHERE sweep = ? AND id > ? ORDER BY id", (name, after)
        )
        return tuple(Event(*row) for row in rows)


def _sweep(row: tuple[Any, ...]) -> Sweep:
    name, sweep_id, definition, created, stop = row
    return Sweep(name, sweep_id, json.loads(definition), created, bool(stop))


def _trial(row: tuple[Any, ...]) -> TrialRecord:
    _, index, params, state, job_id, host, gpus, *rest = row  # the columns in TrialRecord's order
    pairs = tuple((p, v) for p, v in json.loads(params))
    return TrialRecord(index, pairs, state, job_id, host, tuple(json.loads(gpus)) if gpus else (), *rest)
