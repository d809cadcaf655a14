"""Start-up: `--help` and a local `--dry-run` against their floor, the typer import alone."""

from __future__ import annotations

from benchmarks import breakdown
from benchmarks.harness import TYPER_IMPORT, Bench, Cmd, Row, alternate, log
from benchmarks.local import TASK_ARGS


def run(b: Bench) -> None:
    log("\n== start-up: --help and --dry-run vs `python -c 'import typer'` ==")
    help_ = Cmd.of("taoremote --help", [*b.taoremote, "--help"], env=b.env, expect_out="Usage")
    dry = Cmd.of(
        "taoremote --dry-run", [*b.taoremote, "--dry-run", *TASK_ARGS], env=b.env, expect_out="docker run"
    )
    floor = Cmd.of("import typer", TYPER_IMPORT, env=b.env)
    s = alternate([help_, floor, dry], b.runs(20))
    b.add(
        Row("--help", s[help_.label], s[floor.label], 1.15),
        Row("--dry-run (local)", s[dry.label], s[floor.label], 1.25),
    )
    b.facts["importtime_dry_run"] = breakdown.importtime(["--dry-run", *TASK_ARGS], b.env)
    b.facts["importtime_help"] = breakdown.importtime(["--help"], b.env, top=6)
