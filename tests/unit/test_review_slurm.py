"""Second reader's checks of the Slurm pieces (issue 10): which `--sbatch` arguments are refused."""

from __future__ import annotations

import pytest

from taoremote.errors import UsageError
from taoremote.slurm_script import check_sbatch_args


@pytest.mark.parametrize(
    "arg", ["--comment=x", "--comm=x", "--output=/o", "-o/o", "-o", "--error=/e", "-e", "--array=0-3", "-a1",
            "--requeue", "--wait", "-W"],
)  # fmt: skip
def test_sbatch_arguments_taoremote_sets_itself_are_refused(arg: str) -> None:
    with pytest.raises(UsageError, match="taoremote sets"):
        check_sbatch_args(["--partition=gpu", arg])


@pytest.mark.parametrize(
    "arg", ["--partition=gpu", "-pgpu", "--time=04:00:00", "--account=a", "-A", "--gres=gpu:1",
            "--export=NONE", "--exclusive", "--wait-all-nodes=1", "--no-requeue", "--qos=high", "--mem=0",
            "-J", "--parsable"],
)  # fmt: skip
def test_other_sbatch_arguments_pass(arg: str) -> None:
    check_sbatch_args([arg])
