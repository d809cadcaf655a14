"""taoremote: launch NVIDIA TAO Toolkit tasks in GPU containers, locally or over SSH."""

__version__ = "0.1.0"


def _interrupted_while_starting(_signum: int, _frame: object) -> None:
    import sys

    sys.stderr.write("taoremote: interrupted\n")
    raise SystemExit(130)


def _guard_python_m() -> None:
    # `python -m taoremote`: runpy imports this package, then reads __main__.py; a Ctrl-C in between
    # must already be "interrupted", exit 130. sys.argv[0] is "-m" only while runpy locates the module.
    import sys

    if sys.argv[:1] == ["-m"]:
        import _signal  # built in: importing `signal` (enums) would itself take milliseconds

        _signal.signal(_signal.SIGINT, _interrupted_while_starting)


_guard_python_m()
