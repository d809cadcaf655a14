"""Pure parts of the Slurm backend's gap fixes (issue 10): exit code 69 names Slurm's failures in the
table, --help and the README; a job directory that never got a Slurm id is pruned only by the rule
(no id recorded, none in squeue's comments, older than the submit deadline); a job whose id was lost is
found by its comment."""

from __future__ import annotations

from pathlib import Path

from taoremote import errors
from taoremote import slurm_commands as sc
from taoremote import slurm_queue as q
from taoremote.cli_shared import HELP

README = Path(__file__).resolve().parents[2] / "README.md"


def _meaning(code: str) -> str:
    return dict(errors.EXIT_CODES)[code]


def test_69_names_an_sbatch_rejection_and_no_slurm_on_the_login_node_in_table_readme_and_help() -> None:
    meaning = _meaning("69")
    assert "sbatch" in meaning and "Slurm" in meaning and "login node" in meaning
    assert f"| {meaning} | 69 |" in README.read_text(encoding="utf-8")
    codes_line = " ".join(HELP[HELP.index("Exit codes:") :].split())
    assert "69 docker, driver or Slurm" in codes_line


def _listing(age: int | None, *, slurm_id: str | None = None, comment: str = "") -> q.Listing:
    out = "@@squeue\n"
    if comment:
        out += f"7|RUNNING|None|{comment}\n"
    out += "@@squeue-rc 0\n@@dir ab12cd34\n"
    out += f"@@age ab12cd34 {age}\n" if age is not None else ""
    out += '@@files\nab12cd34/meta:{"user": "me"}\n'
    out += f"ab12cd34/slurm_id:{slurm_id}\n" if slurm_id else ""
    return q.parse_listing(out + "@@end\n")


def test_a_submit_without_an_id_is_abandoned_only_past_the_deadline() -> None:
    assert q.abandoned_submits(_listing(q.SUBMIT_DEADLINE_S + 1)) == ["ab12cd34"]
    assert q.abandoned_submits(_listing(q.SUBMIT_DEADLINE_S)) == []  # a submit may still be under way
    assert q.abandoned_submits(_listing(5)) == []
    assert q.abandoned_submits(_listing(None)) == []  # no age known (no stat -c): never


def test_a_directory_with_an_id_is_never_abandoned_by_age() -> None:
    assert q.abandoned_submits(_listing(10_000, slurm_id="5")) == []


def test_a_job_whose_id_was_never_recorded_is_found_by_its_comment_and_is_no_abandoned_submit() -> None:
    listing = _listing(10_000, comment="taoremote job=ab12cd34 user=me")
    (d,) = listing.dirs
    assert d.slurm_id == "7"
    assert q.abandoned_submits(listing) == []
    (job,) = q.jobs_of("local", listing)
    assert (job.container_id, job.state) == ("7", "running")


def test_only_taoremotes_own_comment_names_a_job() -> None:
    assert q.comment_job_id("taoremote job=ab12cd34 user=me") == "ab12cd34"
    assert q.comment_job_id("(null)") is None
    assert q.comment_job_id("someone job=ab12cd34") is None
    listing = _listing(10_000, comment="someone job=ab12cd34 user=me")
    assert q.abandoned_submits(listing) == ["ab12cd34"]


def test_a_submit_writes_its_meta_file_first_so_its_age_is_the_submits_age() -> None:
    script = sc.SUBMIT_SCRIPT
    assert script.index(f'"$d/{sc.META_FILE}"') < script.index('"$d/job.sbatch"') < script.index('"$@"')
