"""nvidia-smi's output of every era: driver and CUDA versions, GPU rows and the known failures. PURE.

Reads the default table (R346 to R610+'s KMD / CUDA UMD headers), `-q`, `-q -x`, `--version` and
`--query-gpu` CSV; it is given their text, it runs nothing. Captures: tests/data/nvidia-smi/README.md; facts:
shared/reference/cuda-preflight.md.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from taoremote.errors import PreflightError

QUERY_FIELDS = ("index", "name", "uuid", "memory.used", "memory.total", "utilization.gpu", "compute_cap")
# compute_cap is not a valid field before R510 (470.x answers exit 2), so the probe retries without it.
QUERY_FIELDS_R470 = QUERY_FIELDS[:-1]


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


_FAILURES = (  # (pattern, exit code nvidia-smi uses for it, what it means, the fix)
    (
        r"nvidia-smi: (?:command )?not found|command not found: nvidia-smi"
        r"|No such file or directory: 'nvidia-smi'",
        127,
        "nvidia-smi was not found, so no NVIDIA driver is installed (on WSL it is in /usr/lib/wsl/lib)",
        "install the NVIDIA driver",
    ),
    (
        r"couldn't communicate with the NVIDIA driver",
        9,
        "the NVIDIA driver is not loaded (nvidia-smi couldn't communicate with it; usually a kernel update"
        " without a DKMS rebuild, or nouveau holding the GPU)",
        "reinstall the driver for the running kernel and reboot",
    ),
    (
        r"Driver/library version mismatch",
        None,
        "NVIDIA driver/library version mismatch: the driver was upgraded but the old kernel module is still"
        " loaded",
        "reboot the host (or reload the nvidia kernel modules)",
    ),
    (
        r"couldn't find libnvidia-ml\.so",
        12,
        "the NVIDIA driver's libraries are missing (nvidia-smi couldn't find libnvidia-ml.so)",
        "reinstall the NVIDIA driver",
    ),
    (r"No devices were found", 6, "the NVIDIA driver sees no GPU (nvidia-smi: No devices were found)", None),
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
    for pattern, code, meaning, fix in _FAILURES:
        # The text decides; the exit code only when nothing usable was printed (exit 14 still prints a table).
        if re.search(pattern, text, re.IGNORECASE) or (rc == code and driver is None):
            raise PreflightError(meaning, host=host, fix=fix, skippable=True)
    cuda = _first(text, _CUDA_UMD, _CUDA, re.compile(_XML_TAG.format("cuda_version")))
    if driver is None:
        first_line = next((line.strip() for line in text.splitlines() if line.strip()), "no output")
        what = (
            f"nvidia-smi failed (exit {rc}): {first_line}"
            if rc
            else f"no driver version in nvidia-smi output: {first_line}"
        )
        raise PreflightError(what, host=host, skippable=True)
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
