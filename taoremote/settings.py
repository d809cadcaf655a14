"""The options that stand before the task (`Globals`), as plain values: cli.py builds them, everything
after reads them. Kept apart from cli.py so no module but cli.py needs typer to know what was asked."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Globals:
    mounts: str | None
    hosts: tuple[str, ...]
    ssh_config: str | None
    image: str | None
    gpus: str
    detach: bool
    dry_run: bool
    preflight: bool
    fmt: str
    clean_results: bool = False
    yes: bool = False
    slurm: str | None = None  # the login node of a Slurm cluster (an SSH host, or "local"): jobs go to Slurm
    sbatch_args: tuple[str, ...] = ()  # --sbatch ARG, each one argument of sbatch
    container_runtime: str | None = None  # pyxis | docker; None: pyxis where srun offers it
