"""paths.py: container paths among a task's arguments, mapped through the mounts to the host and checked
against what the probe found there. (The results directory --clean-results empties is tested in
test_paths_clean.py.)"""

from __future__ import annotations

import pytest

from taoremote.config import Mount
from taoremote.paths import (
    PathArg,
    check_path_args,
    container_path_of,
    find_path_args,
    host_path_of,
    probe_paths,
)
from taoremote.probe import PathState

WORKSPACE = Mount("~/tao", "/workspace")
DATA = Mount("/mnt/data", "/workspace/data", read_only=True)
MOUNTS = (WORKSPACE, DATA)


def state(path: str, resolved: str, *, exists: bool = True, is_dir: bool = False) -> PathState:
    return PathState(path, resolved, exists=exists, is_dir=is_dir, non_empty=False)


# --- find_path_args -----------------------------------------------------------------------------------


def test_flags_give_paths_their_role() -> None:
    args = [
        "-e",
        "/workspace/specs/train.yaml",
        "-r",
        "/workspace/results",
        "-k",
        "nvidia_tlt",
        "--gpus",
        "2",
    ]
    assert find_path_args(args) == [
        PathArg("/workspace/specs/train.yaml", "spec"),
        PathArg("/workspace/results", "results"),
    ]


@pytest.mark.parametrize(
    ("arg", "found"),
    [
        ("experiment_spec=/w/s.yaml", PathArg("/w/s.yaml", "spec")),
        ("--experiment_spec_file=/w/s.txt", PathArg("/w/s.txt", "spec")),
        ("-e=/w/s.txt", PathArg("/w/s.txt", "spec")),
        ("train.experiment_spec=/w/s.yaml", PathArg("/w/s.yaml", "spec")),
        ("results_dir=/w/r", PathArg("/w/r", "results")),
        ("+results_dir=/w/r", PathArg("/w/r", "results")),  # hydra's "add a key" prefix
        ("--results_dir=/w/r", PathArg("/w/r", "results")),
        ("evaluate.results_dir=/w/r", PathArg("/w/r", "results")),
        ("dataset.train_data_sources.image_dir=/w/images", PathArg("/w/images", "other")),
    ],
)
def test_key_value_overrides_are_read_as_paths(arg: str, found: PathArg) -> None:
    assert find_path_args([arg]) == [found]


@pytest.mark.parametrize(
    "args",
    [
        ["-e", "specs/train.yaml"],  # relative: the container's working directory decides, not us
        ["gpus=2", "train.num_epochs=80"],
        ["dataset.uri=s3://bucket/data"],
        ["-k", "key"],
        [],
    ],
)
def test_what_is_not_an_absolute_path_is_not_a_path_arg(args: list[str]) -> None:
    assert find_path_args(args) == []


def test_paths_are_normalised_as_the_container_will_see_them() -> None:
    assert find_path_args(["-e", "/workspace//specs/../specs/./t.yaml"]) == [
        PathArg("/workspace/specs/t.yaml", "spec")
    ]


def test_a_path_after_a_non_flag_is_other() -> None:
    assert find_path_args(["train", "/workspace/x", "/workspace/y"]) == [
        PathArg("/workspace/x", "other"),
        PathArg("/workspace/y", "other"),
    ]


# --- host_path_of / container_path_of -----------------------------------------------------------------


def test_the_deepest_mount_wins_and_the_source_stays_as_written() -> None:
    assert host_path_of("/workspace/data/images/1.jpg", MOUNTS) == (DATA, "/mnt/data/images/1.jpg")
    assert host_path_of("/workspace/specs/t.yaml", MOUNTS) == (WORKSPACE, "~/tao/specs/t.yaml")
    # the deepest wins whatever order the mounts file lists them in
    assert host_path_of("/workspace/data/x", (DATA, WORKSPACE)) == (DATA, "/mnt/data/x")


def test_a_destination_itself_maps_to_the_source() -> None:
    assert host_path_of("/workspace/data", MOUNTS) == (DATA, "/mnt/data")
    assert host_path_of("/workspace", MOUNTS) == (WORKSPACE, "~/tao")


def test_only_whole_path_components_match_a_destination() -> None:
    assert host_path_of("/workspace/database/x", [DATA]) is None
    assert host_path_of("/workspace/database/x", MOUNTS) == (WORKSPACE, "~/tao/database/x")


def test_trailing_slashes_in_the_mounts_file_change_nothing() -> None:
    mount = Mount("~/tao/", "/workspace/")
    assert host_path_of("/workspace/a", [mount]) == (mount, "~/tao/a")
    assert host_path_of("/workspace", [mount]) == (mount, "~/tao")


def test_a_mount_at_the_root_holds_every_path() -> None:
    mount = Mount("/srv/root", "/")
    assert host_path_of("/etc/x", [mount]) == (mount, "/srv/root/etc/x")


def test_a_path_under_no_mount_has_no_host_path() -> None:
    assert host_path_of("/opt/nvidia/x", MOUNTS) is None
    assert host_path_of("/workspace/x", []) is None


def test_a_host_path_is_found_in_the_container_through_the_resolved_source() -> None:
    resolved = {"~/tao": state("~/tao", "/home/me/tao", is_dir=True)}
    assert container_path_of("/home/me/tao/specs/t.yaml", MOUNTS, resolved) == "/workspace/specs/t.yaml"
    assert container_path_of("/home/me/tao", MOUNTS, resolved) == "/workspace"


def test_a_host_path_without_a_probe_uses_the_source_as_written() -> None:
    assert container_path_of("/mnt/data/images", MOUNTS, {}) == "/workspace/data/images"


def test_a_host_path_outside_every_source_is_not_in_the_container() -> None:
    assert container_path_of("/mnt/database/x", MOUNTS, {}) is None
    assert container_path_of("/home/me/other", MOUNTS, {}) is None


# --- probe_paths --------------------------------------------------------------------------------------


def test_the_probe_is_asked_about_each_mapped_host_path_once_in_order() -> None:
    args = [
        PathArg("/workspace/specs/t.yaml", "spec"),
        PathArg("/workspace/data/images", "other"),
        PathArg("/usr/lib/x", "other"),  # under no mount: nothing to ask the host
        PathArg("/workspace/specs/t.yaml", "other"),
    ]
    assert probe_paths(args, MOUNTS) == ["~/tao/specs/t.yaml", "/mnt/data/images"]


# --- check_path_args (everything but the results directory) -------------------------------------------


def test_a_spec_that_does_not_exist_on_the_host_is_an_error() -> None:
    spec = PathArg("/workspace/specs/t.yaml", "spec")
    states = {"~/tao/specs/t.yaml": state("~/tao/specs/t.yaml", "/home/me/tao/specs/t.yaml", exists=False)}
    report = check_path_args([spec], MOUNTS, states, subtask="train")
    assert report.errors == (
        "spec file /workspace/specs/t.yaml does not exist: nothing at /home/me/tao/specs/t.yaml on the host",
    )
    assert report.warnings == ()


def test_a_spec_that_exists_passes() -> None:
    spec = PathArg("/workspace/specs/t.yaml", "spec")
    states = {"~/tao/specs/t.yaml": state("~/tao/specs/t.yaml", "/home/me/tao/specs/t.yaml")}
    report = check_path_args([spec], MOUNTS, states, subtask="train")
    assert (report.errors, report.warnings, report.results) == ((), (), None)


def test_a_missing_path_that_is_not_a_spec_is_not_an_error() -> None:
    # outputs (results, exports) are created by the task; inputs it reports itself
    other = PathArg("/workspace/export/model.onnx", "other")
    states = {"~/tao/export/model.onnx": state("~/tao/export/model.onnx", "/h/model.onnx", exists=False)}
    assert check_path_args([other], MOUNTS, states, subtask="export").errors == ()


def test_nothing_is_said_about_paths_the_probe_was_not_asked_about() -> None:
    # a dry run: no probe, so no verdict either way
    spec = PathArg("/workspace/specs/t.yaml", "spec")
    report = check_path_args([spec], MOUNTS, {}, subtask="train")
    assert (report.errors, report.warnings) == ((), ())


def test_a_host_path_given_as_the_spec_is_an_error_naming_the_container_path() -> None:
    resolved = {"~/tao": state("~/tao", "/home/me/tao", is_dir=True)}
    spec = PathArg("/home/me/tao/specs/t.yaml", "spec")
    report = check_path_args([spec], MOUNTS, resolved, subtask="train")
    assert report.errors == (
        "/home/me/tao/specs/t.yaml is a host path; in the container it is /workspace/specs/t.yaml",
    )


def test_a_host_path_given_elsewhere_is_a_warning() -> None:
    arg = PathArg("/mnt/data/images", "other")
    report = check_path_args([arg], MOUNTS, {}, subtask="train")
    assert report.errors == ()
    assert report.warnings == (
        "/mnt/data/images is a host path; in the container it is /workspace/data/images",
    )


def test_a_path_under_no_mount_is_a_warning_listing_the_mounts() -> None:
    spec = PathArg("/specs/t.yaml", "spec")
    report = check_path_args([spec], MOUNTS, {}, subtask="train")
    assert report.errors == ()
    assert report.warnings == (
        "/specs/t.yaml is under no mount, so it lives only inside the container; "
        "mounts: ~/tao -> /workspace, /mnt/data -> /workspace/data",
    )


def test_without_mounts_the_warning_says_none() -> None:
    report = check_path_args([PathArg("/w/s.yaml", "spec")], [], {}, subtask="train")
    assert report.warnings == (
        "/w/s.yaml is under no mount, so it lives only inside the container; mounts: none",
    )


@pytest.mark.parametrize(
    "path", ["/usr/share/x", "/opt/nvidia/tools/x", "/tmp/x", "/etc/hosts", "/root/.cache"]
)
def test_paths_in_the_image_itself_are_not_warned_about(path: str) -> None:
    assert check_path_args([PathArg(path, "other")], MOUNTS, {}, subtask="train").warnings == ()


def test_a_spec_or_results_dir_in_the_image_is_still_warned_about() -> None:
    # a spec or results dir inside the image is lost with the container, wherever it is
    args = [PathArg("/opt/spec.yaml", "spec"), PathArg("/tmp/results", "results")]
    warnings = check_path_args(args, MOUNTS, {}, subtask="train").warnings
    assert [w.split(" ", 1)[0] for w in warnings] == ["/opt/spec.yaml", "/tmp/results"]
