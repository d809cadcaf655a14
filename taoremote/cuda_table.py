"""The bundled tables (taoremote/data/image_cuda.json): TAO image tag -> CUDA, CUDA -> lowest driver,
driver branch -> CUDA. PURE: the table ships with the package; nothing is asked of a host here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from taoremote import nvidia_require as req


@dataclass(frozen=True, slots=True)
class ImageCuda:
    image: str
    cuda_version: str | None
    env: Mapping[str, str]
    source: str  # "image" (docker image inspect), "bundled table" or "unknown"
    confidence: str | None = None  # for the bundled table: "documented", "inferred" or "unverified"


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
