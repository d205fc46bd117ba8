"""What both command lines (weightzip, neurocodec) share: argument types, one-line errors and
the exit statuses they mean.

    0    success
    1    the command failed: bad or corrupt input, a failed check, an output that exists
         (without --force) or cannot be written
    2    usage: unknown option, missing or out-of-range argument
    130  interrupted (Ctrl-C);  143  terminated (SIGTERM)

On 1, 130 and 143 no output file is left behind, not even a hidden temporary one. Set
<PROG>_DEBUG=1 (WEIGHTZIP_DEBUG, NEUROCODEC_DEBUG) to see a traceback instead of the line.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import warnings
from typing import Callable

from .atomic import remove_open_siblings

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_TERMINATED = 0, 1, 2, 130, 143

EPILOG = ("exit status: 0 success; 1 failed (bad input, failed check, output exists without "
          "--force, cannot write); 2 usage; 130 interrupted; 143 terminated")


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (threads, steps...)."""
    return _int_at_least(text, 1)


def nonneg_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    return _int_at_least(text, 0)


def _int_at_least(text: str, low: int) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if v < low:
        raise argparse.ArgumentTypeError(f"must be >= {low}, got {v}")
    return v


def positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not v > 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return v


def one_line(e: BaseException) -> str:
    """The error as one line, naming the path it is about."""
    if isinstance(e, OSError) and e.strerror:
        msg = e.strerror
        if e.filename is not None and str(e.filename) not in msg:
            msg = f"{e.filename}: {msg}"
    else:
        text = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
        msg = text.strip().splitlines()[0] if text.strip() else type(e).__name__
    return msg


def run(prog: str, command: Callable[[], int], errors: tuple[type[BaseException], ...]) -> int:
    """Run a parsed command: SIGTERM and Ctrl-C end it cleanly (temporary outputs removed by
    the `finally` clauses of weightzip.atomic), each warning and each error is one line."""
    debug = os.environ.get(f"{prog.upper()}_DEBUG") == "1"

    def on_term(signum, frame):  # noqa: ARG001
        # No exception: one raised here inside C++ that runs Python (a nanobind module's
        # import) cannot unwind and aborts. Remove the temporaries and leave at once instead.
        remove_open_siblings()
        os.write(2, f"{prog}: terminated\n".encode())
        os._exit(EXIT_TERMINATED)

    main = threading_main()
    previous = signal.signal(signal.SIGTERM, on_term) if main else None
    shown = warnings.showwarning
    warnings.showwarning = lambda message, category, *a, **k: print(  # type: ignore[assignment]
        f"{prog}: warning: {one_line(message) if isinstance(message, BaseException) else message}",
        file=sys.stderr)
    try:
        return command()
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # output piped into e.g. `head`: not an error
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except OSError:
            pass
        return EXIT_OK
    except errors as e:
        if debug:
            raise
        print(f"{prog}: error: {one_line(e)}", file=sys.stderr)
        return EXIT_FAILED
    except Exception as e:  # noqa: BLE001 - a bug: still one line, with the way to the traceback
        if debug:
            raise
        print(f"{prog}: error: internal error ({type(e).__name__}: {one_line(e)}); "
              f"run with {prog.upper()}_DEBUG=1 for a traceback and please report it", file=sys.stderr)
        return EXIT_FAILED
    finally:
        warnings.showwarning = shown
        if main:
            signal.signal(signal.SIGTERM, previous)


def threading_main() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
