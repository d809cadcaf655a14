"""Which results directory --clean-results is asked to empty (issue 7 item 2): the mount's source as
written and the path below its destination, never a path resolved on another machine. The host-side
rules themselves are exercised on throwaway trees in tests/integration/test_faults_clean.py."""

from __future__ import annotations

from taoremote.command import CLEAN_SCRIPT
from taoremote.config import Mount
from taoremote.paths import PathArg, ResultsDir, check_path_args, host_path_of
from taoremote.probe import PathState


def _state(path: str, resolved: str) -> PathState:
    return PathState(path, resolved, exists=True, is_dir=True, non_empty=True)


def test_a_source_of_root_maps_to_root_not_to_an_empty_path() -> None:
    # "" is the working directory to the host's shell: `/` must stay `/`
    mount = Mount("/", "/workspace/results")
    assert host_path_of("/workspace/results", [mount]) == (mount, "/")
    assert host_path_of("/workspace/results/x", [mount]) == (mount, "/x")


def test_a_results_dir_that_is_the_destination_itself_is_reported_with_nothing_below() -> None:
    mount = Mount("~/.", "/workspace/results")
    report = check_path_args(
        [PathArg("/workspace/results", "results")],
        [mount],
        {"~/.": _state("~/.", "/home/u/.")},
        subtask="train",
    )
    assert report.results == ResultsDir("/workspace/results", "/home/u/.", "~/.", "", report.warnings[0])
    assert "--clean-results never empties a mount's destination itself" in report.warnings[0]


def test_a_results_dir_below_the_destination_keeps_the_source_as_written() -> None:
    mounts = [Mount("~/tao", "/workspace/tao/"), Mount("/srv", "/workspace")]
    report = check_path_args(
        [PathArg("/workspace/tao/results/exp1", "results")],
        mounts,
        {"~/tao/results/exp1": _state("~/tao/results/exp1", "/home/u/tao/results/exp1")},
        subtask="train",
    )
    assert report.results == ResultsDir(
        "/workspace/tao/results/exp1", "/home/u/tao/results/exp1", "~/tao", "results/exp1", report.warnings[0]
    )
    assert "use another directory or --clean-results" in report.warnings[0]


def test_the_host_side_script_checks_everything_before_find_and_is_one_line_without_bang() -> None:
    # csh re-reads a remote command line: no `!` and no newline; `find` comes after every refusal
    assert "\n" not in CLEAN_SCRIPT and "!" not in CLEAN_SCRIPT
    before_find = CLEAN_SCRIPT[: CLEAN_SCRIPT.index("find . ")]
    for rule in ("destination itself", "leads out of the mount", "home directory", "working directory"):
        assert rule in before_find
    assert "cd -P" in before_find and "-delete" not in before_find
