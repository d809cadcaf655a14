"""The NVIDIA_REQUIRE_* language, evaluated exactly as `docker run --gpus` evaluates it. PURE.

With `--gpus`, nvidia-container-runtime-hook collects the requirement variables (nvidia-container-toolkit
`internal/config/image/cuda_image.go`) and libnvidia-container's C DSL decides (`src/cli/dsl.c`,
`src/cli/configure.c`). Both are ported here line by line, quirks included, because a preflight that is
stricter or looser than the runtime either blocks launches that would work or lets doomed ones through.
Reference: shared/reference/cuda-preflight.md §1.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

PROPERTIES = ("cuda", "driver", "arch", "brand")
# dsl.c `operators[]`, in its order: the first entry whose first n characters equal the operator run wins,
# which is why a lone "!" means "!=".
OPERATORS = ("=", "!=", "<", "<=", ">", ">=")
_OP_CHARS = "<>=!"
_EXPR_MAX = 128  # dsl.c EXPR_MAX: a false factor whose "%s %s %s" rendering does not fit is an error
_UINTMAX = 2**64 - 1
_VERSION_CHARS = set("0123456789.")
CUDA_REQUIRE_PREFIX = "cuda>="
UNSATISFIED_HINT = ", please update your driver to a newer version, or use an earlier cuda container"
INVALID_EXPRESSION = "invalid expression"


class InvalidExpressionError(ValueError):
    """libnvidia-container would answer `invalid expression` and refuse to start the container."""


@dataclass(frozen=True, slots=True)
class Device:
    """One GPU as the DSL sees it; None means not known, which the C code treats as satisfied."""

    arch: str | None  # compute capability, "8.6"
    brand: str | None  # lowercase brand token, "tesla", "geforce", "nvidia", ...


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result of one NVIDIA_REQUIRE_* value on one device."""

    satisfied: bool
    invalid: bool
    error: str | None  # libnvidia-container's own message, None when satisfied
    matched_term: str | None  # the first term whose factors all held (evaluation stops there)
    failed_factor: str | None  # the last factor found false
    assumed: tuple[str, ...]  # factors taken as true because the host value was not known


@dataclass(frozen=True, slots=True)
class Requirement:
    variable: str  # "NVIDIA_REQUIRE_CUDA", or "CUDA_VERSION" for the one synthesised for legacy images
    expression: str
    problem: str | None = None  # set when the runtime cannot even build this requirement


def compare_versions(left: str, op: str, right: str) -> bool:
    """dsl_compare_version: numeric per dot component, missing trailing zeros ignored (12.0 = 12)."""
    for side in (left, right):
        if not set(side) <= _VERSION_CHARS:
            raise InvalidExpressionError(f"not a version: {side!r}")
    v1, v2 = left, right
    while v1 and v2:
        n1, rest1 = _leading_number(v1)
        n2, rest2 = _leading_number(v2)
        if n1 != n2:
            if op == "=":
                return False
            if op == "!=":
                return True
            return n1 < n2 if op in ("<", "<=") else n1 > n2
        v1 = rest1.lstrip(".")
        v2 = rest2.lstrip(".")
    v1 = v1.lstrip(".0")
    v2 = v2.lstrip(".0")
    if op == "!=":
        return bool(v1 or v2)
    if op in ("=", "<=", ">=") and not v1 and not v2:
        return True
    if op == "=":
        return False
    if op in ("<", "<="):
        return not v1 and bool(v2)
    return bool(v1) and not v2


def _leading_number(text: str) -> tuple[int, str]:
    digits = len(text) - len(text.lstrip("0123456789"))
    if digits == 0:
        raise InvalidExpressionError(f"not a version: {text!r}")
    number = int(text[:digits])
    if number >= _UINTMAX:  # strtoumax saturates, and the C code rejects the saturated value
        raise InvalidExpressionError(f"version component too large: {text!r}")
    return number, text[digits:]


def split_factor(factor: str) -> tuple[str, str, str]:
    """evaluate_rule's parsing: NAME is everything before the first of <>=!, OP the maximal run of them."""
    name_len = next((i for i, ch in enumerate(factor) if ch in _OP_CHARS), len(factor))
    if name_len == 0:
        raise InvalidExpressionError(f"no property name in {factor!r}")
    rest = factor[name_len:]
    run_len = len(rest) - len(rest.lstrip(_OP_CHARS))
    if run_len == 0:
        raise InvalidExpressionError(f"no operator in {factor!r}")
    run = rest[:run_len]
    op = next((o for o in OPERATORS if len(o) >= run_len and o[:run_len] == run), None)
    value = rest[run_len:]
    if op is None or not value:
        raise InvalidExpressionError(f"bad operator or empty value in {factor!r}")
    return factor[:name_len], op, value


def evaluate(expression: str, *, driver: str | None, cuda: str | None, device: Device | None) -> Outcome:
    """dsl_evaluate: space-separated terms are ORed, comma-separated factors ANDed, left to right and lazily.

    `device` None means no GPU is visible: arch and brand factors then hold (configure.c). Terms after the
    first satisfied one, and factors after the first false one, are never parsed: errors there go unnoticed.
    """
    ret = True
    matched: str | None = None
    failed: str | None = None
    assumed: list[str] = []
    try:
        for term in expression.split(" "):
            if not term:
                continue
            broke = False
            for factor in term.split(","):
                if not factor:
                    continue
                ret = _evaluate_factor(factor, driver, cuda, device, assumed)
                if not ret:
                    failed = factor
                    broke = True
                    break
            if not broke:
                # A term of only empty factors ends the loop too, keeping the previous term's result.
                matched = term if ret else None
                break
    except InvalidExpressionError:
        return Outcome(False, True, INVALID_EXPRESSION, None, None, tuple(assumed))
    if ret:
        return Outcome(True, False, None, matched, None, tuple(assumed))
    return Outcome(False, False, unsatisfied_message(expression), None, failed, tuple(assumed))


def unsatisfied_message(expression: str) -> str:
    """The C message shows only the value cut at its first space, never the brand clauses."""
    first = expression.split(" ", 1)[0]
    hint = UNSATISFIED_HINT if first.startswith(CUDA_REQUIRE_PREFIX) else ""
    return f"unsatisfied condition: {first}{hint}"


def _evaluate_factor(
    factor: str, driver: str | None, cuda: str | None, device: Device | None, assumed: list[str]
) -> bool:
    name, op, value = split_factor(factor)
    prop = name.lower()  # str_case_equal: "CUDA>=12.3" (real arm64 12.3 images) is enforced
    if prop not in PROPERTIES:
        raise InvalidExpressionError(f"unknown property {name!r}")
    if prop in ("cuda", "driver"):
        host_value = cuda if prop == "cuda" else driver
        if host_value is None:
            assumed.append(factor)
            return True
        result = compare_versions(host_value, op, value)
    elif device is None:
        return True
    elif prop == "arch":
        if device.arch is None:
            assumed.append(factor)
            return True
        result = compare_versions(device.arch, op, value)
    else:
        if device.brand is None:
            assumed.append(factor)
            return True
        if op not in ("=", "!="):
            raise InvalidExpressionError(f"brand only supports = and !=: {factor!r}")
        result = (device.brand.lower() == value.lower()) == (op == "=")
    if not result and len(f"{name} {op} {value}") >= _EXPR_MAX:
        raise InvalidExpressionError(f"factor too long to report: {factor!r}")
    return result


def parse_bool(value: str | None) -> bool | None:
    """Go strconv.ParseBool, which the toolkit uses for NVIDIA_DISABLE_REQUIRE; None when not a boolean."""
    if value in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if value in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    return None


# golang.org/x/mod/semver, which cuda_image.go uses to read a legacy image's CUDA_VERSION: shorthand "v12" and
# "v12.2" are valid, but pre-release/build suffixes only after a full major.minor.patch, and no leading zeros.
_NUM = r"(?:0|[1-9][0-9]*)"
_IDENT = r"[0-9A-Za-z-]+"
_PRE_IDENT = rf"(?:{_NUM}|[0-9]*[A-Za-z-][0-9A-Za-z-]*)"
_GO_SEMVER = re.compile(
    rf"v({_NUM})(?:\.({_NUM})(?:\.{_NUM}(?:-{_PRE_IDENT}(?:\.{_PRE_IDENT})*)?(?:\+{_IDENT}(?:\.{_IDENT})*)?)?)?"
)


def legacy_cuda_requirement(cuda_version: str) -> str | None:
    """cuda>=MAJOR.MINOR as the hook synthesises it, or None where the hook fails ("invalid CUDA version")."""
    match = _GO_SEMVER.fullmatch("v" + cuda_version.removeprefix("v"))
    if match is None:
        return None
    return f"cuda>={match.group(1)}.{match.group(2) or '0'}"


def requirements_from_env(
    env: Mapping[str, str], *, host_disable_require: bool = False
) -> tuple[Requirement, ...]:
    """The --require values the hook passes for this environment (GetRequirements), sorted by variable.

    The hook iterates a Go map, so its order is random; only which error is reported depends on order.
    `host_disable_require` is `disable-require = true` in /etc/nvidia-container-runtime/config.toml.
    """
    if host_disable_require or parse_bool(env.get("NVIDIA_DISABLE_REQUIRE")):
        return ()
    reqs = [
        Requirement(name, value)
        for name, value in sorted(env.items())
        if name.startswith("NVIDIA_REQUIRE_") and not name.startswith("NVIDIA_REQUIRE_JETPACK")
    ]
    cuda_version = env.get("CUDA_VERSION", "")
    # IsLegacy: CUDA_VERSION without NVIDIA_REQUIRE_CUDA, where an empty NVIDIA_REQUIRE_CUDA counts as unset.
    if cuda_version and not env.get("NVIDIA_REQUIRE_CUDA"):
        expression = legacy_cuda_requirement(cuda_version)
        if expression is None:
            problem = (
                f"the image sets CUDA_VERSION={cuda_version} but no NVIDIA_REQUIRE_CUDA, and "
                "nvidia-container-toolkit cannot parse that version, so the container will not start "
                "('failed to get requirements')"
            )
            reqs.append(Requirement("CUDA_VERSION", "", problem))
        else:
            reqs.append(Requirement("CUDA_VERSION", expression))
    return tuple(reqs)


def runtime_cuda_version(smi_cuda: str) -> str:
    """The host `cuda` value libnvidia-container compares: it formats cuDriverGetVersion as v/1000 . v%100/10.

    nvidia-smi prints (v%1000)/10 instead; the two differ once a minor version reaches 10 (13.10 -> "13.0").
    """
    match = re.fullmatch(r"(\d+)\.(\d+)", smi_cuda)
    if match is None:
        return smi_cuda
    encoded = int(match.group(1)) * 1000 + int(match.group(2)) * 10
    return f"{encoded // 1000}.{encoded % 100 // 10}"
