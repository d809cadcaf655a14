"""Can this host run this image? The CUDA verdict over what the probe found. PURE.

Nothing here runs a process or reads the environment: callers run the probe (probe.py, one round trip) and
pass its text in; nvidia_smi.py reads the driver, cuda_table.py knows the images, nvidia_require.py decides
NVIDIA_REQUIRE_* as the container runtime does. Facts and their sources: shared/reference/cuda-preflight.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from taoremote import nvidia_require as req
from taoremote.cuda_table import (
    ImageCuda,
    cuda_for_driver,
    image_cuda_from_env,
    image_cuda_from_table,
    major_minor,
    min_driver_for_cuda,
    suggest_image_tag,
)
from taoremote.errors import PreflightError
from taoremote.nvidia_smi import Gpu, HostGpuFacts, parse_nvidia_smi, parse_query_gpu
from taoremote.probe import Probe

# Forward compatibility (brand=...,driver>=N clauses) works only on data-center GPUs (cuda-preflight §3.4).
CONSUMER_BRANDS = frozenset({"geforce", "geforcertx", "titan", "titanrtx"})


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    finding: str  # what was checked and found; when not ok, the problem
    notes: tuple[str, ...] = ()
    fix: str | None = None  # when not ok and we know what to do
    host: str | None = None

    def error(self) -> PreflightError:
        """The refusal to raise when not ok: --no-preflight gets past it."""
        return PreflightError(self.finding, host=self.host, fix=self.fix, skippable=True)

    @property
    def message(self) -> str:
        return str(self.error()) if not self.ok else str(PreflightError(self.finding, host=self.host))


def host_facts(probe: Probe, *, host: str | None = None) -> HostGpuFacts:
    """Driver and CUDA from the nvidia-smi table; per-GPU details from --query-gpu when that worked."""
    facts = parse_nvidia_smi(probe.smi_text, probe.smi_rc, host=host)
    if probe.query_rc == 0:
        try:
            gpus = parse_query_gpu(probe.query_text, fields=probe.query_fields)
        except PreflightError:
            gpus = ()
        if gpus:
            facts = replace(facts, gpus=gpus)
    return facts


def resolve_image_cuda(image_ref: str, probe: Probe) -> ImageCuda:
    """The image's own env when it is on the host, else the bundled table, else unknown."""
    if probe.image_env is not None:
        return image_cuda_from_env(image_ref, probe.image_env)
    return image_cuda_from_table(image_ref) or ImageCuda(image_ref, None, {}, "unknown")


# ------------------------------------------------------------------------------------------------------------
# verdicts


@dataclass(frozen=True, slots=True)
class _Evaluation:
    ok: bool
    requirement: req.Requirement | None = None
    outcome: req.Outcome | None = None
    gpu: Gpu | None = None
    forward_compat: tuple[tuple[Gpu | None, str], ...] = ()
    notes: tuple[str, ...] = ()


def _evaluate(env: Mapping[str, str], facts: HostGpuFacts, host_disable_require: bool) -> _Evaluation:
    notes: list[str] = []
    reqs = req.requirements_from_env(env, host_disable_require=host_disable_require)
    if host_disable_require or req.parse_bool(env.get("NVIDIA_DISABLE_REQUIRE")):
        where = (
            "the host's nvidia-container-runtime config" if host_disable_require else "NVIDIA_DISABLE_REQUIRE"
        )
        notes.append(f"{where} turns off the container runtime's NVIDIA_REQUIRE_* check")
    for requirement in reqs:
        if requirement.problem:
            return _Evaluation(False, requirement, notes=tuple(notes))
    cuda = req.runtime_cuda_version(facts.cuda_version) if facts.cuda_version else None
    if cuda and cuda != facts.cuda_version:
        notes.append(f"libnvidia-container reads host CUDA {facts.cuda_version} as {cuda}")
    targets: list[Gpu | None] = list(facts.gpus) or [None]
    if not facts.gpus and reqs:
        notes.append("no GPU details: arch and brand constraints were taken as met, as the runtime does")
    forward: list[tuple[Gpu | None, str]] = []
    for gpu in targets:
        device = req.Device(gpu.compute_cap, gpu.brand) if gpu else None
        for requirement in reqs:
            outcome = req.evaluate(
                requirement.expression, driver=facts.driver_version, cuda=cuda, device=device
            )
            notes.extend(
                f"{requirement.variable}: {a} assumed met (host value unknown)" for a in outcome.assumed
            )
            if not outcome.satisfied:
                notes.append(
                    "the container runtime would fail with: nvidia-container-cli: requirement error: "
                    f"{outcome.error}"
                )
                return _Evaluation(False, requirement, outcome, gpu, notes=tuple(dict.fromkeys(notes)))
            term = outcome.matched_term or ""
            if any(req.split_factor(f)[0].lower() == "brand" for f in term.split(",") if f):
                forward.append((gpu, term))
    return _Evaluation(True, forward_compat=tuple(forward), notes=tuple(dict.fromkeys(notes)))


def evaluate_requirements(
    env: Mapping[str, str], facts: HostGpuFacts, *, host_disable_require: bool = False
) -> Verdict:
    """Every NVIDIA_REQUIRE_* of `env` on every GPU in `facts`, as libnvidia-container evaluates them.

    Pass only the GPUs the container will get (`dataclasses.replace(facts, gpus=...)`): each is checked.
    """
    result = _evaluate(env, facts, host_disable_require)
    if result.ok:
        return Verdict(True, "the image's NVIDIA_REQUIRE_* constraints are met", result.notes)
    return Verdict(False, _requirement_failure(result), result.notes)


def _requirement_failure(result: _Evaluation) -> str:
    requirement, outcome, gpu = result.requirement, result.outcome, result.gpu
    assert requirement is not None
    if requirement.problem:
        return requirement.problem
    assert outcome is not None
    if outcome.invalid:
        return (
            f"{requirement.variable}={requirement.expression!r} is not a valid requirement: the"
            " container runtime rejects it ('invalid expression')"
        )
    on = f" on GPU {gpu.index} ({_describe(gpu)})" if gpu else ""
    return f"{requirement.variable} is not met{on}: {outcome.error}"


def _describe(gpu: Gpu) -> str:
    cap = f", compute capability {gpu.compute_cap}" if gpu.compute_cap else ""
    return f"{gpu.name}, brand {gpu.brand or 'unknown'}{cap}"


def check_cuda_compat(
    host: str, facts: HostGpuFacts, image: ImageCuda, *, host_disable_require: bool = False
) -> Verdict:
    """evaluate_requirements, and the image's CUDA major.minor against the host's.

    TAO images inherit NGC's `cuda>=9.0`, so the runtime lets a too-new image start and it fails later inside;
    comparing CUDA_VERSION catches that before a multi-GB pull.
    """
    notes: list[str] = []
    host_cuda = facts.cuda_version
    if host_cuda is None:
        host_cuda = cuda_for_driver(facts.driver_version)
        if host_cuda:
            facts = replace(facts, cuda_version=host_cuda)
            notes.append(
                f"nvidia-smi prints no CUDA version; driver branch {facts.driver_version} reports {host_cuda}"
            )
    head = f"NVIDIA driver {facts.driver_version} supports CUDA {host_cuda or 'unknown'}"
    image_cuda = major_minor(image.cuda_version)
    shown = f"image {image.image}"
    source = f" (bundled table, {image.confidence})" if image.source == "bundled table" else ""
    if image.source == "unknown":
        return Verdict(
            True,
            f"{head}; {shown} is not on the host and not in the bundled table, so its CUDA"
            " version was not checked",
            tuple(notes),
            host=host,
        )
    result = _evaluate(image.env, facts, host_disable_require)
    notes.extend(result.notes)
    if not result.ok:
        reason = _requirement_failure(result)
        needed = _cuda_needed(result)
        if needed and host_cuda and not req.compare_versions(host_cuda, ">=", needed):
            fix = _fix(image.image, needed, host_cuda)
            return Verdict(
                False, f"{head}, but {shown} needs CUDA {needed}{source}", (reason, *notes), fix, host
            )
        fix = "use another image or host, or set NVIDIA_DISABLE_REQUIRE=true in the image"
        problem = f"{head}, but {shown} (CUDA {image_cuda or 'unknown'}) cannot start: {reason}"
        return Verdict(False, problem, tuple(notes), fix, host)
    if image_cuda is None:
        return Verdict(True, f"{head}; {shown} declares no CUDA version", tuple(notes), host=host)
    if host_cuda is None:
        notes.append(
            "the host's CUDA version is unknown: only the image's NVIDIA_REQUIRE_* constraints were checked"
        )
        return Verdict(True, f"{head}; {shown} needs CUDA {image_cuda}{source}", tuple(notes), host=host)
    if req.compare_versions(host_cuda, ">=", image_cuda):
        return Verdict(True, f"{head}; {shown} needs CUDA {image_cuda}{source}", tuple(notes), host=host)
    # Forward compatibility only if every GPU passed through a brand clause rather than the cuda>= term.
    through_brand = {id(g) for g, _ in result.forward_compat}
    if through_brand and all(id(g) in through_brand for g in facts.gpus or (None,)):
        consumer = [g for g in facts.gpus if g.brand in CONSUMER_BRANDS]
        term = result.forward_compat[0][1]
        if not consumer:
            notes.append(
                f"forward compatibility: {term} lets CUDA {image_cuda} run on this data-center GPU through"
                " the image's cuda-compat libraries"
            )
            return Verdict(
                True,
                f"{head}; {shown} needs CUDA {image_cuda}, accepted through forward compatibility",
                tuple(notes),
                host=host,
            )
        fix = _fix(image.image, image_cuda, host_cuda)
        gpu = consumer[0]
        return Verdict(
            False,
            f"{head}, but {shown} needs CUDA {image_cuda}: the runtime would accept it through"
            f" forward compatibility ({term}), which does not work on GPU {gpu.index} ({gpu.name})",
            tuple(notes),
            fix,
            host,
        )
    fix = _fix(image.image, image_cuda, host_cuda)
    return Verdict(False, f"{head}, but {shown} needs CUDA {image_cuda}{source}", tuple(notes), fix, host)


def _cuda_needed(result: _Evaluation) -> str | None:
    """The X.Y of a failing requirement's first `cuda>=X.Y` term, which is what the runtime reports."""
    if result.requirement is None or result.outcome is None or result.outcome.invalid:
        return None
    first = result.requirement.expression.split(" ", 1)[0]
    return major_minor(first[len("cuda>=") :]) if first.lower().startswith("cuda>=") else None


def _fix(image_ref: str, needed: str, host_cuda: str) -> str:
    driver = min_driver_for_cuda(needed)
    fixes = [
        f"upgrade the driver to >= {driver}" if driver else f"upgrade to a driver that supports CUDA {needed}"
    ]
    suggestion = suggest_image_tag(image_ref, host_cuda)
    if suggestion:
        fixes.append(f"use image tag {suggestion[0]} (CUDA {suggestion[1]})")
    return " or ".join(fixes)
