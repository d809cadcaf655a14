"""taoremote: launch NVIDIA TAO Toolkit tasks in GPU containers, locally or over SSH."""

__version__ = "0.1.0"
