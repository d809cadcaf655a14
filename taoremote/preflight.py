"""Can this host run this image? Parses what the probe printed and gives the CUDA verdict. PURE.

Nothing here runs a process or reads the environment: callers run PROBE_SCRIPT (one round trip) and pass its
text in. Facts and their sources: shared/reference/cuda-preflight.md.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cache
from importlib import resources
from typing import Any

from taoremote import requirements as req
from taoremote.errors import PreflightError, UsageError

SKIP_HINT = "--no-preflight skips this check"
QUERY_FIELDS = ("index", "name", "uuid", "memory.used", "memory.total", "utilization.gpu", "compute_cap")
# compute_cap is not a valid field before R510 (470.x answers exit 2), so the probe retries without it.
QUERY_FIELDS_R470 = QUERY_FIELDS[:-1]
# Forward compatibility (brand=...,driver>=N clauses) works only on data-center GPUs (cuda-preflight §3.4).
CONSUMER_BRANDS = frozenset({"geforce", "geforcertx", "titan", "titanrtx"})


@dataclass(frozen=True, slots=True)
class Gpu:
    index: int
    name: str
    uuid: str | None
    memory_used_mib: int | None
    memory_total_mib: int | None
    utilization_pct: int | None
    compute_cap: str | None
    brand: str | None  # libnvidia-container's lowercase token: "tesla", "nvidia", "geforce", ...


@dataclass(frozen=True, slots=True)
class HostGpuFacts:
    driver_version: str  # as the host prints it, "570.86.15"
    cuda_version: str | None  # "12.8"; None when nvidia-smi prints none (before R410)
    gpus: tuple[Gpu, ...] = ()


@dataclass(frozen=True, slots=True)
class ImageCuda:
    image: str
    cuda_version: str | None
    env: Mapping[str, str]
    source: str  # "image" (docker image inspect), "bundled table" or "unknown"
    confidence: str | None = None  # for the bundled table: "documented", "inferred" or "unverified"


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    message: str
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PathState:
    path: str  # as given to the probe
    resolved: str  # after `~` expansion on the host, made absolute against the login directory
    exists: bool
    is_dir: bool
    non_empty: bool


@dataclass(frozen=True, slots=True)
class Probe:
    smi_rc: int
    smi_text: str
    query_text: str
    image_env: Mapping[str, str] | None  # None when the image is not on the host (or docker failed)
    image_rc: int
    runtimes_text: str
    paths: Mapping[str, PathState]
    query_rc: int = 0
    query_fields: tuple[str, ...] = QUERY_FIELDS
    image_text: str = ""
    runtimes_rc: int = 0
    hook_path: str | None = None  # nvidia-container-runtime-hook, which `docker run --gpus` needs
    host_disable_require: bool = False  # disable-require = true in the host's nvidia-container-runtime config
    runtimes: tuple[str, ...] = ()  # from `docker info`: "nvidia" means --runtime=nvidia is configured


def _capture(name: str, command: str) -> str:
    """COMMAND's output between begin/end markers; the end marker carries its exit status."""
    return (
        f"printf '%s\\n' '@@taoremote:begin {name}@@'; out=$({command} 2>&1); rc=$?;"
        f' printf \'%s\\n\' "$out" "@@taoremote:end {name} rc=$rc@@";'
    )


# One POSIX sh script, run as `sh -c PROBE_SCRIPT sh IMAGE PATH...`. It is one line (`;`-joined) and avoids
# `!`, so whatever login shell re-reads it over SSH (csh included) passes it on intact. Command substitution
# strips trailing newlines and printf adds exactly one back, so every end marker starts a line of its own.
_GPU_LINES = (
    # On WSL nvidia-smi lives in /usr/lib/wsl/lib, which SSH sessions often lack on their PATH.
    "smi=nvidia-smi; if command -v nvidia-smi >/dev/null 2>&1; then :;",
    "elif [ -x /usr/lib/wsl/lib/nvidia-smi ]; then smi=/usr/lib/wsl/lib/nvidia-smi; fi;",
    _capture("nvidia-smi", '"$smi"'),
    # The field list goes in the end marker: it is known only after the retry without compute_cap.
    "printf '%s\\n' '@@taoremote:begin query@@'; f=" + ",".join(QUERY_FIELDS) + ";",
    'out=$("$smi" --query-gpu=$f --format=csv,noheader,nounits 2>&1); rc=$?;',
    "if [ $rc -ne 0 ] && [ $rc -ne 127 ]; then f=" + ",".join(QUERY_FIELDS_R470) + ";",
    'out=$("$smi" --query-gpu=$f --format=csv,noheader,nounits 2>&1); rc=$?; fi;',
    'printf \'%s\\n\' "$out" "@@taoremote:end query rc=$rc fields=$f@@";',
)
_DOCKER_GPU_LINES = (
    _capture("runtimes", "docker info --format '{{json .Runtimes}}'"),
    _capture("hook", "command -v nvidia-container-runtime-hook"),
    _capture(
        "runtime-config",
        "grep -E '^[[:space:]]*disable-require[[:space:]]*=' /etc/nvidia-container-runtime/config.toml",
    ),
)
_PATH_LINES = (
    'if [ $# -gt 0 ]; then shift; fi; for p in "$@"; do r=$p;',
    'case $r in "~") r=$HOME;; "~/"*) r=$HOME/${r#"~/"};;',
    # ~user and ~user/dir, as the launcher's expanduser does; getent, because eval would run anything
    '"~"*) u=${r%%/*}; u=${u#"~"}; h=$(getent passwd "$u" 2>/dev/null | cut -d: -f6);',
    'if [ -n "$h" ]; then case $r in */*) r=$h/${r#*/};; *) r=$h;; esac; fi;; esac;',
    "case $r in /*) ;; *) r=$PWD/$r;; esac;",
    'e=0; d=0; n=0; if [ -e "$r" ]; then e=1; fi;',
    # `find DIR/. -name . -o -prune -print` lists direct children only (POSIX has no -maxdepth).
    'if [ -d "$r" ]; then d=1;',
    'if [ -n "$(find "$r/." -name . -o -prune -print 2>/dev/null | head -n 1)" ]; then n=1; fi; fi;',
    'printf \'%s\\n\' "@@taoremote:path exists=$e dir=$d nonempty=$n@@" "$p" "$r";',
    "done; printf '%s\\n' '@@taoremote:end-of-probe@@'",
)
_IMAGE_LINE = _capture("image", "docker image inspect --format '{{json .Config.Env}}' \"$1\"")
_HEADER = "printf '%s\\n' '@@taoremote:probe v=1@@';"
PROBE_SCRIPT = " ".join((_HEADER, *_GPU_LINES, _IMAGE_LINE, *_DOCKER_GPU_LINES, *_PATH_LINES))
# --no-preflight / --gpus none: mount sources and the image are still looked at (one round trip), the
# driver is not.
PATHS_PROBE_SCRIPT = " ".join((_HEADER, _IMAGE_LINE, *_PATH_LINES))
_MARKER = re.compile(r"@@taoremote:([a-z-]+)((?: [a-z.-]+(?:=\S*)?)*)@@")


def build_probe_argv(image: str, paths: Sequence[str], *, gpu: bool = True) -> tuple[str, ...]:
    for path in paths:
        if "\n" in path:  # the probe reports one path per line
            raise UsageError(f"mount path {path!r} contains a newline")
    return ("sh", "-c", PROBE_SCRIPT if gpu else PATHS_PROBE_SCRIPT, "sh", image, *paths)


def parse_probe(stdout: str, *, host: str | None = None, gpu: bool = True) -> Probe:
    sections: dict[str, tuple[str, int, dict[str, str]]] = {}
    paths: dict[str, PathState] = {}
    complete = False
    lines = stdout.splitlines()
    i = 0
    while i < len(lines):
        marker = _MARKER.fullmatch(lines[i])
        i += 1
        if marker is None:
            continue
        kind, attrs = marker.group(1), _marker_attrs(marker.group(2))
        if kind == "begin" and attrs:
            name = next(iter(attrs))
            end_marker = re.compile(rf"@@taoremote:end {re.escape(name)} rc=(\d+)((?: \S+)*)@@")
            end = next((j for j in range(i, len(lines)) if end_marker.fullmatch(lines[j])), None)
            if end is None:
                break
            found = end_marker.fullmatch(lines[end])
            assert found is not None
            content = "\n".join(lines[i:end]).strip("\n")
            sections[name] = (content, int(found.group(1)), _marker_attrs(found.group(2)))
            i = end + 1
        elif kind == "path" and i + 1 < len(lines):
            given, resolved = lines[i], lines[i + 1]
            flags = {k: attrs.get(k) == "1" for k in ("exists", "dir", "nonempty")}
            paths[given] = PathState(given, resolved, flags["exists"], flags["dir"], flags["nonempty"])
            i += 2
        elif kind == "end-of-probe":
            complete = True
    required = {"nvidia-smi", "query", "image", "runtimes"} if gpu else {"image"}
    if not complete or required - sections.keys():
        raise PreflightError(f"{_where(host)}the preflight probe's output is incomplete; {SKIP_HINT}")
    not_probed: tuple[str, int, dict[str, str]] = ("", 127, {})
    smi_text, smi_rc, _ = sections.get("nvidia-smi", not_probed)
    query_text, query_rc, query_attrs = sections.get("query", not_probed)
    image_text, image_rc, _ = sections["image"]
    runtimes_text, runtimes_rc, _ = sections.get("runtimes", not_probed)
    hook_text, hook_rc, _ = sections.get("hook", ("", 1, {}))
    config_text, config_rc, _ = sections.get("runtime-config", ("", 1, {}))
    return Probe(
        smi_rc=smi_rc,
        smi_text=smi_text,
        query_text=query_text,
        image_env=parse_image_env(image_text) if image_rc == 0 else None,
        image_rc=image_rc,
        runtimes_text=runtimes_text,
        paths=paths,
        query_rc=query_rc,
        query_fields=tuple(query_attrs.get("fields", ",".join(QUERY_FIELDS)).split(",")),
        image_text=image_text,
        runtimes_rc=runtimes_rc,
        hook_path=(hook_text.strip() or None) if hook_rc == 0 else None,
        host_disable_require=config_rc == 0 and _toml_true(config_text, "disable-require"),
        runtimes=parse_runtimes(runtimes_text) if runtimes_rc == 0 else (),
    )


def _marker_attrs(text: str) -> dict[str, str]:
    attrs: dict[str, str] = {}
    for token in text.split():
        key, _, value = token.partition("=")
        attrs[key] = value
    return attrs


def _toml_true(text: str, key: str) -> bool:
    for line in text.splitlines():
        name, _, value = line.partition("=")
        if name.strip() == key and value.split("#", 1)[0].strip() == "true":
            return True
    return False


def parse_runtimes(json_text: str) -> tuple[str, ...]:
    """Names from `docker info --format '{{json .Runtimes}}'`, e.g. ("nvidia", "runc")."""
    try:
        data = json.loads(json_text)
    except json.JSONDecodeError:
        return ()
    return tuple(sorted(data)) if isinstance(data, dict) else ()


def parse_image_env(json_text: str) -> dict[str, str]:
    """`docker image inspect --format '{{json .Config.Env}}'`: a JSON list of NAME=VALUE (or null)."""
    try:
        data = json.loads(json_text.strip() or "null")
    except json.JSONDecodeError as exc:
        raise PreflightError(f"unreadable image environment from docker: {json_text[:80]!r}") from exc
    if data is None:
        return {}
    if not isinstance(data, list):
        raise PreflightError(f"unreadable image environment from docker: {json_text[:80]!r}")
    env: dict[str, str] = {}
    for item in data:
        name, sep, value = str(item).partition("=")
        if sep:  # a bare NAME carries no value; the runtime ignores it too
            env[name] = value
    return env


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


# ------------------------------------------------------------------------------------------------------------
# nvidia-smi

_FAILURES = (  # (pattern, exit code nvidia-smi uses for it, what it means - the fix)
    (
        r"nvidia-smi: (?:command )?not found|command not found: nvidia-smi"
        r"|No such file or directory: 'nvidia-smi'",
        127,
        "nvidia-smi was not found, so no NVIDIA driver is installed (on WSL it is in /usr/lib/wsl/lib)"
        " - install the NVIDIA driver",
    ),
    (
        r"couldn't communicate with the NVIDIA driver",
        9,
        "the NVIDIA driver is not loaded (nvidia-smi couldn't communicate with it; usually a kernel update"
        " without a DKMS rebuild, or nouveau holding the GPU) - reinstall the driver for the running kernel"
        " and reboot",
    ),
    (
        r"Driver/library version mismatch",
        None,
        "NVIDIA driver/library version mismatch: the driver was upgraded but the old kernel module is still"
        " loaded - reboot the host (or reload the nvidia kernel modules)",
    ),
    (
        r"couldn't find libnvidia-ml\.so",
        12,
        "the NVIDIA driver's libraries are missing (nvidia-smi couldn't find libnvidia-ml.so)"
        " - reinstall the NVIDIA driver",
    ),
    (r"No devices were found", 6, "the NVIDIA driver sees no GPU (nvidia-smi: No devices were found)"),
)
# R610 renamed "Driver Version"/"CUDA Version" to "KMD Version"/"CUDA UMD Version"; --version prints
# "DRIVER version :". The NVIDIA-SMI field is ignored: a snap's nvidia-smi can be older than the driver.
_KMD = re.compile(r"\bKMD\s+Version\s*:\s*(\d[\d.]*\d|\d)", re.IGNORECASE)
_DRIVER = re.compile(r"\bDriver\s+Version\s*:\s*(\d[\d.]*\d|\d)", re.IGNORECASE)
_CUDA_UMD = re.compile(r"\bCUDA\s+UMD\s+Version\s*:\s*(\d+\.\d+)", re.IGNORECASE)
_CUDA = re.compile(r"\bCUDA\s+Version\s*:\s*(\d+\.\d+)", re.IGNORECASE)
_XML_TAG = r"<{0}>\s*([^<]*?)\s*</{0}>"
_BUS_ID = re.compile(r"[0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-9A-Fa-f]")


def parse_nvidia_smi(text: str, rc: int = 0, *, host: str | None = None) -> HostGpuFacts:
    """Driver and CUDA versions from any nvidia-smi output: the table of every era, -q, -q -x, --version.

    Raises PreflightError, naming the fix, for each known failure, or when no driver version can be found.
    """
    driver = _first(text, _KMD, _DRIVER, re.compile(_XML_TAG.format("driver_version")))
    for pattern, code, meaning in _FAILURES:
        # The text decides; the exit code only when nothing usable was printed (exit 14 still prints a table).
        if re.search(pattern, text, re.IGNORECASE) or (rc == code and driver is None):
            raise PreflightError(f"{_where(host)}{meaning}; {SKIP_HINT}")
    cuda = _first(text, _CUDA_UMD, _CUDA, re.compile(_XML_TAG.format("cuda_version")))
    if driver is None:
        first_line = next((line.strip() for line in text.splitlines() if line.strip()), "no output")
        what = (
            f"nvidia-smi failed (exit {rc}): {first_line}"
            if rc
            else f"no driver version in nvidia-smi output: {first_line}"
        )
        raise PreflightError(f"{_where(host)}{what}; {SKIP_HINT}")
    gpus = _xml_gpus(text) if "<nvidia_smi_log>" in text else _table_gpus(text)
    return HostGpuFacts(driver, cuda, gpus)


def _first(text: str, *patterns: re.Pattern[str]) -> str | None:
    for pattern in patterns:
        match = pattern.search(text)
        if match:
            return match.group(1)
    return None


def _table_gpus(text: str) -> tuple[Gpu, ...]:
    """GPU rows of the default table: `| idx name persistence | bus-id ...`, then the usage row below it."""
    gpus = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        cells = line.split("|")
        if len(cells) < 4 or not _BUS_ID.match(cells[2].strip()):
            continue
        words = cells[1].split()
        if len(words) < 3 or not words[0].isdigit():
            continue
        usage = lines[i + 1].split("|") if i + 1 < len(lines) else []
        memory = re.search(r"(\d+)MiB\s*/\s*(\d+)MiB", usage[2]) if len(usage) > 3 else None
        util = re.search(r"(\d+)%", usage[3]) if len(usage) > 3 else None
        name = " ".join(words[1:-1])
        gpus.append(
            Gpu(
                index=int(words[0]),
                name=name,
                uuid=None,
                memory_used_mib=int(memory.group(1)) if memory else None,
                memory_total_mib=int(memory.group(2)) if memory else None,
                utilization_pct=int(util.group(1)) if util else None,
                compute_cap=None,
                brand=brand_from_name(name),
            )
        )
    return tuple(gpus)


def _xml_gpus(text: str) -> tuple[Gpu, ...]:
    """`-q -x` GPU blocks, read with regexes: captures are often truncated, and the DTD is external."""
    gpus = []
    for index, block in enumerate(
        re.findall(r"<gpu id=\"[^\"]*\">(.*?)(?=<gpu id=|</nvidia_smi_log>|\Z)", text, re.S)
    ):
        fb = re.search(r"<fb_memory_usage>(.*?)</fb_memory_usage>", block, re.S)
        fb_text = fb.group(1) if fb else ""
        name = _tag_in(block, "product_name") or "unknown GPU"
        product_brand = _tag_in(block, "product_brand")
        gpus.append(
            Gpu(
                index=index,
                name=name,
                uuid=_tag_in(block, "uuid"),
                memory_used_mib=_int(_tag_in(fb_text, "used")),
                memory_total_mib=_int(_tag_in(fb_text, "total")),
                utilization_pct=_int(_tag_in(block, "gpu_util")),
                compute_cap=None,
                brand=normalize_brand(product_brand) if product_brand else brand_from_name(name),
            )
        )
    return tuple(gpus)


def _tag_in(text: str, name: str) -> str | None:
    match = re.search(_XML_TAG.format(name), text)
    return match.group(1) if match else None


_NA_VALUES = frozenset(
    {"", "n/a", "[n/a]", "[not supported]", "[insufficient permissions]", "[unknown error]"}
)


def _int(value: str | None) -> int | None:
    """An int from "15109", "15109 MiB" or "0 %"; None for "[N/A]", "[Not Supported]" and the like."""
    if value is None or value.strip().lower() in _NA_VALUES:
        return None
    match = re.fullmatch(r"(\d+)\s*(?:MiB|%)?", value.strip())
    return int(match.group(1)) if match else None


def parse_query_gpu(csv_text: str, fields: Sequence[str] = QUERY_FIELDS) -> tuple[Gpu, ...]:
    """`nvidia-smi --query-gpu=FIELDS --format=csv[,noheader][,nounits]`: one line per GPU, ", "-separated."""
    names = tuple(f.strip().lower() for f in fields)
    lines = [line for line in csv_text.splitlines() if line.strip()]
    if lines and [re.sub(r"\s*\[.*\]$", "", h).lower() for h in lines[0].split(", ")] == list(names):
        lines = lines[1:]  # --format=csv without noheader
    gpus = []
    for position, line in enumerate(lines):
        parts = [p.strip() for p in line.split(", ")]
        if names == QUERY_FIELDS and len(parts) == len(QUERY_FIELDS_R470):
            # The probe's retry without compute_cap (R470), read right even by callers that pass no fields.
            names = QUERY_FIELDS_R470
        extra = len(parts) - len(names)
        if extra > 0 and "name" in names:  # a GPU name containing ", "
            at = names.index("name")
            parts[at : at + extra + 1] = [", ".join(parts[at : at + extra + 1])]
        if len(parts) != len(names):
            raise PreflightError(f"unexpected nvidia-smi --query-gpu output: {line!r}")
        row = dict(zip(names, parts, strict=True))
        index = _int(row.get("index")) if "index" in row else position
        if index is None:
            raise PreflightError(f"unexpected nvidia-smi --query-gpu output: {line!r}")
        name = row.get("name", "unknown GPU")
        cap = row.get("compute_cap", "")
        uuid = row.get("uuid", row.get("gpu_uuid", ""))
        gpus.append(
            Gpu(
                index=index,
                name=name,
                uuid=None if uuid.lower() in _NA_VALUES else uuid,
                memory_used_mib=_int(row.get("memory.used")),
                memory_total_mib=_int(row.get("memory.total")),
                utilization_pct=_int(row.get("utilization.gpu")),
                compute_cap=cap if re.fullmatch(r"\d+\.\d+", cap) else None,
                brand=brand_from_name(name),
            )
        )
    return tuple(gpus)


# NVML brand names as nvidia-smi -q prints them ("Product Brand") -> tokens of CUDA images' brand= clauses.
_BRAND_TOKENS = {
    "geforce": "geforce",
    "geforce rtx": "geforcertx",
    "titan": "titan",
    "titan rtx": "titanrtx",
    "quadro": "quadro",
    "quadro rtx": "quadrortx",
    "nvidia rtx": "nvidiartx",
    "nvidia": "nvidia",
    "tesla": "tesla",
    "grid": "grid",
    "nvs": "nvs",
    "nvidia virtual applications": "vapps",
    "nvidia virtual pc": "vpc",
    "nvidia virtual compute server": "vcs",
    "nvidia rtx virtual workstation": "vws",
    "nvidia cloud gaming": "cloudgaming",
    "unknown": "unknown",
}


def normalize_brand(product_brand: str) -> str:
    return _BRAND_TOKENS.get(" ".join(product_brand.lower().split()), "unknown")


def brand_from_name(name: str) -> str:
    """A best guess of NVML's brand from the product name: --query-gpu has no brand field, only the name.

    Observed: an RTX 4090 reports GeForce, an L4 reports NVIDIA; NVML marks GEFORCE_RTX/TITAN_RTX unused.
    The distinction that matters is consumer (GeForce, TITAN) vs the rest: every brand= list of the CUDA
    images contains tesla, nvidia, unknown, quadro, quadrortx and nvidiartx alike.
    """
    lowered = name.lower()
    for word, token in (
        ("geforce", "geforce"),
        ("titan", "titan"),
        ("quadro rtx", "quadrortx"),
        ("quadro", "quadro"),
        ("tesla", "tesla"),
        ("grid", "grid"),
    ):
        if word in lowered:
            return token
    if re.search(r"\bnvs\b", lowered):
        return "nvs"
    if re.search(r"\brtx\b", lowered):  # RTX A6000, RTX 6000 Ada, RTX PRO 6000: the former Quadro line
        return "nvidiartx"
    return "nvidia" if lowered.startswith("nvidia") else "unknown"


# ------------------------------------------------------------------------------------------------------------
# image CUDA


@cache
def _table() -> dict[str, Any]:
    text = resources.files("taoremote").joinpath("data/image_cuda.json").read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def split_image_ref(image_ref: str) -> tuple[str, str | None]:
    """("registry/repo/name", tag or None); a digest is dropped, a registry port is not mistaken for a tag."""
    name = image_ref.split("@", 1)[0]
    repo, sep, tag = name.rpartition(":")
    if not sep or "/" in tag:
        return name, None
    return repo, tag


def image_cuda_from_table(image_ref: str) -> ImageCuda | None:
    """The bundled CUDA version of a TAO image tag, in any registry (OVERRIDE_REGISTRY keeps the path)."""
    repo, tag = split_image_ref(image_ref)
    entry = _table()["images"].get(tag or "") if repo.rsplit("/", 1)[-1] == "tao-toolkit" else None
    if entry is None:
        return None
    env = {"CUDA_VERSION": entry["cuda_version"], "NVIDIA_REQUIRE_CUDA": entry["nvidia_require_cuda"]}
    return ImageCuda(image_ref, entry["cuda_version"], env, "bundled table", entry["confidence"])


def image_cuda_from_env(image_ref: str, env: Mapping[str, str]) -> ImageCuda:
    return ImageCuda(image_ref, env.get("CUDA_VERSION") or None, dict(env), "image")


def resolve_image_cuda(image_ref: str, probe: Probe) -> ImageCuda:
    """The image's own env when it is on the host, else the bundled table, else unknown."""
    if probe.image_env is not None:
        return image_cuda_from_env(image_ref, probe.image_env)
    return image_cuda_from_table(image_ref) or ImageCuda(image_ref, None, {}, "unknown")


def major_minor(version: str | None) -> str | None:
    """Major.minor of a CUDA version: NGC's 4-part "12.8.0.038" -> "12.8", "v12" -> "12.0"."""
    match = re.match(r"v?(\d+)(?:\.(\d+))?", version or "")
    return f"{int(match.group(1))}.{int(match.group(2) or 0)}" if match else None


def min_driver_for_cuda(cuda: str) -> str | None:
    """The lowest driver that reports this CUDA version (the toolkit's GA driver), or the next CUDA's."""
    versions: dict[str, Any] = _table()["cuda_min_driver"]["versions"]
    candidates = [v for v in versions if req.compare_versions(v, ">=", cuda)]
    if not candidates:
        return None
    lowest = min(candidates, key=lambda v: tuple(int(p) for p in v.split(".")))
    driver: str = versions[lowest]["driver"]
    return driver


def cuda_for_driver(driver: str) -> str | None:
    """CUDA version a driver branch reports, for outputs that print none."""
    branch = driver.split(".", 1)[0]
    cuda: str | None = _table()["driver_branch_cuda"]["branches"].get(branch)
    return cuda


def suggest_image_tag(image_ref: str, host_cuda: str) -> tuple[str, str] | None:
    """The newest tag of the same TAO flavor that a launcher config names and whose CUDA the host supports."""
    _, tag = split_image_ref(image_ref)
    images: dict[str, Any] = _table()["images"]
    current = images.get(tag or "")
    if current is None:
        return None
    fits = [
        (t, e["cuda_version"])
        for t, e in images.items()
        if e["flavor"] == current["flavor"]
        and e["launcher_configs"]
        and t != tag
        and req.compare_versions(host_cuda, ">=", e["cuda_version"])
    ]
    return max(
        fits, key=lambda te: [int(n) for n in re.findall(r"\d+", te[0].split("-", 1)[0])], default=None
    )


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
    head = f"host {host}: NVIDIA driver {facts.driver_version} supports CUDA {host_cuda or 'unknown'}"
    image_cuda = major_minor(image.cuda_version)
    shown = f"image {image.image}"
    source = f" (bundled table, {image.confidence})" if image.source == "bundled table" else ""
    if image.source == "unknown":
        return Verdict(
            True,
            f"{head}; {shown} is not on the host and not in the bundled table, so its CUDA"
            " version was not checked",
            tuple(notes),
        )
    result = _evaluate(image.env, facts, host_disable_require)
    notes.extend(result.notes)
    if not result.ok:
        reason = _requirement_failure(result)
        needed = _cuda_needed(result)
        if needed and host_cuda and not req.compare_versions(host_cuda, ">=", needed):
            fix = _fix(image.image, needed, host_cuda)
            return Verdict(
                False,
                f"{head}, but {shown} needs CUDA {needed}{source} - {fix}; {SKIP_HINT}",
                (reason, *notes),
            )
        fix = "use another image or host, or set NVIDIA_DISABLE_REQUIRE=true in the image"
        msg = f"{head}, but {shown} (CUDA {image_cuda or 'unknown'}) cannot start: {reason}"
        msg += f" - {fix}; {SKIP_HINT}"
        return Verdict(False, msg, tuple(notes))
    if image_cuda is None:
        return Verdict(True, f"{head}; {shown} declares no CUDA version", tuple(notes))
    if host_cuda is None:
        notes.append(
            "the host's CUDA version is unknown: only the image's NVIDIA_REQUIRE_* constraints were checked"
        )
        return Verdict(True, f"{head}; {shown} needs CUDA {image_cuda}{source}", tuple(notes))
    if req.compare_versions(host_cuda, ">=", image_cuda):
        return Verdict(True, f"{head}; {shown} needs CUDA {image_cuda}{source}", tuple(notes))
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
            )
        fix = _fix(image.image, image_cuda, host_cuda)
        gpu = consumer[0]
        return Verdict(
            False,
            f"{head}, but {shown} needs CUDA {image_cuda}: the runtime would accept it through"
            f" forward compatibility ({term}), which does not work on GPU {gpu.index} ({gpu.name})"
            f" - {fix}; {SKIP_HINT}",
            tuple(notes),
        )
    fix = _fix(image.image, image_cuda, host_cuda)
    return Verdict(
        False, f"{head}, but {shown} needs CUDA {image_cuda}{source} - {fix}; {SKIP_HINT}", tuple(notes)
    )


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


def pick_gpus(gpus: Sequence[Gpu], n: int) -> tuple[int, ...]:
    """`--gpus auto:N`: the N least-loaded GPUs (memory used, then utilisation, then index), in index order.

    GPUs whose load is unknown (MIG-enabled ones print N/A) rank after every GPU whose load is known.
    """
    if n < 1:
        raise UsageError(f"--gpus auto:{n}: the number of GPUs must be at least 1")
    if len(gpus) < n:
        raise PreflightError(f"--gpus auto:{n} needs {n} GPUs, but the host has {len(gpus)}")

    def load(gpu: Gpu) -> tuple[bool, int, bool, int, int]:
        used, util = gpu.memory_used_mib, gpu.utilization_pct
        return (used is None, used or 0, util is None, util or 0, gpu.index)

    return tuple(sorted(g.index for g in sorted(gpus, key=load)[:n]))


def _where(host: str | None) -> str:
    return f"host {host}: " if host else ""
