"""How many docker calls a local foreground launch costs: a task that exits 0 needs no `docker inspect`."""

from __future__ import annotations

import json
from dataclasses import replace

from taoremote.docker_launch import launch_job
from tests.unit.fakes import FakeExecutor, run, stream
from tests.unit.test_backend_docker import CREATE, INSPECT, NAME, SPEC, START_ATTACHED


def test_a_task_that_exits_0_costs_create_start_rm_and_no_inspect() -> None:
    with FakeExecutor(
        run(CREATE, stdout="id\n"),
        stream(START_ATTACHED, rc=0),
        run(("docker", "rm", NAME), stdout=f"{NAME}\n"),
        require_deadlines=True,
    ) as ex:
        assert launch_job(ex, SPEC, {}) == 0


def test_an_interactive_shell_that_ends_0_is_still_inspected() -> None:
    # with stdin attached the user may have detached (ctrl-p ctrl-q): exit 0 and the shell still runs
    spec = replace(SPEC, interactive=True)
    create = ("docker", "create", "--init", "-i", *CREATE[3:])
    state = {"Status": "exited", "ExitCode": 0, "Error": ""}
    with FakeExecutor(
        run(create, stdout="id\n"),
        stream(("docker", "start", "--attach", "--interactive", NAME), rc=0),
        run(INSPECT, stdout=json.dumps(state)),
        run(("docker", "rm", NAME), stdout=f"{NAME}\n"),
        require_deadlines=True,
    ) as ex:
        assert launch_job(ex, spec, {}) == 0
