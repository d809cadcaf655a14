"""`python -m taoremote` and the `taoremote` command (pyproject's entry point).

Ctrl-C at any moment, even while the modules are still loading (before main() installs its handlers),
is "interrupted" and exit 130, never a traceback.
"""

import sys


def run() -> None:
    try:
        import signal

        signal.signal(signal.SIGINT, signal.default_int_handler)  # from here, KeyboardInterrupt as usual
        from taoremote.cli import main

        main()
    except KeyboardInterrupt:
        _interrupted()


def _interrupted() -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not break the message
    try:
        sys.stderr.write("taoremote: interrupted\n")
        sys.stderr.flush()
    except OSError:
        pass
    raise SystemExit(130)


if __name__ == "__main__":
    run()
