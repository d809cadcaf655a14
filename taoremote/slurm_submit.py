"""The Slurm backend's submit path (DESIGN.md §6): a RunSpec becomes a job - a private directory on the
cluster's shared filesystem (slurm_commands.JOBS_DIR/<job id>, 0700) holding the batch script
(slurm_script.py), the 0600 env file, the output and the exit-code file - submitted with `sbatch
--parsable` plus the user's `--sbatch` arguments, one argv element each; in the foreground it is
followed to its end and its task's exit code collected. Ctrl-C and the other interruptions follow
interrupts.py.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING

from taoremote.backend import Launched
from taoremote.errors import OutputClosed, SlurmError, UsageError
from taoremote.interrupts import Reaction, reaction
from taoremote.slurm_commands import (
    COLLECT_SCRIPT,
    FOLLOW_SCRIPT,
    SUBMIT_SCRIPT,
    env_payload,
    job_dir,
    meta_text,
    remove_argv,
)
from taoremote.slurm_login import NO_SLURM_FIX, QUERY_TIMEOUT_S, SlurmLogin, say, slurm_reason
from taoremote.slurm_script import (
    SlurmJob,
    build_batch_script,
    build_sbatch_argv,
    env_file_text,
    exit_code_name,
    output_name,
    pyxis_dropped_options,
)

if TYPE_CHECKING:
    from taoremote.command import RunSpec
    from taoremote.plan import LaunchPlan

SUBMIT_TIMEOUT_S = 60.0


class SlurmSubmit(SlurmLogin):
    # ------------------------------------------------------------------------------------------ launch

    def launch(self, spec: RunSpec, env_values: Mapping[str, str], *, pull: bool = False) -> Launched:
        """Submit; with spec.detach return at once, else follow the job to its end. `pull` means nothing
        here: the node that runs the job fetches the image (docker run, or enroot for pyxis)."""
        slurm_id = None
        try:
            slurm_id, job = self.submit(spec, env_values)
            if spec.detach:
                say(f"submitted as Slurm job {slurm_id} on {self.host}")
                return Launched(spec.job_id)
            self.follow(job.job_dir, slurm_id, task=None)
            return Launched(spec.job_id, self._collect(job.job_dir, slurm_id, remove=True))
        except BaseException as exc:
            # interrupts.py's policy; before sbatch answered, the job (if any) is found by its directory
            # (started=True: a submit may have reached sbatch, and a queued job must be cancelled too)
            if reaction(exc, started=True, detach=spec.detach, interactive=False) is Reaction.STOP:
                self._cancel_quietly(spec.job_id, slurm_id)
                if isinstance(exc, OutputClosed):
                    raise OutputClosed(job_stopped=True) from None
            raise

    def _cancel_quietly(self, job_id: str, slurm_id: str | None) -> None:
        """Best effort during an interruption: the job must not outlive a Ctrl-C, and nothing of it stays."""
        say(f"cancelling {'Slurm job ' + slurm_id if slurm_id else job_id} on {self.host} ...")
        with contextlib.suppress(Exception):
            if slurm_id is None:  # an interrupted submit: sbatch may have answered all the same
                known = {d.job_id: d.slurm_id for d in self.listing().dirs}
                slurm_id = known.get(job_id)
            if slurm_id is not None:
                self.cancel([slurm_id])
            self._run(remove_argv([job_id], env_only=False))

    def submit(
        self,
        spec: RunSpec,
        env_values: Mapping[str, str],
        *,
        task_commands: tuple[tuple[str, ...], ...] = (),
        max_parallel: int | None = None,
    ) -> tuple[str, SlurmJob]:
        """sbatch it (task_commands: a job array for a sweep, listed as `<job>-<task>`); its Slurm id."""
        job = self._job(spec, env_values, task_commands, max_parallel)
        script = build_batch_script(job)  # usage errors (device=, auto:, pyxis paths) before anything runs
        for warning in self._warnings(job):
            say(f"warning: {warning}")
        spec, labels = job.spec, dict(job.spec.labels)
        meta = meta_text(
            job_id=spec.job_id,
            task=spec.task,
            command=labels.get("taoremote.command", ""),
            image=spec.image,
            gpus=spec.gpus,
            user=job.user,
            started=labels.get("taoremote.started", ""),
            tasks=len(job.task_commands),
            runtime=job.runtime,
        )
        return self._sbatch(job, script, meta, env_values), job

    def _job(
        self,
        spec: RunSpec,
        env_values: Mapping[str, str],
        task_commands: tuple[tuple[str, ...], ...] = (),
        max_parallel: int | None = None,
    ) -> SlurmJob:
        if spec.interactive:
            raise UsageError("an interactive shell cannot run in Slurm's batch queue; give a subtask")
        home = self.login_info().home
        spec = replace(spec, env_names=tuple(env_values), tty=False)
        user = dict(spec.labels).get("taoremote.user", "") or "unknown"
        return SlurmJob(spec, job_dir(home, spec.job_id), user, self.runtime(), task_commands, max_parallel)

    @staticmethod
    def _warnings(job: SlurmJob) -> list[str]:
        if job.runtime != "pyxis":
            return []
        return [
            f"DockerOptions.{n} has no pyxis equivalent and is not applied"
            for n in pyxis_dropped_options(job)
        ]

    def describe_launch(self, plan: LaunchPlan) -> str:
        """The dry run: the batch script as it would be submitted, then where its files would go and the
        exact sbatch argv. Asks the login node only where home is and which runtime it has (read-only):
        no directory is made, nothing submitted. Env values never are in the script; here secrets show
        as ****."""
        job = self._job(plan.spec, plan.env_values)
        script = build_batch_script(job)
        shown = {k: ("****" if k in plan.secret_names else v) for k, v in plan.env_values.items()}
        lines = [
            "# ---- taoremote dry run: nothing was submitted, no job directory made ----",
            f"# Slurm login node: {self.host}; container runtime: {job.runtime}",
            f"# the script above is written to {job.job_dir}/job.sbatch (a private 0700 directory)",
        ]
        if shown:
            lines.append(
                f"# env values reach the job through a 0600 file {job.job_dir}/env, never the script:"
            )
            lines.extend(f"#   {k}={v}" for k, v in shown.items())
        lines.append(f"# sbatch argv: {json.dumps(build_sbatch_argv(job.job_dir, self.options.sbatch_args))}")
        lines.extend(f"# note: {n}" for n in plan.notes)
        lines.extend(f"# warning: {w}" for w in (*plan.warnings, *self._warnings(job)))
        return script + "\n".join(lines)

    def _sbatch(self, job: SlurmJob, script: str, meta: str, env_values: Mapping[str, str]) -> str:
        with_env = bool(env_values)
        stdin = env_payload(env_file_text(job.runtime, env_values)) if with_env else None
        sbatch = build_sbatch_argv(job.job_dir, self.options.sbatch_args)
        flag = "1" if with_env else "0"
        argv = ("sh", "-c", SUBMIT_SCRIPT, "sh", job.job_dir, script, meta, flag, *sbatch)
        done = self._run(argv, timeout=SUBMIT_TIMEOUT_S, stdin=stdin)
        if done.returncode == 127:
            raise SlurmError("no Slurm here (sbatch not found)", host=self.host, fix=NO_SLURM_FIX)
        if done.returncode != 0 or not done.stdout.strip():
            raise SlurmError(f"sbatch refused the job: {slurm_reason(done.stderr)}", host=self.host)
        return done.stdout.strip().splitlines()[-1]

    def follow(self, job_dir: str, slurm_id: str, *, task: int | None) -> int:
        """The queue state while it waits, then its output until it ends; the stream's own code."""
        argv = ("sh", "-c", FOLLOW_SCRIPT, "sh", slurm_id, f"{job_dir}/{output_name(task)}",
                f"{job_dir}/{exit_code_name(task)}")  # fmt: skip
        code = self.executor.stream(argv)
        if code < 0:
            raise OutputClosed()
        return code

    def _collect(self, job_dir: str, slurm_id: str, *, remove: bool, task: int | None = None) -> int:
        flag = "1" if remove else "0"
        argv = ("sh", "-c", COLLECT_SCRIPT, "sh", job_dir, slurm_id, flag, exit_code_name(task))
        done = self._run(argv, timeout=QUERY_TIMEOUT_S)
        text = done.stdout.strip()
        if done.returncode != 0 or not text.lstrip("-").isdigit():
            raise SlurmError(
                f"Slurm job {slurm_id} ended without an exit code from its task (cancelled, or its node "
                f"failed); its output is in {job_dir}",
                host=self.host,
            )
        return int(text)
