"""doctor.py's pure parts over real captures: listening ports, image environments, the image list."""

from __future__ import annotations

from pathlib import Path

from taoremote.doctor import (
    build_images_env_argv,
    build_listening_ports_argv,
    parse_images_env,
    parse_listening_ports,
    task_images,
)
from taoremote.tasks import ImageRef

DATA = Path(__file__).resolve().parents[1] / "data"
PROC_NET_TCP = (DATA / "proc-net-tcp.txt").read_text()
PROC_NET_TCP6 = (DATA / "proc-net-tcp6.txt").read_text()


# ---------------------------------------------------------------------------------------------- ports


def test_listening_ports_argv_reads_both_proc_files_with_no_ss_or_netstat() -> None:
    assert build_listening_ports_argv() == ("sh", "-c", "cat /proc/net/tcp /proc/net/tcp6 2>/dev/null")


def test_listening_ports_from_a_real_proc_net_tcp() -> None:
    # 127.0.0.1:18765 (http.server) and 0.0.0.0:2024 were listening when it was captured
    assert parse_listening_ports(PROC_NET_TCP) == {18765, 2024}


def test_listening_ports_from_tcp_and_tcp6_as_the_argv_concatenates_them() -> None:
    # [::]:18766 was the second http.server
    assert parse_listening_ports(PROC_NET_TCP + PROC_NET_TCP6) == {18765, 2024, 18766}


def test_remote_ports_of_connections_are_not_listening_ports() -> None:
    # the TIME_WAIT rows (st 06) have remote ports 0xE810 = 59408 and 0xB13A = 45370
    ports = parse_listening_ports(PROC_NET_TCP + PROC_NET_TCP6)
    assert 59408 not in ports
    assert 45370 not in ports


def test_only_rows_in_listen_state_count() -> None:
    time_wait_only = "\n".join(line for line in PROC_NET_TCP.splitlines() if " 0A " not in line)
    assert parse_listening_ports(time_wait_only) == set()


def test_no_output_means_no_listening_ports() -> None:
    assert parse_listening_ports("") == set()
    assert parse_listening_ports(PROC_NET_TCP.splitlines()[0]) == set()


# ---------------------------------------------------------------------------------------------- images env


def test_images_env_argv_asks_for_every_image_in_one_shell_call() -> None:
    assert build_images_env_argv(["a:1", "b c:2"]) == (
        "sh",
        "-c",
        'for i in "$@"; do e=$(docker image inspect --format "{{json .Config.Env}}" "$i" 2>/dev/null);'
        ' printf "%s\\t%s\\n" "$i" "$e"; done',
        "sh",
        "a:1",
        "b c:2",
    )


def test_images_env_of_a_real_run_gives_each_images_variables() -> None:
    found = parse_images_env((DATA / "docker" / "images-env.tsv").read_text())
    assert list(found) == [
        "taoremote.test/nvidia/tao/tao-toolkit:5.0.0-tf1.15.5",
        "taoremote.test/cuda:12.8-require",
        "taoremote.test/demo:latest",
        "taoremote.test/absent:1",
    ]
    assert found["taoremote.test/nvidia/tao/tao-toolkit:5.0.0-tf1.15.5"] == {
        "PATH": "/usr/local/bin:/bin",
        "CUDA_VERSION": "12.0.1",
        "NVIDIA_REQUIRE_CUDA": "cuda>=9.0",
        "NVIDIA_VISIBLE_DEVICES": "all",
        "NVIDIA_DRIVER_CAPABILITIES": "compute,utility",
    }
    assert found["taoremote.test/demo:latest"] == {"PATH": "/usr/local/bin:/bin"}


def test_images_env_keeps_a_long_nvidia_require_cuda_value_whole() -> None:
    env = parse_images_env((DATA / "docker" / "images-env.tsv").read_text())[
        "taoremote.test/cuda:12.8-require"
    ]
    assert env is not None
    value = env["NVIDIA_REQUIRE_CUDA"]
    assert value.startswith(
        "cuda>=12.8 brand=unknown,driver>=470,driver<471 brand=grid,driver>=470,driver<471 "
    )
    assert value.endswith(" brand=vws,driver>=565,driver<566 brand=cloudgaming,driver>=565,driver<566")
    assert env["CUDA_VERSION"] == "12.8.1"


def test_image_that_is_not_pulled_has_no_env() -> None:
    found = parse_images_env((DATA / "docker" / "images-env.tsv").read_text())
    assert found["taoremote.test/absent:1"] is None


def test_image_without_any_env_is_pulled_with_an_empty_env() -> None:
    assert parse_images_env((DATA / "docker" / "images-env-null.tsv").read_text()) == {
        "taoremote.test/noenv-capture:1": {}
    }


def test_images_env_of_no_output_is_empty() -> None:
    assert parse_images_env("") == {}


# ---------------------------------------------------------------------------------------------- task images

GROUPS = {
    "model": {
        "detectnet_v2": ImageRef("nvcr.io", "nvidia/tao/tao-toolkit", "5.0.0-tf1.15.5"),
        "dino": ImageRef("nvcr.io", "nvidia/tao/tao-toolkit", "6.26.3-pyt"),
        "ssd": ImageRef("nvcr.io", "nvidia/tao/tao-toolkit", "5.0.0-tf1.15.5"),
    },
    "deploy": {"dino": ImageRef("nvcr.io", "nvidia/tao/tao-toolkit", "6.26.3-deploy")},
    "container_actions": {"mytask": ImageRef(None, "local/mytask", "1.0")},
}


def test_task_images_lists_each_image_once_in_map_order() -> None:
    assert task_images(GROUPS, None) == [
        "nvcr.io/nvidia/tao/tao-toolkit:5.0.0-tf1.15.5",
        "nvcr.io/nvidia/tao/tao-toolkit:6.26.3-pyt",
        "nvcr.io/nvidia/tao/tao-toolkit:6.26.3-deploy",
        "local/mytask:1.0",
    ]


def test_task_images_with_an_override_registry_use_it_for_every_image() -> None:
    assert task_images(GROUPS, "registry.example.com:5000") == [
        "registry.example.com:5000/nvidia/tao/tao-toolkit:5.0.0-tf1.15.5",
        "registry.example.com:5000/nvidia/tao/tao-toolkit:6.26.3-pyt",
        "registry.example.com:5000/nvidia/tao/tao-toolkit:6.26.3-deploy",
        "registry.example.com:5000/local/mytask:1.0",
    ]


def test_task_images_of_an_empty_map_is_empty() -> None:
    assert task_images({}, None) == []
    assert task_images({}, "registry.example.com:5000") == []


def test_empty_override_registry_means_no_override() -> None:
    assert task_images({"deploy": GROUPS["deploy"]}, "") == ["nvcr.io/nvidia/tao/tao-toolkit:6.26.3-deploy"]
