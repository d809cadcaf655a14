"""Captured outputs the preflight test modules share: nvidia-smi fixtures and one run of the probe script."""

from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "data" / "nvidia-smi"


def smi(name: str) -> str:
    return (DATA / name).read_text()


# Captured: PROBE_SCRIPT run by dash with `~/data ~/empty /srv/missing`, stub nvidia-smi/docker on PATH
# printing default-r535-single-t4.txt, query lines and an image env; no nvidia-container-runtime-hook.
PROBE_HEAD = "@@taoremote:probe v=1@@\n@@taoremote:begin nvidia-smi@@\n"
PROBE_TAIL = """@@taoremote:end nvidia-smi rc=0@@
@@taoremote:begin query@@
0, NVIDIA H100 80GB HBM3, GPU-aaaa, 100, 81559, 5, 9.0
1, NVIDIA H100 80GB HBM3, GPU-bbbb, 0, 81559, 0, 9.0
@@taoremote:end query rc=0 fields=index,name,uuid,memory.used,memory.total,utilization.gpu,compute_cap@@
@@taoremote:begin image@@
["PATH=/usr/bin","CUDA_VERSION=12.8.0.038","NVIDIA_REQUIRE_CUDA=cuda>=9.0","X=a=b"]
@@taoremote:end image rc=0@@
@@taoremote:begin runtimes@@
{"io.containerd.runc.v2":{"path":"runc"},"nvidia":{"path":"nvidia-container-runtime"},"runc":{"path":"runc"}}
@@taoremote:end runtimes rc=0@@
@@taoremote:begin hook@@

@@taoremote:end hook rc=127@@
@@taoremote:begin runtime-config@@
grep: /etc/nvidia-container-runtime/config.toml: No such file or directory
@@taoremote:end runtime-config rc=2@@
@@taoremote:path exists=1 dir=1 nonempty=1@@
~/data
/tmp/work/home/data
@@taoremote:path exists=1 dir=1 nonempty=0@@
~/empty
/tmp/work/home/empty
@@taoremote:path exists=0 dir=0 nonempty=0@@
/srv/missing
/srv/missing
@@taoremote:end-of-probe@@
"""
CAPTURED_PROBE = PROBE_HEAD + smi("default-r535-single-t4.txt") + PROBE_TAIL


def swap_section(text: str, name: str, content: str, end: str) -> str:
    start = text.index(f"@@taoremote:begin {name}@@\n") + len(f"@@taoremote:begin {name}@@\n")
    stop = text.index(f"@@taoremote:end {name} ")
    stop = text.index("\n", stop) + 1
    return text[:start] + content + end + "\n" + text[stop:]
