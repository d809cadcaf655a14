"""The NVIDIA_REQUIRE_CUDA strings of the nvidia/cuda base images (cuda-preflight.md §2), generated from
the reference table; test_nvidia_require.py pins them to the verbatim strings by hash."""

from __future__ import annotations

B1 = [
    "tesla",
    "unknown",
    "nvidia",
    "nvidiartx",
    "geforce",
    "geforcertx",
    "quadro",
    "quadrortx",
    "titan",
    "titanrtx",
]
B2 = ["unknown", "grid", "tesla", "nvidia", "quadro", "quadrortx", "nvidiartx"]
B2 += ["vapps", "vpc", "vcs", "vws", "cloudgaming"]
IMAGE_ROWS = {  # CUDA_VERSION: (cuda>=, forward-compat driver branches, brand set), the rows of §2's table
    "11.8.0": ("11.8", (470,), B1),
    "12.0.1": ("12.0", (470,), B1),
    "12.1.1": ("12.1", (470, 525), B1),
    "12.2.2": ("12.2", (470, 525), B1),
    "12.3.2": ("12.3", (470, 525, 535), B1),
    "12.4.1": ("12.4", (470, 525, 535), B1),
    "12.5.1": ("12.5", (470, 535, 550), B2),
    "12.6.3": ("12.6", (470, 535, 550), B2),
    "12.8.1": ("12.8", (470, 535, 550, 560, 565), B2),
    "12.9.1": ("12.9", (535, 550, 560, 565, 570), B2),
    "13.0.0": ("13.0", (535, 550, 565, 570, 575), B2),
}


def require_cuda(version: str) -> str:
    """§2's generator, which reproduces every quoted string byte for byte (pinned by the hashes below)."""
    cuda, branches, brands = IMAGE_ROWS[version]
    clauses = "".join(f" brand={b},driver>={n},driver<{n + 1}" for n in branches for b in brands)
    return f"cuda>={cuda}{clauses}"


def cuda_image(version: str) -> dict[str, str]:
    """The env of nvidia/cuda:VERSION-base: CUDA_VERSION and its NVIDIA_REQUIRE_CUDA."""
    return {"CUDA_VERSION": version, "NVIDIA_REQUIRE_CUDA": require_cuda(version)}
