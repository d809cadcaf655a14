"""plan.py and request.py: the task grammar, option checks, env values, the plan before and after the host
probe (captured probe outputs, a fixed id, clock and user), and the dry-run text. No host, no clock."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path

import pytest

from taoremote import launch
from taoremote.command import BoundMount, RunSpec
from taoremote.config import DockerOptions, EnvVar, Mount, MountsConfig, parse_mounts_config
from taoremote.envs import env_values
from taoremote.errors import ConfigError, PreflightError, UsageError
from taoremote.plan import (
    INTERACTIVE_SHELL,
    LaunchPlan,
    Prepared,
    describe_plan,
    finish,
    prepare,
    probe_argv,
    read_probe,
    without_results_warning,
)
from taoremote.request import LaunchOptions, TaskRequest, parse_task_argv
from taoremote.tasks import ImageRef, TaskMap
from tests.unit.captures import CAPTURED_PROBE, swap_section

TAO = "nvidia/tao/tao-toolkit"
TASKS = TaskMap(
    "test map",
    {
        "model": {
            "detectnet_v2": ImageRef("nvcr.io", TAO, "5.0.0-tf1.15.5"),
            "dino": ImageRef("nvcr.io", TAO, "6.26.3-pyt"),
        },
        "dataset": {
            "augmentation": ImageRef("nvcr.io", TAO, "6.26.3-data-services"),
            "analytics": ImageRef("nvcr.io", TAO, "6.26.3-data-services"),
        },
        "deploy": {"dino": ImageRef("nvcr.io", TAO, "6.26.3-deploy")},
    },
)
NO_CONFIG = MountsConfig(path=None)
MOUNTS_PATH = "/home/tester/.tao_mounts.json"


def _config(text: str, environ: dict[str, str] | None = None) -> MountsConfig:
    return parse_mounts_config(text, MOUNTS_PATH, environ or {})


JOB_ID = "0a1b2c3d"
NOW = datetime(2025, 3, 4, 5, 6, 7, tzinfo=timezone.utc)
USER = "tester"


def _prepared(argv: list[str], config: MountsConfig = NO_CONFIG, **options: object) -> Prepared:
    opts = LaunchOptions(**options)  # type: ignore[arg-type]
    return prepare(parse_task_argv(argv, TASKS), config, TASKS, opts)


def _finish(prepared: Prepared, probe_text: str | None = None, *, host: str = "local") -> LaunchPlan:
    probe = read_probe(prepared, probe_text, host=host) if probe_text is not None else None
    return finish(prepared, probe, host=host, job_id=JOB_ID, now=NOW, user=USER)


def _plan(argv: list[str], config: MountsConfig = NO_CONFIG, **options: object) -> LaunchPlan:
    """A dry run: finish without a probe."""
    prepared = _prepared(argv, config, dry_run=True, **options)
    return _finish(prepared, host=prepared.opts.host or "local")


# ---------------------------------------------------------------------------------------------- grammar


def test_flat_grammar_task_subtask_args_pass_through_as_the_command() -> None:
    assert parse_task_argv(["detectnet_v2", "train", "-e", "/w/spec.txt", "-k", "key"], TASKS) == (
        TaskRequest(
            None, "detectnet_v2", ("detectnet_v2", "train", "-e", "/w/spec.txt", "-k", "key"), "train"
        )
    )


def test_group_grammar_keeps_the_group_and_drops_it_from_the_command() -> None:
    assert parse_task_argv(["model", "dino", "train", "-e", "/w/spec.yaml"], TASKS) == (
        TaskRequest("model", "dino", ("dino", "train", "-e", "/w/spec.yaml"), "train")
    )
    assert parse_task_argv(["deploy", "dino", "gen_trt_engine"], TASKS) == (
        TaskRequest("deploy", "dino", ("dino", "gen_trt_engine"), "gen_trt_engine")
    )


def test_arguments_stay_one_element_each_with_spaces_quotes_and_equals() -> None:
    argv = ["dino", "train", "results_dir=/w/my results", "--note", 'it\'s "quoted"', ""]
    assert parse_task_argv(argv, TASKS).command == (
        "dino",
        "train",
        "results_dir=/w/my results",
        "--note",
        'it\'s "quoted"',
        "",
    )


def test_run_executes_any_command_in_the_tasks_image() -> None:
    assert parse_task_argv(["dino", "run", "python", "-c", "print(1)"], TASKS) == (
        TaskRequest(None, "dino", ("python", "-c", "print(1)"), "run")
    )
    assert parse_task_argv(["model", "dino", "run", "nvidia-smi"], TASKS) == (
        TaskRequest("model", "dino", ("nvidia-smi",), "run")
    )


def test_run_without_a_command_is_a_usage_error() -> None:
    with pytest.raises(UsageError) as info:
        parse_task_argv(["dino", "run"], TASKS)
    assert str(info.value) == "`dino run` needs a command to run in the task's image"
    assert info.value.exit_code == 2


def test_task_without_subtask_is_an_interactive_request() -> None:
    assert parse_task_argv(["dino"], TASKS) == TaskRequest(None, "dino", (), None)
    assert parse_task_argv(["model", "dino"], TASKS) == TaskRequest("model", "dino", (), None)


def test_no_task_at_all_is_a_usage_error() -> None:
    with pytest.raises(UsageError) as info:
        parse_task_argv([], TASKS)
    assert str(info.value) == "no task given; see `taoremote --help` and `taoremote info`"


def test_task_group_alone_is_a_usage_error_listing_its_tasks() -> None:
    with pytest.raises(UsageError) as info:
        parse_task_argv(["dataset"], TASKS)
    assert str(info.value) == "task group 'dataset' needs a task; its tasks: analytics, augmentation"
    assert info.value.exit_code == 2


def test_a_name_that_is_not_a_group_is_taken_as_the_task() -> None:
    assert parse_task_argv(["models", "train"], TASKS) == TaskRequest(
        None, "models", ("models", "train"), "train"
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["model", "dino", "--volume", "/data/coco:/workspace/coco:ro", "train", "-e", "/w/s.yaml"],
        ["model", "dino", "train", "--volume", "/data/coco:/workspace/coco:ro", "-e", "/w/s.yaml"],
        ["model", "dino", "train", "-e", "/w/s.yaml", "--volume", "/data/coco:/workspace/coco:ro"],
    ],
)
def test_volume_option_is_taken_out_anywhere_in_the_args(argv: list[str]) -> None:
    # as the 6.x launcher does, in its group grammar (the flat grammar: tests/unit/test_grammar.py)
    assert parse_task_argv(argv, TASKS) == TaskRequest(
        "model",
        "dino",
        ("dino", "train", "-e", "/w/s.yaml"),
        "train",
        (Mount("/data/coco", "/workspace/coco", read_only=True),),
    )


def test_volume_options_keep_their_order_and_rw_is_read_write() -> None:
    request = parse_task_argv(
        ["model", "dino", "train", "--volume", "~/a:/w/a", "--volume", "rel/b:/w/b:rw"], TASKS
    )
    assert request.extra_mounts == (Mount("~/a", "/w/a"), Mount("rel/b", "/w/b"))
    assert request.command == ("dino", "train")


def test_volume_alone_after_the_task_still_opens_a_shell_with_the_mount() -> None:
    assert parse_task_argv(["model", "dino", "--volume", "/d:/w/d"], TASKS) == TaskRequest(
        "model", "dino", (), None, (Mount("/d", "/w/d"),)
    )


def test_volume_inside_a_run_command_is_taken_out_too() -> None:
    request = parse_task_argv(["model", "dino", "run", "ls", "--volume", "/d:/w/d", "/w/d"], TASKS)
    assert (request.command, request.extra_mounts) == (("ls", "/w/d"), (Mount("/d", "/w/d"),))


@pytest.mark.parametrize(
    "value", ["/data", "/data:workspace", "/data:/w:ro:x", "/data:/w:readonly", "/data:/w:RO", "a:b:c:d"]
)
def test_bad_volume_value_is_a_usage_error(value: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_task_argv(["model", "dino", "train", "--volume", value], TASKS)
    assert str(info.value) == f"--volume {value}: expected SRC:/container/path[:ro]"


def test_volume_with_an_empty_source_is_a_usage_error() -> None:
    with pytest.raises(UsageError):
        parse_task_argv(["model", "dino", "train", "--volume", ":/workspace/data"], TASKS)


def test_volume_without_a_value_is_a_usage_error() -> None:
    with pytest.raises(UsageError):
        parse_task_argv(["model", "dino", "train", "-e", "/w/s.yaml", "--volume"], TASKS)


# ---------------------------------------------------------------------------------------------- env values


def test_env_values_come_from_values_and_the_launching_environment_in_file_order() -> None:
    config = _config(
        '{"Envs": [{"variable": "NGC_API_KEY", "value": "nvapi-s3cr3t"},'
        ' {"variable": "WANDB_API_KEY", "from_env": "MY_WANDB"},'
        ' {"variable": "CUDA_DEVICE_ORDER", "value": "PCI_BUS_ID"}]}',
        {"MY_WANDB": "wandb-xyz"},
    )
    assert list(env_values(config).items()) == [
        ("NGC_API_KEY", "nvapi-s3cr3t"),
        ("WANDB_API_KEY", "wandb-xyz"),
        ("CUDA_DEVICE_ORDER", "PCI_BUS_ID"),
    ]


def test_no_config_file_means_no_env_values() -> None:
    assert env_values(NO_CONFIG) == {}


def test_every_unset_from_env_variable_is_listed_in_one_config_error() -> None:
    config = _config(
        '{"Envs": [{"variable": "WANDB_API_KEY", "from_env": "MY_WANDB"},'
        ' {"variable": "CUDA_DEVICE_ORDER", "value": "PCI_BUS_ID"},'
        ' {"variable": "CLEARML_API_SECRET_KEY", "from_env": "CLEARML_SECRET"}]}'
    )
    with pytest.raises(ConfigError) as info:
        env_values(config)
    assert str(info.value) == (
        "/home/tester/.tao_mounts.json: environment variables not set on this machine: "
        "WANDB_API_KEY (from $MY_WANDB), CLEARML_API_SECRET_KEY (from $CLEARML_SECRET)"
    )
    assert info.value.exit_code == 78


def test_multi_line_env_value_is_a_config_error_naming_the_variable() -> None:
    config = _config(
        '{"Envs": [{"variable": "SSH_KEY", "from_env": "KEY_FILE_TEXT"},'
        ' {"variable": "TOKEN", "from_env": "RAW"}, {"variable": "OK", "value": "fine"}]}',
        {"KEY_FILE_TEXT": "-----BEGIN-----\nabc\n-----END-----", "RAW": "a\udcffb\r"},
    )
    with pytest.raises(ConfigError) as info:
        env_values(config)
    assert str(info.value) == (
        "/home/tester/.tao_mounts.json: env values a docker env-file cannot carry: "
        "SSH_KEY (from $KEY_FILE_TEXT: a newline), "
        "TOKEN (from $RAW: a carriage return (CR) and a lone surrogate (not valid Unicode))"
    )
    assert info.value.exit_code == 78


# ---------------------------------------------------------------------------------------------- plan_launch


def test_dry_run_plan_of_a_flat_task_is_a_labelled_attached_run_on_all_gpus() -> None:
    plan = _plan(["detectnet_v2", "train", "-e", "/workspace/specs/train.txt"])
    spec = plan.spec
    assert spec.job_id == "0a1b2c3d"
    assert spec == RunSpec(
        image="nvcr.io/nvidia/tao/tao-toolkit:5.0.0-tf1.15.5",
        command=("detectnet_v2", "train", "-e", "/workspace/specs/train.txt"),
        job_id=spec.job_id,
        task="detectnet_v2",
        mounts=(),
        env_names=(),
        env_file=None,
        options=DockerOptions(),
        gpus="all",
        tty=False,
        interactive=False,
        detach=False,
        labels=spec.labels,
        fixed_env=(("TAO_CLIENT_TYPE", "launcher"),),  # as the launcher sets it in every container
    )
    assert (plan.host, plan.env_values, plan.secret_names, plan.notes) == ("local", {}, frozenset(), ())


def test_plan_labels_name_task_command_gpus_start_time_and_user() -> None:
    labels = _plan(["dino", "train", "-e", "/w/my spec.yaml"], gpus="2").spec.labels
    assert [k for k, _ in labels] == [
        "taoremote.task",
        "taoremote.command",
        "taoremote.gpus",
        "taoremote.started",
        "taoremote.user",
    ]
    assert labels[:3] == (
        ("taoremote.task", "dino"),
        ("taoremote.command", "dino train -e '/w/my spec.yaml'"),
        ("taoremote.gpus", "2"),
    )
    assert labels[3:] == (("taoremote.started", "2025-03-04T05:06:07Z"), ("taoremote.user", "tester"))


def test_plan_of_a_run_command_labels_the_command_only() -> None:
    labels = dict(_plan(["dino", "run", "python", "-c", "print('hi')"]).spec.labels)
    assert labels["taoremote.command"] == "python -c 'print('\"'\"'hi'\"'\"')'"


def test_group_decides_the_image_when_a_task_is_in_two_groups() -> None:
    assert _plan(["dino", "train"]).spec.image == "nvcr.io/nvidia/tao/tao-toolkit:6.26.3-pyt"
    assert (
        _plan(["deploy", "dino", "gen_trt_engine"]).spec.image
        == "nvcr.io/nvidia/tao/tao-toolkit:6.26.3-deploy"
    )


def test_override_registry_replaces_the_registry_and_image_option_wins_over_both() -> None:
    assert _plan(["dino", "train"], override_registry="reg.local:5000").spec.image == (
        "reg.local:5000/nvidia/tao/tao-toolkit:6.26.3-pyt"
    )
    assert _plan(["dino", "train"], override_registry="reg.local:5000", image="mine/dino:dev").spec.image == (
        "mine/dino:dev"
    )


def test_unknown_task_in_a_group_is_a_usage_error_listing_the_groups_tasks() -> None:
    with pytest.raises(UsageError) as info:
        _plan(["dataset", "dino", "train"])
    assert (
        str(info.value) == "unknown task 'dino' in task group 'dataset'; known tasks: analytics, augmentation"
    )


def test_local_dry_run_resolves_mount_sources_on_this_machine(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HOME", "/home/tester")
    monkeypatch.chdir(tmp_path)
    config = _config(
        '{"Mounts": [{"source": "~/tao/data", "destination": "/workspace/data", "read_only": true},'
        ' {"source": "results", "destination": "/workspace/results"}]}'
    )
    argv = ["model", "dino", "train", "--volume", "/srv/coco:/workspace/coco:ro"]
    plan = launch.plan_launch(parse_task_argv(argv, TASKS), config, TASKS, LaunchOptions(dry_run=True), None)
    assert plan.spec.mounts == (
        BoundMount("/home/tester/tao/data", "/workspace/data", read_only=True),
        BoundMount(f"{tmp_path}/results", "/workspace/results"),
        BoundMount("/srv/coco", "/workspace/coco", read_only=True),
    )


def test_remote_dry_run_shows_mount_sources_as_written(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/home/tester")
    config = _config(
        '{"Mounts": [{"source": "~/tao/data", "destination": "/workspace/data"},'
        ' {"source": "results", "destination": "/workspace/results"}]}'
    )
    plan = _plan(["dino", "train"], config, host="gpu1")
    assert plan.host == "gpu1"
    assert plan.spec.mounts == (
        BoundMount("~/tao/data", "/workspace/data"),
        BoundMount("results", "/workspace/results"),
    )


def test_volume_onto_a_destination_of_the_mounts_file_is_a_usage_error() -> None:
    config = _config('{"Mounts": [{"source": "/srv/data", "destination": "/workspace/data"}]}')
    with pytest.raises(UsageError) as info:
        _plan(["model", "dino", "train", "--volume", "/other:/workspace/data/"], config)
    assert str(info.value) == "two mounts have the destination /workspace/data/"


def test_plan_carries_env_names_values_secrets_and_docker_options() -> None:
    config = _config(
        '{"Envs": [{"variable": "NGC_API_KEY", "value": "nvapi-s3cr3t"},'
        ' {"variable": "CUDA_DEVICE_ORDER", "value": "PCI_BUS_ID"},'
        ' {"variable": "WANDB_API_KEY", "from_env": "MY_WANDB"}],'
        ' "DockerOptions": {"shm_size": "16G", "network": "host"}}',
        {"MY_WANDB": "wandb-xyz"},
    )
    plan = _plan(["dino", "train"], config)
    assert plan.spec.env_names == ("NGC_API_KEY", "CUDA_DEVICE_ORDER", "WANDB_API_KEY")
    assert plan.env_values == {
        "NGC_API_KEY": "nvapi-s3cr3t",
        "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
        "WANDB_API_KEY": "wandb-xyz",
    }
    assert plan.secret_names == frozenset({"NGC_API_KEY", "WANDB_API_KEY"})
    assert (plan.spec.options.shm_size, plan.spec.options.network) == ("16G", "host")


def test_unset_from_env_variable_stops_the_plan() -> None:
    config = _config('{"Envs": [{"variable": "WANDB_API_KEY", "from_env": "MY_WANDB"}]}')
    with pytest.raises(ConfigError):
        _plan(["dino", "train"], config)


def test_bad_gpus_option_stops_the_plan() -> None:
    with pytest.raises(UsageError):
        _plan(["dino", "train"], gpus="0")


def test_gpus_and_detach_reach_the_run_spec() -> None:
    spec = _plan(["dino", "train"], gpus="device=0,2", detach=True).spec
    assert (spec.gpus, spec.detach) == ("device=0,2", True)


@pytest.mark.parametrize(
    ("terminal", "tty_option", "tty"),
    [
        (True, None, True),
        (False, None, False),
        (True, False, False),
        (False, False, False),
        (True, True, True),
        (False, True, False),
    ],
)
def test_tty_only_with_a_terminal_and_never_when_docker_options_tty_is_false(
    terminal: bool, tty_option: bool | None, tty: bool
) -> None:
    config = MountsConfig(path=MOUNTS_PATH, options=DockerOptions(tty=tty_option))
    assert _plan(["dino", "train"], config, terminal=terminal).spec.tty is tty


def test_task_without_subtask_opens_an_interactive_shell_on_a_terminal() -> None:
    spec = _plan(["dino"], terminal=True).spec
    assert (spec.command, spec.interactive, spec.tty) == (INTERACTIVE_SHELL, True, True)
    assert spec.command == ("/bin/sh", "-c", "command -v bash >/dev/null 2>&1 && exec bash || exec sh")
    assert dict(spec.labels)["taoremote.command"] == "(interactive shell)"


def test_task_without_subtask_and_without_a_terminal_is_a_usage_error() -> None:
    with pytest.raises(UsageError) as info:
        _plan(["dino"], terminal=False)
    assert str(info.value) == (
        "`dino` with no subtask opens an interactive shell, which needs a terminal "
        "(stdin and stdout are not one here); give a subtask, or `dino run CMD...`"
    )


def test_every_launch_plan_gets_a_fresh_job_id_the_time_and_the_user() -> None:
    request, opts = parse_task_argv(["dino", "train"], TASKS), LaunchOptions(dry_run=True)
    plans = [launch.plan_launch(request, NO_CONFIG, TASKS, opts, None) for _ in range(5)]
    assert len({p.spec.job_id for p in plans}) == 5
    assert all(re.fullmatch(r"[0-9a-f]{8}", p.spec.job_id) for p in plans)
    labels = dict(plans[0].spec.labels)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", labels["taoremote.started"])
    assert labels["taoremote.user"] == launch.local_user() != ""


# ---------------------------------------------------------------------------------------------- describe_plan


SPEC = RunSpec(
    image="nvcr.io/nvidia/tao/tao-toolkit:5.0.0-tf1.15.5",
    command=("detectnet_v2", "train", "-e", "/workspace/specs/train.txt"),
    job_id="0a1b2c3d",
    task="detectnet_v2",
    mounts=(BoundMount("/srv/data", "/workspace/data", read_only=True),),
    env_names=("NGC_API_KEY", "CUDA_DEVICE_ORDER"),
    labels=(("taoremote.task", "detectnet_v2"),),
)
VALUES = {"NGC_API_KEY": "nvapi-s3cr3t", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}


def _described(host: str, *, values: dict[str, str] = VALUES, notes: tuple[str, ...] = ()) -> str:
    spec = SPEC if values else RunSpec(**{**SPEC.__dict__, "env_names": ()})
    plan = LaunchPlan(
        spec=spec, env_values=values, secret_names=frozenset({"NGC_API_KEY"}), host=host, notes=notes
    )
    return describe_plan(plan)


def test_local_dry_run_shows_env_values_in_comments_with_secrets_masked() -> None:
    assert _described("local") == (
        "# host: local\n"
        "# job: taoremote-detectnet_v2-0a1b2c3d\n"
        "# env values reach the container through a 0600 --env-file in a private temp dir, "
        "deleted once it exists:\n"
        "#   NGC_API_KEY=****\n"
        "#   CUDA_DEVICE_ORDER=PCI_BUS_ID\n"
        "docker run --rm --init "
        "--name taoremote-detectnet_v2-0a1b2c3d --label taoremote.job=0a1b2c3d "
        "--label taoremote.task=detectnet_v2 "
        "--gpus all -v /srv/data:/workspace/data:ro --env-file '<env-file>' "
        "nvcr.io/nvidia/tao/tao-toolkit:5.0.0-tf1.15.5 detectnet_v2 train -e /workspace/specs/train.txt"
    )


def test_remote_dry_run_shows_an_uploaded_env_file_and_masked_values_in_comments() -> None:
    lines = _described("gpu1").splitlines()
    assert lines[:5] == [
        "# host: gpu1",
        "# job: taoremote-detectnet_v2-0a1b2c3d",
        "# env values reach the container through a 0600 --env-file uploaded over SFTP, "
        "deleted once it exists:",
        "#   NGC_API_KEY=****",
        "#   CUDA_DEVICE_ORDER=PCI_BUS_ID",
    ]
    assert len(lines) == 6
    assert lines[5].startswith("docker run --rm --init --name taoremote-detectnet_v2-0a1b2c3d ")
    assert " --env-file '<env-file>' " in lines[5]
    assert lines[5].endswith(
        " nvcr.io/nvidia/tao/tao-toolkit:5.0.0-tf1.15.5 detectnet_v2 train -e /workspace/specs/train.txt"
    )


def test_remote_dry_run_command_has_no_e_flags_because_values_travel_in_the_env_file() -> None:
    command = _described("gpu1").splitlines()[-1]
    assert "-e NGC_API_KEY" not in command
    assert "-e CUDA_DEVICE_ORDER" not in command


@pytest.mark.parametrize("host", ["local", "gpu1"])
def test_secret_value_never_appears_in_the_dry_run(host: str) -> None:
    assert "nvapi-s3cr3t" not in _described(host)


def test_dry_run_without_env_values_is_the_bare_command_locally_and_remotely() -> None:
    expected_command = (
        "docker run --rm --init --name taoremote-detectnet_v2-0a1b2c3d --label taoremote.job=0a1b2c3d "
        "--label taoremote.task=detectnet_v2 --gpus all -v /srv/data:/workspace/data:ro "
        "nvcr.io/nvidia/tao/tao-toolkit:5.0.0-tf1.15.5 detectnet_v2 train -e /workspace/specs/train.txt"
    )
    assert _described("local", values={}).splitlines()[2:] == [expected_command]
    assert _described("gpu1", values={}).splitlines()[2:] == [expected_command]


def test_dry_run_ends_with_the_plans_notes() -> None:
    text = _described("local", notes=("--gpus auto:1: chose GPU 3 (least loaded)",))
    assert text.splitlines()[-1] == "# note: --gpus auto:1: chose GPU 3 (least loaded)"


def test_secret_flag_comes_from_the_mounts_file_not_only_from_the_name() -> None:
    config = MountsConfig(
        path=MOUNTS_PATH,
        envs=(
            EnvVar("NGC_ORG", "nvidia", secret=True),
            EnvVar("CLEARML_API_ACCESS_KEY", "visible-on-purpose", secret=False),
        ),
    )
    text = describe_plan(_plan(["dino", "train"], config))
    assert "#   NGC_ORG=****" in text
    assert "#   CLEARML_API_ACCESS_KEY=visible-on-purpose" in text
    assert "NGC_ORG=nvidia" not in text


# ------------------------------------------------------------------------------------------- after the probe

# The captured probe (tests/unit/captures.py): driver 535.86.10 (CUDA 12.2), two H100s by --query-gpu (GPU 0
# busy, GPU 1 idle), an image env of CUDA 12.8; the paths below replace its path records.
CUDA_12_1_IMAGE = '["PATH=/usr/bin","CUDA_VERSION=12.1.0","NVIDIA_REQUIRE_CUDA=cuda>=12.1"]\n'
CUDA_12_8_IMAGE = '["PATH=/usr/bin","CUDA_VERSION=12.8.0.038","NVIDIA_REQUIRE_CUDA=cuda>=9.0","X=a=b"]\n'
MOUNTS = _config(
    '{"Mounts": [{"source": "~/data", "destination": "/workspace/data", "read_only": true},'
    ' {"source": "~/results", "destination": "/workspace/results"}]}'
)
HOME = "/home/u"


def _path(given: str, *, exists: bool = True, is_dir: bool = True, non_empty: bool = False) -> str:
    flags = f"exists={int(exists)} dir={int(is_dir)} nonempty={int(non_empty)}"
    return f"@@taoremote:path {flags}@@\n{given}\n{given.replace('~', HOME, 1)}\n"


def _probe_text(*paths: str, image: str | None = CUDA_12_1_IMAGE) -> str:
    """The captured probe with these path records and this image env (None: the image is not on the host)."""
    text = CAPTURED_PROBE
    if image is None:
        text = swap_section(text, "image", "Error: No such image\n", "@@taoremote:end image rc=1@@")
    else:
        text = swap_section(text, "image", image, "@@taoremote:end image rc=0@@")
    head = text[: text.index("@@taoremote:path ")]
    return head + "".join(paths) + "@@taoremote:end-of-probe@@\n"


MOUNTED = (_path("~/data", non_empty=True), _path("~/results"))
TRAIN = ["model", "dino", "train", "-e", "/workspace/data/spec.yaml", "results_dir=/workspace/results/exp1"]


def _probed(argv: list[str] = TRAIN, *paths: str, host: str = "gpu1", **options: object) -> LaunchPlan:
    prepared = _prepared(argv, MOUNTS, host=host, **options)
    return _finish(prepared, _probe_text(*(paths or MOUNTED)), host=host)


def test_the_probe_asks_for_every_mount_source_and_the_host_paths_of_the_path_args() -> None:
    argv = probe_argv(_prepared(TRAIN, MOUNTS, host="gpu1"))
    assert argv[:2] == ("sh", "-c")
    assert argv[-5:] == (
        "nvcr.io/nvidia/tao/tao-toolkit:6.26.3-pyt",
        "~/data",
        "~/results",
        "~/data/spec.yaml",
        "~/results/exp1",
    )


def test_after_the_probe_mounts_are_bound_to_the_sources_the_host_resolved() -> None:
    plan = _probed()
    assert plan.spec.mounts == (
        BoundMount(f"{HOME}/data", "/workspace/data", read_only=True),
        BoundMount(f"{HOME}/results", "/workspace/results"),
    )
    assert (plan.host, plan.spec.gpus, plan.image_present, plan.warnings) == ("gpu1", "all", True, ())


def test_a_driver_that_can_run_the_image_passes_the_verdict() -> None:
    # CUDA 12.1 on a 12.2 driver: nothing to say (the refusal of the same host: the test below)
    plan = _probed(gpus="all")
    assert (plan.spec.gpus, plan.notes) == ("all", ())


def test_a_driver_too_old_for_the_image_is_refused_naming_both_versions() -> None:
    prepared = _prepared(TRAIN, MOUNTS, host="gpu1")
    probe = _probe_text(*MOUNTED, image=CUDA_12_8_IMAGE)
    with pytest.raises(PreflightError) as info:
        _finish(prepared, probe, host="gpu1")
    assert str(info.value).startswith(
        "host gpu1: NVIDIA driver 535.86.10 supports CUDA 12.2, but image "
        "nvcr.io/nvidia/tao/tao-toolkit:6.26.3-pyt needs CUDA 12.8"
    )
    assert info.value.exit_code == 69


def test_no_preflight_and_no_gpus_skip_the_verdict() -> None:
    old_driver_probe = _probe_text(*MOUNTED, image=CUDA_12_8_IMAGE)
    for options in ({"preflight": False}, {"gpus": "none"}):
        prepared = _prepared(TRAIN, MOUNTS, host="gpu1", **options)
        assert _finish(prepared, old_driver_probe, host="gpu1").notes == ()


def test_an_image_not_on_the_host_is_judged_from_the_bundled_table_and_pulled_later() -> None:
    prepared = _prepared(TRAIN, MOUNTS, host="gpu1", image="nvcr.io/nvidia/tao/tao-toolkit:5.0.0-tf1.15.5")
    plan = _finish(prepared, _probe_text(*MOUNTED, image=None), host="gpu1")
    assert plan.image_present is False


def test_auto_gpus_choose_the_least_loaded_gpu_after_the_probe() -> None:
    plan = _probed(gpus="auto:1")
    assert plan.spec.gpus == "device=1"
    assert dict(plan.spec.labels)["taoremote.gpus"] == "device=1"
    assert plan.notes[0] == "--gpus auto:1: chose GPU 1 (least loaded)"


def test_auto_gpus_choose_even_without_the_preflight() -> None:
    plan = _probed(gpus="auto:2", preflight=False)
    assert (plan.spec.gpus, plan.notes) == ("device=0,1", ("--gpus auto:2: chose GPU 0, 1 (least loaded)",))


def test_auto_asking_for_more_gpus_than_the_host_has_is_refused() -> None:
    with pytest.raises(PreflightError) as info:
        _probed(gpus="auto:3")
    assert str(info.value) == "--gpus auto:3 needs 3 GPUs, but the host has 2"


def test_a_mount_source_missing_on_the_host_is_named_with_its_index() -> None:
    with pytest.raises(PreflightError) as info:
        _probed(TRAIN, _path("~/data"), _path("~/results", exists=False, is_dir=False))
    assert str(info.value) == "mount source missing on host gpu1: Mounts[1] ~/results -> /workspace/results"
    assert info.value.exit_code == 69


def test_a_mount_source_missing_on_this_machine_says_this_machine() -> None:
    prepared = _prepared(["model", "dino", "train", "--volume", "/srv/gone:/w/gone"], MOUNTS)
    probe = _probe_text(*MOUNTED, _path("/srv/gone", exists=False, is_dir=False))
    with pytest.raises(PreflightError) as info:
        _finish(prepared, probe, host="local")
    assert str(info.value) == "mount source missing on this machine: Mounts[2] /srv/gone -> /w/gone"


def test_a_missing_spec_file_stops_the_launch_unless_the_preflight_is_off() -> None:
    spec = _path("~/data/spec.yaml", exists=False, is_dir=False)
    with pytest.raises(PreflightError) as info:
        _probed(TRAIN, *MOUNTED, spec)
    assert str(info.value) == (
        f"spec file /workspace/data/spec.yaml does not exist: nothing at {HOME}/data/spec.yaml on the host "
        "(--no-preflight launches anyway)"
    )
    plan = _probed(TRAIN, *MOUNTED, spec, preflight=False)
    assert plan.warnings == (
        f"spec file /workspace/data/spec.yaml does not exist: nothing at {HOME}/data/spec.yaml on the host",
    )


def test_a_non_empty_results_dir_is_a_warning_that_clean_results_takes_back() -> None:
    results = _path("~/results/exp1", non_empty=True)
    plan = _probed(TRAIN, *MOUNTED, _path("~/data/spec.yaml", is_dir=False), results)
    assert plan.results is not None
    assert (plan.results.source, plan.results.below) == ("~/results", "exp1")
    assert len(plan.warnings) == 1
    assert plan.warnings[0].startswith("results directory /workspace/results/exp1 ")
    cleaned = without_results_warning(plan)
    assert (cleaned.warnings, cleaned.results) == ((), None)


def test_without_results_warning_keeps_every_other_warning_even_one_that_reads_alike() -> None:
    plan = _probed(TRAIN, *MOUNTED, _path("~/results/exp1", non_empty=True))
    look_alike = "results directory /elsewhere is mentioned by the mounts file"
    plan = LaunchPlan(**{**plan.__dict__, "warnings": (look_alike, *plan.warnings)})
    assert without_results_warning(plan).warnings == (look_alike,)


def test_labels_after_the_probe_use_the_given_clock_user_and_id() -> None:
    spec = _probed(gpus="auto:1").spec
    assert spec.job_id == JOB_ID
    assert spec.labels == (
        ("taoremote.task", "dino"),
        ("taoremote.command", "dino train -e /workspace/data/spec.yaml results_dir=/workspace/results/exp1"),
        ("taoremote.gpus", "device=1"),
        ("taoremote.started", "2025-03-04T05:06:07Z"),
        ("taoremote.user", "tester"),
        ("taoremote.results", "/home/u/results/exp1"),  # results_dir=, on the host: `list` reads it
    )


def test_an_interactive_shell_without_a_terminal_is_refused_after_the_probe_too() -> None:
    prepared = _prepared(["model", "dino"], MOUNTS, host="gpu1", terminal=False)
    with pytest.raises(UsageError) as info:
        _finish(prepared, _probe_text(*MOUNTED), host="gpu1")
    assert str(info.value).startswith("`dino` with no subtask opens an interactive shell, which needs a")
    assert info.value.exit_code == 2
    prepared = _prepared(["model", "dino"], MOUNTS, host="gpu1", terminal=True)
    on_a_terminal = _finish(prepared, _probe_text(*MOUNTED), host="gpu1")
    assert (on_a_terminal.spec.command, on_a_terminal.spec.tty) == (INTERACTIVE_SHELL, True)


def test_prepare_refuses_bad_input_before_any_host_is_asked() -> None:
    with pytest.raises(UsageError):
        _prepared(["dino", "train"], gpus="0")
    with pytest.raises(UsageError):
        _prepared(["model", "dino", "train", "--volume", "/x:/workspace/data"], MOUNTS)
