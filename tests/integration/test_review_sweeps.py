"""Second reader's attacks on `taoremote sweep` (issue 9) against the real dockerd: launches that got no
answer, launches cut between docker's create and start."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.taorun import base_env, taoremote, write_mounts
from tests.integration.test_sweep import BS, TASK, _containers, _env, _name, _status

pytestmark = pytest.mark.usefixtures("test_images", "clean_jobs")


def _slow_docker_run(bin_dir: Path, hang_s: int) -> Path:
    """A `docker` on PATH whose FIRST `docker run -d` only creates the container (as a client killed between
    its create and start leaves it) and then gives no answer for HANG_S seconds; everything else is docker."""
    real = shutil.which("docker")
    flag = bin_dir / ".slow-run"
    flag.write_text("")
    tool = bin_dir / "docker"
    tool.write_text(
        f"#!{sys.executable}\n"
        "import os, sys, time, subprocess\n"
        f"real, flag = {real!r}, {str(flag)!r}\n"
        "args = sys.argv[1:]\n"
        # trials launch in parallel: exactly one run may claim the flag (unlink is the atomic claim)
        "def claimed():\n"
        "    try:\n"
        "        os.unlink(flag)\n"
        "        return True\n"
        "    except FileNotFoundError:\n"
        "        return False\n"
        "if args[:2] == ['run', '-d'] and claimed():\n"
        "    subprocess.run([real, 'create', *args[2:]], stdout=subprocess.DEVNULL)\n"
        f"    time.sleep({hang_s})\n"
        "    sys.exit(1)\n"
        "os.execv(real, [real, *args])\n"
    )
    tool.chmod(0o755)
    return flag


def test_a_launch_that_got_no_answer_is_not_recorded_failed_and_its_created_container_is_started(
    tmp_path: Path,
) -> None:
    env, _ = _env(tmp_path, gpus=2, epochs=1)
    flag = _slow_docker_run(tmp_path / "bin", hang_s=45)  # past the 30 s a docker call may take
    name = _name()
    result = taoremote(["sweep", "run", name, "--param", f"{BS}=8,16", *TASK], env, timeout=150)
    assert not flag.exists()  # the slow launch did happen
    rows = _status(name, env)
    assert [r["state"] for r in rows] == ["succeeded", "succeeded"], (rows, result.stderr)
    assert result.returncode == 0, result.stderr
    containers = _containers(name)
    assert sorted(c["Config"]["Labels"]["taoremote.trial"] for c in containers) == ["0", "1"]  # type: ignore[index]
    assert all(c["State"]["Status"] == "exited" for c in containers), json.dumps(containers)[:500]  # type: ignore[index]


@pytest.mark.usefixtures("slurm_cluster")
@pytest.mark.parametrize(
    "owned",
    ["--comment=mine", "--output=/tmp/elsewhere.out", "-o/tmp/elsewhere.out", "--requeue", "--comm=x"],
)
def test_an_sbatch_argument_that_overrides_what_taoremote_relies_on_is_refused_before_anything_is_submitted(
    tmp_path: Path, owned: str
) -> None:
    """`--sbatch --comment=…` replaced the comment `list`/`stop` find the job by (it ran on, invisible and
    unstoppable), `--output` moved the output `logs` reads, `--requeue` re-runs a task whose env file
    went."""
    (tmp_path / "home").mkdir()
    env = base_env(tmp_path / "home", None, write_mounts(tmp_path / "mounts.json", {"Mounts": []}))
    before = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True).stdout.split()
    result = taoremote(
        ["--slurm", "local", "--sbatch", owned, "-d", "detectnet_v2", "run", "sh", "-c", "sleep 60"], env
    )
    after = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True).stdout.split()
    new = sorted(set(after) - set(before))
    if new:
        subprocess.run(["scancel", *new], capture_output=True)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert len(result.stderr.strip().splitlines()) == 1 and owned.split("=")[0][:6] in result.stderr
    assert not (tmp_path / "home" / ".cache" / "taoremote" / "slurm").exists() or not any(
        (tmp_path / "home" / ".cache" / "taoremote" / "slurm").iterdir()
    )
