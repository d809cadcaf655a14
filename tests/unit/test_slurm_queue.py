"""slurm_queue: what the login-node scripts print, read back into Jobs (issue 10). Captured from the real
one-node test cluster's squeue (Slurm 22.05) and the LIST_SCRIPT's own markers."""

from __future__ import annotations

import subprocess

import pytest

from taoremote import slurm_commands as sc
from taoremote import slurm_queue as q
from taoremote.slurm_login import slurm_reason as _reason

SQUEUE = (
    "40|RUNNING|None|taoremote job=aaaa1111 user=ann\n"
    "41|PENDING|Resources|taoremote job=bbbb2222 user=ann\n"
    "42|CANCELLED|None|taoremote job=cccc3333 user=ann\n"
    "43_0|COMPLETED|None|taoremote job=dddd4444 user=bob\n"
    "43_1|RUNNING|None|taoremote job=dddd4444 user=bob\n"
    "43_2|PENDING|JobArrayTaskLimit|taoremote job=dddd4444 user=bob\n"
    "50|RUNNING|None|someone else's job|with a bar\n"
    "51|RUNNING|None|(null)\n"
)


def _dir(
    job: str, user: str, slurm: str | None, *, exits: str = "", env: bool = False, tasks: int = 0
) -> tuple[str, str]:
    meta = sc.meta_text(
        job_id=job,
        task="demo",
        command="train -e spec",
        image="img:1",
        gpus="1",
        user=user,
        started="2025-01-01T00:00:00Z",
        tasks=tasks,
        runtime="docker",
    )
    """Its marker lines, and its files as the LIST_SCRIPT's one grep prints them (after `@@files`)."""
    lines = [f"@@dir {job}"] + ([f"@@env {job}"] if env else [])
    files = [f"{job}/meta:{meta}"] + ([f"{job}/slurm_id:{slurm}"] if slurm else [])
    files += [f"{job}/{e.replace(' ', ':', 1)}" for e in exits.split(",") if e]
    return "".join(f"{line}\n" for line in lines), "".join(f"{line}\n" for line in files)


_DIRS = [
    _dir("aaaa1111", "ann", "40", env=True),
    _dir("bbbb2222", "ann", "41", env=True),
    _dir("cccc3333", "ann", "42", env=True),
    _dir("dddd4444", "bob", "43", exits="exit_code.0 0", env=True, tasks=3),
    _dir("eeee5555", "ann", "39", exits="exit_code 3"),
    _dir("ffff6666", "ann", None, env=True),
]
LISTING = (
    f"@@squeue\n{SQUEUE}@@squeue-rc 0\n"
    + "".join(markers for markers, _ in _DIRS)
    + "@@files\n"
    + "".join(files for _, files in _DIRS)
    + "@@end\n"
)


def test_squeue_rows_are_taoremotes_only_and_the_comment_may_hold_bars() -> None:
    rows = q.parse_squeue(SQUEUE)

    assert [r.slurm_id for r in rows] == ["40", "41", "42", "43_0", "43_1", "43_2"]
    assert [r.live for r in rows] == [True, True, False, False, True, True]


def test_every_job_directory_and_array_task_is_one_job_with_slurms_state_or_its_exit_code() -> None:
    jobs = q.jobs_of("login1", q.parse_listing(LISTING))

    got = [(j.job_id, j.container_id, j.state, j.status, j.exit_code, j.user) for j in jobs]
    assert got == [
        ("aaaa1111", "40", "running", "RUNNING", None, "ann"),
        ("bbbb2222", "41", "pending", "PENDING (Resources)", None, "ann"),
        ("cccc3333", "42", "dead", "CANCELLED", None, "ann"),
        ("dddd4444-0", "43_0", "exited", "Exited (0)", 0, "bob"),
        ("dddd4444-1", "43_1", "running", "RUNNING", None, "bob"),
        ("dddd4444-2", "43_2", "pending", "PENDING (JobArrayTaskLimit)", None, "bob"),
        ("eeee5555", "39", "exited", "Exited (3)", 3, "ann"),
        ("ffff6666", "", "created", "submitting", None, "ann"),
    ]
    assert jobs[0].name == "taoremote-demo-aaaa1111"
    first = jobs[0]
    assert (first.command, first.image, first.gpus, first.host) == ("train -e spec", "img:1", "1", "login1")


def test_an_env_file_is_stranded_only_when_slurm_runs_nothing_of_its_job() -> None:
    # 40, 41 run or wait; 43 has a task still pending; ffff6666 was never answered by sbatch: all kept
    assert q.stranded_env_dirs(q.parse_listing(LISTING)) == ["cccc3333"]


def test_a_listing_whose_squeue_failed_says_so() -> None:
    listing = q.parse_listing("@@squeue\n@@squeue-rc 1\n@@end\n")

    assert (listing.squeue_rc, listing.queue, listing.dirs) == (1, (), ())


def test_the_login_info() -> None:
    assert sc.parse_info("home=/home/ann\nslurm=1\n") == sc.LoginInfo("/home/ann", True, False)
    assert sc.parse_info("home=/h\nslurm=1\npyxis=1\n").has_pyxis
    assert not sc.parse_info("home=/h\n").has_slurm


def test_slurms_reason_is_the_last_error_line() -> None:
    stderr = (
        "sbatch: warning: something harmless\n"
        "sbatch: error: invalid partition specified: nope\n"
        "sbatch: error: Batch job submission failed: Invalid partition name specified\n"
    )
    assert _reason(stderr) == "Batch job submission failed: Invalid partition name specified"
    assert _reason("") == "no reason given"


@pytest.mark.parametrize(
    "script",
    [sc.INFO_SCRIPT, sc.SUBMIT_SCRIPT, q.LIST_SCRIPT, sc.FOLLOW_SCRIPT, sc.COLLECT_SCRIPT, sc.CANCEL_SCRIPT],
)
def test_the_login_node_scripts_are_valid_posix_sh_on_one_line_without_bang(script: str) -> None:
    # one line, no `!`: whatever login shell re-reads it over SSH passes it on intact
    assert "\n" not in script and "!" not in script
    assert subprocess.run(["sh", "-n", "-c", script], capture_output=True).returncode == 0


def test_removal_names_job_directories_below_the_jobs_dir_only() -> None:
    argv = sc.remove_argv(["aaaa1111"], env_only=True)

    assert argv[:2] == ("sh", "-c") and argv[-1] == "aaaa1111"
    assert f'"$HOME/{sc.JOBS_DIR}/$j/env"' in argv[2]
