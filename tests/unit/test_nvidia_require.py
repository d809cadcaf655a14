"""The NVIDIA_REQUIRE_* evaluator against libnvidia-container's semantics (cuda-preflight.md §1-§3)."""

from __future__ import annotations

import hashlib

import pytest

from taoremote.nvidia_require import (
    Device,
    InvalidExpressionError,
    Requirement,
    compare_versions,
    evaluate,
    legacy_cuda_requirement,
    parse_bool,
    requirements_from_env,
    runtime_cuda_version,
    split_factor,
    unsatisfied_message,
)
from tests.unit.cuda_images import IMAGE_ROWS, cuda_image, require_cuda

HINT = ", please update your driver to a newer version, or use an earlier cuda container"

# --- version comparison (dsl_compare_version) ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("left", "op", "right", "expected"),
    [
        # the worked results of §1.4, host value on the left
        ("470.57.02", ">=", "470", True),
        ("470.57.02", "<", "471", True),
        ("470.57.02", "=", "470", False),
        ("12.0", "=", "12", True),
        ("12.10", ">", "12.9", True),
        ("12.2", ">=", "12.4", False),
        ("12.05", "=", "12.5", True),
        # numeric, not lexical, in every position
        ("12.9", "<", "12.10", True),
        ("535.104.05", ">", "535.54.03", True),
        ("9.0", "<", "10.0", True),
        # trailing zeros are ignored, any other extra component makes the longer side greater
        ("12.0.0", "=", "12", True),
        ("12.0.00", "<=", "12", True),
        ("12.0.05", ">", "12", True),
        ("12", "<", "12.0.1", True),
        ("12", ">=", "12.0.1", False),
        ("470", "!=", "470.0", False),
        ("470.1", "!=", "470", True),
        ("535", "<", "536", True),
        ("536", "<", "536", False),
        ("536", "<=", "536", True),
        ("12..5", "=", "12.5", True),  # runs of dots are skipped
    ],
)
def test_compare_versions_matches_libnvidia_container(left: str, op: str, right: str, expected: bool) -> None:
    assert compare_versions(left, op, right) is expected


@pytest.mark.parametrize(
    ("left", "right"),
    [
        ("12.2", "12.x"),
        ("12.2", "v12"),
        ("12.2", ".5"),
        ("12.2", "-1"),
        ("12.2", "1 2"),
        ("12.2", "18446744073709551615"),
    ],
)
def test_compare_versions_rejects_what_the_c_code_rejects(left: str, right: str) -> None:
    with pytest.raises(InvalidExpressionError):
        compare_versions(left, ">=", right)


# --- factor parsing (evaluate_rule) -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("factor", "expected"),
    [
        ("cuda>=12.4", ("cuda", ">=", "12.4")),
        ("driver<536", ("driver", "<", "536")),
        ("brand=tesla", ("brand", "=", "tesla")),
        ("arch!=8.6", ("arch", "!=", "8.6")),
        ("CUDA>=12.3", ("CUDA", ">=", "12.3")),
        (
            "cuda!12.2",
            ("cuda", "!=", "12.2"),
        ),  # strncmp quirk: a lone "!" matches "!=" on its first character
        ("x<=1", ("x", "<=", "1")),
    ],
)
def test_split_factor(factor: str, expected: tuple[str, str, str]) -> None:
    assert split_factor(factor) == expected


@pytest.mark.parametrize(
    "factor", ["cuda", ">=12.4", "cuda>=", "cuda==12", "cuda=>12", "cuda<>12", "cuda!!12"]
)
def test_split_factor_rejects_malformed_factors(factor: str) -> None:
    with pytest.raises(InvalidExpressionError):
        split_factor(factor)


# --- expressions (dsl_evaluate) -----------------------------------------------------------------------------

T4 = Device("7.5", "tesla")
RTX4090 = Device("8.9", "geforce")
H100 = Device("9.0", "nvidia")


def run(expression: str, driver: str | None, cuda: str | None, device: Device | None = T4) -> bool:
    outcome = evaluate(expression, driver=driver, cuda=cuda, device=device)
    assert not outcome.invalid, outcome
    return outcome.satisfied


def test_space_is_or_and_comma_is_and() -> None:
    assert run("cuda>=13.0 driver>=535", "535.104.05", "12.2")  # second term holds
    assert not run("cuda>=12.0,driver>=545", "535.104.05", "12.2")  # one factor of the only term fails
    assert run("cuda>=12.0,driver>=535", "535.104.05", "12.2")
    # the documented example: NVIDIA_REQUIRE_CUDA "cuda>=11.0 driver>=450"
    assert run("cuda>=11.0 driver>=450", "450.80.02", "11.0")
    assert not run("cuda>=11.0 driver>=450", "440.33.01", "10.2")


def test_evaluation_stops_at_first_true_term_so_later_garbage_is_never_parsed() -> None:
    outcome = evaluate("cuda>=12.0 nonsense", driver="535.104.05", cuda="12.2", device=T4)
    assert outcome.satisfied and outcome.matched_term == "cuda>=12.0"
    outcome = evaluate("cuda>=13.0 nonsense", driver="535.104.05", cuda="12.2", device=T4)
    assert outcome.invalid and outcome.error == "invalid expression"


def test_unknown_property_is_skipped_only_where_evaluation_never_reaches_it() -> None:
    # after a false factor of the same term: never parsed, and the next term decides
    assert run("cuda>=13.0,foo=1 cuda>=12.0", "535.104.05", "12.2")
    # reached: libnvidia-container knows only cuda/driver/arch/brand and answers "invalid expression"
    outcome = evaluate("foo=1", driver="535.104.05", cuda="12.2", device=T4)
    assert (outcome.satisfied, outcome.invalid, outcome.error) == (False, True, "invalid expression")
    outcome = evaluate("cuda>=12.0,jetpack>=5", driver="535.104.05", cuda="12.2", device=T4)
    assert outcome.invalid


def test_factor_without_operator_is_invalid_when_reached() -> None:
    assert evaluate("cuda", driver="535.104.05", cuda="12.2", device=T4).invalid
    assert evaluate("cuda>=12.0,tesla", driver="535.104.05", cuda="12.2", device=T4).invalid
    assert run("cuda>=12.0 tesla", "535.104.05", "12.2")  # the first term already held


def test_property_names_are_case_insensitive_but_the_error_hint_is_not() -> None:
    # the arm64 12.3 images really say "CUDA>=12.3"
    outcome = evaluate("CUDA>=12.3", driver="535.104.05", cuda="12.2", device=H100)
    assert not outcome.satisfied and not outcome.invalid
    assert outcome.error == "unsatisfied condition: CUDA>=12.3"
    assert run("CUDA>=12.3", "545.23.06", "12.3")


def test_brand_compares_case_insensitively_and_only_with_equality() -> None:
    assert run("brand=TESLA", "535.104.05", "12.2", T4)
    assert run("brand!=geforce", "535.104.05", "12.2", T4)
    assert not run("brand=tesla", "535.104.05", "12.2", RTX4090)
    assert evaluate("brand<tesla", driver="535.104.05", cuda="12.2", device=T4).invalid


def test_arch_is_compared_as_a_version() -> None:
    assert run("arch>=8.0", "570.86.15", "12.8", H100)
    assert not run("arch>=8.0", "570.86.15", "12.8", T4)
    assert run("arch=9", "570.86.15", "12.8", H100)


def test_without_a_visible_device_arch_and_brand_hold_even_when_malformed() -> None:
    assert run("brand=tesla,arch>=9.0", "535.104.05", "12.2", None)
    outcome = evaluate("brand<x", driver="535.104.05", cuda="12.2", device=None)
    assert outcome.satisfied  # check_device_brand returns before looking at the operator


def test_unknown_host_values_count_as_met_and_are_reported() -> None:
    outcome = evaluate("cuda>=12.8,driver>=570", driver=None, cuda=None, device=Device(None, None))
    assert outcome.satisfied and outcome.assumed == ("cuda>=12.8", "driver>=570")
    outcome = evaluate("brand=tesla,arch>=9.0", driver="1", cuda="1", device=Device(None, None))
    assert outcome.satisfied and outcome.assumed == ("brand=tesla", "arch>=9.0")


@pytest.mark.parametrize(
    ("expression", "satisfied"),
    [
        ("", True),
        ("   ", True),
        ("  cuda>=12.0  ", True),
        (",,cuda>=12.0,,", True),
        (", cuda>=99", True),  # a term of only empty factors ends the loop with the previous result (true)
        ("cuda>=99 ,", False),  # ... and after a false term it keeps that false
    ],
)
def test_empty_terms_and_factors_follow_the_c_loop(expression: str, satisfied: bool) -> None:
    assert run(expression, "535.104.05", "12.2") is satisfied


def test_a_false_factor_too_long_to_format_is_an_error() -> None:
    # dsl.c formats a false factor into a 128-byte buffer and fails if it does not fit
    long_value = "1." + "0" * 130  # numerically 1, but 132 characters
    assert evaluate(f"driver={long_value}", driver="535", cuda="12.2", device=T4).invalid
    assert run(f"driver!={long_value}", "535", "12.2")


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("cuda>=12.8 brand=tesla,driver>=535,driver<536", "unsatisfied condition: cuda>=12.8" + HINT),
        ("brand=tesla", "unsatisfied condition: brand=tesla"),
        ("driver>=999 cuda>=99", "unsatisfied condition: driver>=999"),
        ("CUDA>=12.3", "unsatisfied condition: CUDA>=12.3"),
    ],
)
def test_unsatisfied_message_shows_only_the_first_token(expression: str, message: str) -> None:
    assert unsatisfied_message(expression) == message
    assert evaluate(expression, driver="470.57.02", cuda="11.4", device=RTX4090).error == message


# --- real NVIDIA_REQUIRE_CUDA strings of the nvidia/cuda images (§2) ----------------------------------------

# sha256 prefixes of the strings §2 quotes verbatim (12.0.1, 12.3.2 and 12.5.1 come from table rows only)
VERBATIM_SHA256 = {
    "11.8.0": "1a1da6030a79b5d6",
    "12.1.1": "664edcbd2ed7128d",
    "12.2.2": "5e6512412bdd681c",
    "12.4.1": "a544f86a3c07ed51",
    "12.6.3": "8df7d1451b989b90",
    "12.8.1": "a722af4b83f53f73",
    "12.9.1": "1aca9b4cfd809b04",
    "13.0.0": "4423a6770b94f2d4",
}


@pytest.mark.parametrize("version", sorted(VERBATIM_SHA256))
def test_generated_strings_are_the_ones_the_images_set(version: str) -> None:
    assert hashlib.sha256(require_cuda(version).encode()).hexdigest()[:16] == VERBATIM_SHA256[version]


@pytest.mark.parametrize(
    ("image", "driver", "cuda", "device", "satisfied"),
    [
        # the host supports the image's CUDA: the first term decides, whatever the GPU
        ("11.8.0", "520.61.05", "11.8", RTX4090, True),
        ("12.0.1", "525.60.13", "12.0", RTX4090, True),
        ("12.4.1", "550.54.14", "12.4", RTX4090, True),
        ("12.6.3", "560.28.03", "12.6", RTX4090, True),
        ("12.8.1", "570.86.15", "12.8", RTX4090, True),
        ("12.9.1", "575.51.03", "12.9", RTX4090, True),
        ("13.0.0", "580.65.06", "13.0", RTX4090, True),
        ("13.0.0", "610.43.02", "13.3", T4, True),
        ("12.8.1", "580.126.09", "13.0", H100, True),
        # forward compatibility: an older branch listed in the brand clauses
        ("11.8.0", "470.57.02", "11.4", T4, True),
        ("12.4.1", "535.104.05", "12.2", T4, True),  # §3.4: nvidia/cuda:12.4.1 on a T4 with 535 starts
        ("12.2.2", "525.85.12", "12.0", H100, True),
        ("12.8.1", "565.57.01", "12.7", H100, True),
        ("12.9.1", "570.124.06", "12.8", H100, True),
        ("13.0.0", "575.57.08", "12.9", T4, True),
        ("13.0.0", "535.104.05", "12.2", Device("8.0", "unknown"), True),
        # B1 lists GeForce and TITAN too, so the runtime lets them through (CUDA itself fails later)
        ("12.4.1", "535.104.05", "12.2", RTX4090, True),
        ("11.8.0", "470.57.02", "11.4", Device("7.0", "titan"), True),
        # B2 (12.5 on) dropped GeForce/TITAN: §3.4's example, 12.6.3 on a GeForce with 535 is refused
        ("12.6.3", "535.104.05", "12.2", RTX4090, False),
        ("12.8.1", "565.57.01", "12.7", RTX4090, False),
        ("13.0.0", "570.86.15", "12.8", Device("8.6", "geforce"), False),
        # a branch that is not listed
        ("11.8.0", "515.65.01", "11.7", T4, False),  # the 2023 rebuild broke 450/510/515 hosts (toolkit#152)
        ("11.8.0", "450.80.02", "11.0", T4, False),
        ("12.2.2", "530.30.02", "12.1", T4, False),
        ("12.4.1", "545.23.08", "12.3", T4, False),
        ("12.6.3", "555.42.06", "12.5", H100, False),
        ("12.9.1", "470.57.02", "11.4", T4, False),  # 470 dropped in 12.9
        ("13.0.0", "560.35.03", "12.6", T4, False),  # 560 not listed for 13.0
        ("12.1.1", "520.61.05", "11.8", T4, False),
        # no GPU visible: brand holds, so only the driver branch matters
        ("12.6.3", "535.104.05", "12.2", None, True),
        ("12.6.3", "545.23.08", "12.3", None, False),
    ],
)
def test_real_require_strings(
    image: str, driver: str, cuda: str, device: Device | None, satisfied: bool
) -> None:
    outcome = evaluate(require_cuda(image), driver=driver, cuda=cuda, device=device)
    assert not outcome.invalid
    assert outcome.satisfied is satisfied
    if not satisfied:
        assert outcome.error == f"unsatisfied condition: cuda>={IMAGE_ROWS[image][0]}{HINT}"


def test_forward_compat_match_names_the_brand_clause() -> None:
    outcome = evaluate(require_cuda("12.4.1"), driver="535.104.05", cuda="12.2", device=T4)
    assert outcome.matched_term == "brand=tesla,driver>=535,driver<536"
    outcome = evaluate(require_cuda("12.4.1"), driver="550.54.14", cuda="12.4", device=T4)
    assert outcome.matched_term == "cuda>=12.4"


# --- which variables become requirements (GetRequirements) --------------------------------------------------


@pytest.mark.parametrize("value", ["1", "t", "T", "TRUE", "true", "True"])
def test_disable_require_accepts_go_parsebool_true(value: str) -> None:
    env = {"NVIDIA_REQUIRE_CUDA": "cuda>=99.0", "NVIDIA_DISABLE_REQUIRE": value}
    assert requirements_from_env(env) == ()


@pytest.mark.parametrize("value", ["0", "false", "yes", "on", "", " true", "TRUe"])
def test_disable_require_ignores_other_values(value: str) -> None:
    env = {"NVIDIA_REQUIRE_CUDA": "cuda>=99.0", "NVIDIA_DISABLE_REQUIRE": value}
    assert requirements_from_env(env) == (Requirement("NVIDIA_REQUIRE_CUDA", "cuda>=99.0"),)


def test_the_requires_typo_does_not_disable_anything() -> None:
    env = {"NVIDIA_REQUIRE_CUDA": "cuda>=99.0", "NVIDIA_DISABLE_REQUIRES": "true"}
    assert len(requirements_from_env(env)) == 1


def test_host_wide_disable_require() -> None:
    assert requirements_from_env({"NVIDIA_REQUIRE_CUDA": "cuda>=99.0"}, host_disable_require=True) == ()


def test_every_require_variable_except_jetpack_is_collected() -> None:
    env = {
        "NVIDIA_REQUIRE_CUDA": "cuda>=12.4",
        "NVIDIA_REQUIRE_ARCH": "arch>=8.0",
        "NVIDIA_REQUIRE_JETPACK": "csv-mounts=all",
        "NVIDIA_REQUIRE_JETPACK_HOST_MOUNTS": "",
        "NVIDIA_VISIBLE_DEVICES": "all",
    }
    assert requirements_from_env(env) == (
        Requirement("NVIDIA_REQUIRE_ARCH", "arch>=8.0"),
        Requirement("NVIDIA_REQUIRE_CUDA", "cuda>=12.4"),
    )


@pytest.mark.parametrize(
    ("cuda_version", "expected"),
    [
        ("10.0.130", "cuda>=10.0"),
        ("9.2.148", "cuda>=9.2"),
        ("12", "cuda>=12.0"),
        ("12.2", "cuda>=12.2"),
        ("v12.2.2", "cuda>=12.2"),
        ("12.2.2-rc1", "cuda>=12.2"),
        ("12.2.2+build.5", "cuda>=12.2"),
        ("12.2.2.009", None),  # NGC's 4-part form is not semver
        ("12.02.1", None),  # leading zero
        ("12.2-rc1", None),  # pre-release needs a full major.minor.patch
        ("latest", None),
    ],
)
def test_legacy_requirement_uses_go_semver(cuda_version: str, expected: str | None) -> None:
    assert legacy_cuda_requirement(cuda_version) == expected


def test_legacy_image_gets_a_synthesised_cuda_requirement() -> None:
    assert requirements_from_env({"CUDA_VERSION": "10.0.130"}) == (Requirement("CUDA_VERSION", "cuda>=10.0"),)
    # added next to other requirements, and an empty NVIDIA_REQUIRE_CUDA counts as unset (IsLegacy)
    env = {"CUDA_VERSION": "11.0.3", "NVIDIA_REQUIRE_CUDA": "", "NVIDIA_REQUIRE_ARCH": "arch>=7.0"}
    assert requirements_from_env(env) == (
        Requirement("NVIDIA_REQUIRE_ARCH", "arch>=7.0"),
        Requirement("NVIDIA_REQUIRE_CUDA", ""),
        Requirement("CUDA_VERSION", "cuda>=11.0"),
    )
    # an image that sets NVIDIA_REQUIRE_CUDA is not legacy
    env = {"CUDA_VERSION": "12.2.2.009", "NVIDIA_REQUIRE_CUDA": "cuda>=9.0"}
    assert requirements_from_env(env) == (Requirement("NVIDIA_REQUIRE_CUDA", "cuda>=9.0"),)


def test_legacy_image_with_unparsable_cuda_version_cannot_start() -> None:
    (only,) = requirements_from_env({"CUDA_VERSION": "12.2.2.009"})
    assert only.variable == "CUDA_VERSION" and only.problem is not None
    assert "failed to get requirements" in only.problem


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1", True), ("True", True), ("F", False), ("false", False), ("yes", None), (None, None), ("", None)],
)
def test_parse_bool_is_go_strconv(value: str | None, expected: bool | None) -> None:
    assert parse_bool(value) is expected


@pytest.mark.parametrize(
    ("smi", "runtime"),
    [
        ("12.2", "12.2"),
        ("13.0", "13.0"),
        ("13.9", "13.9"),
        ("13.10", "13.0"),
        ("13.12", "13.2"),
        ("weird", "weird"),
    ],
)
def test_runtime_cuda_version_mirrors_the_c_formatting(smi: str, runtime: str) -> None:
    # libnvidia-container prints v%100/10 where NVML prints (v%1000)/10 (§1.3)
    assert runtime_cuda_version(smi) == runtime


@pytest.mark.parametrize(
    ("version", "sha"),
    [("12.4.1", "a544f86a3c07ed51"), ("12.6.3", "8df7d1451b989b90"), ("13.0.0", "4423a6770b94f2d4")],
)
def test_cuda_image_env_is_the_verbatim_string(version: str, sha: str) -> None:
    value = cuda_image(version)["NVIDIA_REQUIRE_CUDA"]
    assert hashlib.sha256(value.encode()).hexdigest()[:16] == sha  # the hashes above
