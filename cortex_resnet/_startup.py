"""Ctrl-C at any moment of a ``cortex-resnet`` command: exit 130 with a message, no traceback.

Imported first by the package (before torch), so it covers the start-up imports.
Only when the process is the command line (``cortex-resnet ...`` or
``python -m cortex_resnet.cli``): a library user's ``import cortex_resnet`` keeps
Python's own SIGINT handling.

The handler raises :class:`KeyboardInterrupt` where a command can handle it
(inside the CLI's error wrapper, ``cli/_common.handle_errors``: it reports the
interruption, e.g. where a checkpoint is, and exits 130). Anywhere else --
imports, option parsing, after the command -- nothing of the command's output is
being written, so it prints one line and exits 130 at once.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from types import FrameType

__all__ = ["install", "is_cli_process", "exit_if_cli", "EXIT_INTERRUPTED", "MESSAGE"]

EXIT_INTERRUPTED = 130  # 128 + SIGINT, the shell convention
MESSAGE = ("\ninterrupted: no partial output was written (results are written atomically); "
           "rerun the same command to start again.\n")
_COMMON = str(Path(__file__).resolve().parent / "cli" / "_common.py")


def is_cli_process() -> bool:
    """Whether this interpreter runs the ``cortex-resnet`` command (console script or ``-m``)."""
    if Path(sys.argv[0]).name.removesuffix(".exe") == "cortex-resnet":
        return True
    argv = list(getattr(sys, "orig_argv", []))
    return any(a == "-m" and b.startswith("cortex_resnet.cli") for a, b in zip(argv, argv[1:]))


def _inside_a_command(frame: FrameType | None) -> bool:
    while frame is not None:
        code = frame.f_code
        if code.co_name == "wrapper" and os.path.realpath(code.co_filename) == _COMMON:
            return True
        frame = frame.f_back
    return False


def _on_sigint(signum: int, frame: FrameType | None) -> None:
    if _inside_a_command(frame):
        raise KeyboardInterrupt  # the command reports it (handle_errors -> exit 130)
    try:
        os.write(2, MESSAGE.encode())
    finally:
        os._exit(EXIT_INTERRUPTED)  # nothing to clean up: no command body is running


def install() -> None:
    """Install the handler in place of Python's default one (idempotent).

    A SIGINT that the parent set to be ignored (a background job of a script,
    ``nohup``) stays ignored; outside the main thread nothing is changed.
    """
    try:
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            signal.signal(signal.SIGINT, _on_sigint)
    except ValueError:  # not the main thread: leave the handler to the embedding program
        pass


def exit_if_cli() -> None:
    """In the command-line process: print the message and exit 130 (else return)."""
    if is_cli_process():
        sys.stderr.write(MESSAGE)
        raise SystemExit(EXIT_INTERRUPTED)


if is_cli_process():  # at import: the package imports this module before anything heavy
    install()
