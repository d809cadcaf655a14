"""containers.py over real docker output: `docker ps` rows and job matching.

docker's error texts: test_docker_errors.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from taoremote.containers import Job, exit_code_of, match_job, parse_ps

DATA = Path(__file__).resolve().parents[1] / "data" / "docker"
IMAGE = "taoremote.test/nvidia/tao/tao-toolkit:5.0.0-tf1.15.5"
PS_JOBS = (DATA / "ps-jobs.jsonl").read_text()


# ---------------------------------------------------------------------------------------------- parse_ps


def test_parse_ps_reads_every_row_of_a_real_capture_in_docker_order() -> None:
    jobs = parse_ps("local", PS_JOBS)
    assert [j.job_id for j in jobs] == ["7b8a9f0e", "3f4e5d6c", "9c0d1e2f", "5e6f7a8b", "a1b2c3d4"]


def test_parse_ps_running_job_has_all_fields_and_no_exit_code() -> None:
    job = parse_ps("local", PS_JOBS)[4]
    assert job == Job(
        host="local",
        job_id="a1b2c3d4",
        name="taoremote-detectnet_v2-a1b2c3d4",
        container_id="40436aed562e95a1b8666016c478393e5574c041eb7418efacb7b5b7ec270478",
        task="detectnet_v2",
        command="detectnet_v2 train -e /workspace/specs/train.txt -r /workspace/results",
        image=IMAGE,
        state="running",
        status="Up 7 seconds",
        exit_code=None,
        created="2026-11-25 08:14:19 +0000 UTC",
        gpus="all",
    )


def test_parse_ps_exited_job_carries_its_exit_code() -> None:
    job = parse_ps("local", PS_JOBS)[2]
    assert (job.name, job.state, job.status, job.exit_code) == (
        "taoremote-yolo_v4-9c0d1e2f",
        "exited",
        "Exited (3) 7 seconds ago",
        3,
    )
    assert job.command == "yolo_v4 run sh -c 'exit 3'"


def test_parse_ps_job_stopped_under_init_exits_143() -> None:
    job = parse_ps("local", PS_JOBS)[0]
    assert (job.state, job.exit_code) == ("exited", 143)


def test_parse_ps_created_but_never_started_job_has_no_exit_code() -> None:
    job = parse_ps("local", PS_JOBS)[1]
    assert (job.state, job.status, job.exit_code, job.gpus) == ("created", "Created", None, "1")


def test_parse_ps_keeps_commas_and_quotes_in_the_command_label_intact() -> None:
    job = parse_ps("local", PS_JOBS)[3]
    assert job.command == (
        "classification_tf1 evaluate -e '/workspace/specs/eval, final.txt' --note 'it'\"'\"'s \"best\", 1,2'"
    )


def test_parse_ps_keeps_a_gpu_device_list_label_with_commas() -> None:
    assert parse_ps("local", PS_JOBS)[3].gpus == "device=0,2"


def test_parse_ps_stamps_every_job_with_the_host_it_was_listed_on() -> None:
    assert {j.host for j in parse_ps("gpu1", PS_JOBS)} == {"gpu1"}


def test_parse_ps_of_empty_output_is_no_jobs() -> None:
    assert parse_ps("local", "") == []
    assert parse_ps("local", "\n\n") == []


def test_parse_ps_missing_labels_become_empty_strings() -> None:
    # a container with the job label but none of the others: the template prints "" for each
    line = (
        '{"id":"abc123","name":"taoremote-x-1","image":"img:1","state":"running","status":"Up 1 second",'
        '"created":"2026-11-25 08:14:19 +0000 UTC","job":"1","task":"","command":"","gpus":"","started":""}'
    )
    (job,) = parse_ps("local", line)
    assert (job.task, job.command, job.gpus) == ("", "", "")


# ---------------------------------------------------------------------------------------------- _exit_code


@pytest.mark.parametrize(
    ("status", "code"),
    [
        ("Exited (0) 5 minutes ago", 0),
        ("Exited (3) 7 seconds ago", 3),
        ("Exited (143) 1 second ago", 143),
        ("Exited (255) About an hour ago", 255),
    ],
)
def test_exit_code_is_read_from_an_exited_status(status: str, code: int) -> None:
    assert exit_code_of(status) == code


@pytest.mark.parametrize(
    "status",
    ["Up 7 seconds", "Up 3 minutes (Paused)", "Created", "Restarting (1) 2 seconds ago", "Dead", ""],
)
def test_exit_code_is_none_unless_the_container_exited(status: str) -> None:
    assert exit_code_of(status) is None


# ---------------------------------------------------------------------------------------------- match_job


JOBS = parse_ps("local", PS_JOBS)


def test_job_matches_by_its_job_id() -> None:
    assert match_job(JOBS, "5e6f7a8b") is JOBS[3]


def test_job_matches_by_its_container_name() -> None:
    assert match_job(JOBS, "taoremote-yolo_v4-9c0d1e2f") is JOBS[2]


def test_job_matches_by_full_container_id() -> None:
    full = "40436aed562e95a1b8666016c478393e5574c041eb7418efacb7b5b7ec270478"
    assert match_job(JOBS, full) is JOBS[4]


def test_job_matches_by_a_12_char_container_id_prefix_as_docker_ps_shows_it() -> None:
    assert match_job(JOBS, "735b44d2e3a5") is JOBS[1]


def test_job_matches_by_a_4_char_container_id_prefix() -> None:
    assert match_job(JOBS, "758c") is JOBS[3]


def test_unknown_id_prefix_shorter_than_4_chars_does_not_match() -> None:
    assert match_job(JOBS, "758") is None
    assert match_job(JOBS, "7") is None


def test_prefix_of_a_job_id_or_name_does_not_match() -> None:
    assert match_job(JOBS, "5e6f7a") is None
    assert match_job(JOBS, "taoremote-yolo") is None


def test_unknown_id_does_not_match() -> None:
    assert match_job(JOBS, "deadbeef") is None
    assert match_job([], "5e6f7a8b") is None


def _job(job_id: str, container_id: str) -> Job:
    return Job(
        "local",
        job_id,
        f"taoremote-t-{job_id}",
        container_id,
        "t",
        "",
        IMAGE,
        "running",
        "Up",
        None,
        "",
        "all",
    )


def test_container_id_prefix_shared_by_two_jobs_matches_neither() -> None:
    first = _job("11111111", "abcd1111" + "0" * 56)
    second = _job("22222222", "abcd2222" + "0" * 56)
    assert match_job([first, second], "abcd") is None
