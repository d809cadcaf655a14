"""jobs.py's lifecycle rules against a contract executor that answers only the commands it expects."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest

from taoremote.command import PS_TEMPLATE, RunSpec
from taoremote.errors import DockerError
from taoremote.hosts import Completed
from taoremote.jobs import launch_job, prune_jobs, stop_every_job

PS = ("docker", "ps", "--all", "--no-trunc", "--filter", "label=taoremote.job", "--format", PS_TEMPLATE)


def _row(name: str, state: str, user: str = "me") -> str:
    return json.dumps({"id": name * 4, "name": name, "state": state, "job": name, "user": user})


class ContractExecutor:
    """Answers each expected argv in order with (returncode, stdout, stderr); anything else fails."""

    host = "local"
    follow_detached = False

    def __init__(self, script: Sequence[tuple[tuple[str, ...], tuple[int, str, str]]]) -> None:
        self.script = list(script)

    def _next(self, argv: Sequence[str]) -> tuple[int, str, str]:
        assert self.script, f"unexpected command {tuple(argv)}"
        expected, answer = self.script.pop(0)
        assert tuple(argv) == expected
        return answer

    def run(
        self, argv: Sequence[str], *, timeout: float | None = None, stdin: str | None = None
    ) -> Completed:
        assert timeout is not None, f"no deadline for {tuple(argv)}"
        code, out, err = self._next(argv)
        return Completed(self.host, tuple(argv), code, out, err)

    def stream(self, argv: Sequence[str], *, tty: bool = False) -> int:
        return self._next(argv)[0]

    def run_visible(self, argv: Sequence[str]) -> Completed:
        raise AssertionError(argv)

    def hand_off_env(self, content: str) -> str:
        raise AssertionError("these jobs have no env values")

    def pending_env_file(self, path: str) -> str | None:
        return None

    def close(self) -> None:
        return None


def test_prune_removes_only_finished_jobs_and_never_with_force() -> None:
    rows = [
        _row("a", "exited"),
        _row("b", "dead"),
        _row("c", "created"),
        _row("d", "paused"),
        _row("e", "running"),
    ]
    ex = ContractExecutor(
        [
            (PS, (0, "\n".join(rows), "")),
            (
                ("docker", "rm", "a", "b"),
                (1, "a\n", "Error: No such container: b\n"),
            ),  # b: a concurrent prune
        ]
    )
    assert [j.name for j in prune_jobs(ex, lambda j: True)] == ["a"]
    assert ex.script == []


def test_prune_reports_a_refusal_docker_gives() -> None:
    ex = ContractExecutor(
        [
            (PS, (0, _row("a", "exited"), "")),
            (("docker", "rm", "a"), (1, "", "Error response from daemon: cannot remove a running container")),
        ]
    )
    with pytest.raises(DockerError):
        prune_jobs(ex, lambda j: True)


def test_stop_all_removes_created_stops_the_rest_and_passes_again_until_none_is_live() -> None:
    first = [_row("c", "created"), _row("r", "running"), _row("p", "paused"), _row("x", "exited")]
    first.append(_row("o", "running", user="other"))
    ex = ContractExecutor(
        [
            (PS, (0, "\n".join(first), "")),
            (("docker", "rm", "c"), (1, "", "cannot remove a running container")),  # it started meanwhile
            (("docker", "stop", "--time", "10", "r", "p"), (0, "r\np\n", "")),
            (PS, (0, "\n".join([_row("c", "running"), _row("n", "created")]), "")),
            (("docker", "rm", "n"), (0, "n\n", "")),
            (("docker", "stop", "--time", "10", "c"), (0, "c\n", "")),
            (PS, (0, _row("c", "exited"), "")),
        ]
    )
    stopped = stop_every_job(ex, lambda j: j.user == "me")
    assert sorted(j.name for j in stopped) == ["c", "n", "p", "r"]
    assert ex.script == []


SPEC = RunSpec(image="img", command=("t",), job_id="0a1b2c3d", task="t", gpus="none")
NAME = "taoremote-t-0a1b2c3d"
CREATE = ("docker", "create", "--init", "--name", NAME, "--label", "taoremote.job=0a1b2c3d", "img", "t")
START = ("docker", "start", "--attach", NAME)
INSPECT = ("docker", "container", "inspect", "--format", "{{json .State}}", NAME)


def test_a_foreground_job_exit_code_comes_from_docker_and_the_container_goes_after() -> None:
    state = {"Status": "exited", "ExitCode": 3, "Error": ""}
    ex = ContractExecutor(
        [
            (CREATE, (0, "id\n", "")),
            (START, (3, "", "")),
            (INSPECT, (0, json.dumps(state), "")),
            (("docker", "rm", NAME), (0, f"{NAME}\n", "")),
        ]
    )
    assert launch_job(ex, SPEC, {}, echo=print) == 3
    assert ex.script == []


def test_a_start_failure_is_a_docker_error_and_leaves_nothing() -> None:
    state = {"Status": "created", "ExitCode": 128, "Error": "unable to find user x: no matching entries"}
    ex = ContractExecutor(
        [
            (CREATE, (0, "id\n", "")),
            (START, (1, "", "")),
            (INSPECT, (0, json.dumps(state), "")),
            (("docker", "rm", "--force", NAME), (0, f"{NAME}\n", "")),
        ]
    )
    with pytest.raises(DockerError, match="could not start img on this machine: unable to find user x"):
        launch_job(ex, SPEC, {}, echo=print)
    assert ex.script == []
