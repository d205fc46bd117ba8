"""Shared runtime of the atheris harnesses (fuzz_wz.py, fuzz_nc.py, fuzz_pt.py).

Oracle: an input may be rejected only with a documented error, a ValueError subclass defined
by weightzip or neurocodec (weightzip.FormatError / ChecksumError, neurocodec's NcFormatError
and the codecs' decode errors), plus what a harness adds explicitly; a bare ValueError or any
other exception escapes to atheris and is a finding, as is a Finding raised by a harness's
output checks. Hangs and memory blowups are left to libFuzzer's -timeout and -rss_limit_mb.

Which error classes were seen (and how often) is written every second to the JSON file
named by $FUZZ_STATS, for the campaign report.
"""
from __future__ import annotations

import gc
import glob
import hashlib
import json
import os
import sys
import tempfile
import time
import traceback
import types
import warnings
from collections import Counter
from typing import Callable

OWN_PACKAGES = ("weightzip", "neurocodec")


class Finding(AssertionError):
    """A decode succeeded with an inconsistent or nondeterministic output (or, in fuzz_pt.py,
    pack failed). `what` names the broken property (findings are grouped by it)."""

    def __init__(self, what: str, detail: str = ""):
        super().__init__(f"{what}: {detail}" if detail else what)
        self.what = what


def check(cond: bool, what: str, detail: str = "") -> None:
    if not cond:
        raise Finding(what, detail)


def documented(e: BaseException, extra: tuple[type, ...] = ()) -> bool:
    t = type(e)
    own = t.__module__.split(".")[0] in OWN_PACKAGES
    return (isinstance(e, ValueError) and t is not ValueError and own) or isinstance(e, extra)


class Stats:
    """Outcome counts per input: "ok" or the error class (module.Class)."""

    def __init__(self, path: str | None):
        self.path, self.counts, self.last = path, Counter(), 0.0

    def add(self, key: str) -> None:
        self.counts[key] += 1
        now = time.monotonic()
        if self.path and now - self.last > 1:
            self.last = now
            self.flush()

    def flush(self) -> None:
        if self.path:
            tmp = self.path + ".tmp"
            with open(tmp, "w") as f:
                json.dump(dict(self.counts), f, indent=1, sort_keys=True)
            os.replace(tmp, self.path)


STATS = Stats(os.environ.get("FUZZ_STATS"))


def scratch_dir(prefix: str) -> str:
    """A private folder for a harness's files: under $FUZZ_TMP (the campaign runner removes
    it; libFuzzer exits without running Python's cleanup), else in /dev/shm if present."""
    base = os.environ.get("FUZZ_TMP") or ("/dev/shm" if os.path.isdir("/dev/shm") else None)
    return tempfile.mkdtemp(prefix=prefix, dir=base)


def signature(e: BaseException) -> str:
    """Exception class and the innermost frame in weightzip/neurocodec (or the innermost one);
    for a Finding, its message, or the signature of the exception it was raised from."""
    if isinstance(e, Finding):
        return f"Finding: {e.what}" + (f" ({signature(e.__cause__)})" if e.__cause__ else "")
    tb = traceback.extract_tb(e.__traceback__)
    own = [f for f in tb if any(f"/{p}/" in f.filename for p in OWN_PACKAGES)] or tb[-1:]
    last = own[-1] if own else None
    where = f"{last.filename.rsplit('/', 2)[-2]}/{os.path.basename(last.filename)}:{last.lineno}" if last else "?"
    return f"{type(e).__module__}.{type(e).__qualname__} at {where}"


def record(e: BaseException, data: bytes) -> None:
    """Save the first input of each new finding signature to $FUZZ_FINDINGS (with its traceback)."""
    sig = signature(e)
    STATS.add("FINDING " + sig)
    out = os.environ.get("FUZZ_FINDINGS")
    if not out:
        return
    key = hashlib.sha1(sig.encode()).hexdigest()[:12]
    if not glob.glob(os.path.join(out, f"finding-{key}-*")):
        os.makedirs(out, exist_ok=True)
        name = os.path.join(out, f"finding-{key}-{hashlib.sha1(data).hexdigest()[:12]}")
        with open(name, "wb") as f:
            f.write(data)
        with open(name + ".txt", "w") as f:
            f.write(sig + "\n\n" + "".join(traceback.format_exception(type(e), e, e.__traceback__)))
        STATS.flush()


def guarded(one_input: Callable[[bytes], None], extra: tuple[type, ...] = ()) -> Callable[[bytes], None]:
    """Wrap a harness body: documented errors are counted and swallowed; anything else is a
    finding, raised to atheris (a crash artifact) or, with FUZZ_KEEP_GOING=1, recorded once per
    signature in $FUZZ_FINDINGS while fuzzing goes on (long campaigns)."""
    keep_going = os.environ.get("FUZZ_KEEP_GOING") == "1"

    def run(data: bytes) -> None:
        try:
            one_input(data)
        except Exception as e:
            if not isinstance(e, Finding) and documented(e, extra):
                STATS.add(f"{type(e).__module__}.{type(e).__qualname__}")
                return
            record(e, data)
            if not keep_going:
                raise
            return
        STATS.add("ok")

    return run


def one_thread() -> None:
    """Single-threaded decoding (the campaign runs one process per core)."""
    import torch

    torch.set_num_threads(1)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass


def instrument(dataflow: bool, packages: tuple[str, ...] = OWN_PACKAGES) -> int:
    """Add atheris coverage to every loaded function of these packages (nested code too:
    comprehensions, lambdas); returns the count.

    atheris.instrument_imports() does not reach modules loaded through the editable
    install's import hook (scikit-build-core wraps their loader: the code runs uninstrumented
    and libFuzzer sees almost no coverage), so the harnesses import what they need first and
    instrument the function objects in place. dataflow: also trace comparisons (guides the
    mutator to magic values); atheris 3.0 leaks memory with it in neurocodec's decoders
    (~7 KB per input: 4 GB in 500k inputs), so fuzz_nc.py runs without it."""
    import atheris

    n = 0
    with warnings.catch_warnings():  # reading __module__ of some torch objects warns
        warnings.simplefilter("ignore")
        objs = gc.get_objects()
    for obj in objs:
        if isinstance(obj, types.FunctionType) and (obj.__module__ or "").split(".")[0] in packages:
            try:
                obj.__code__ = atheris.patch_code(obj.__code__, dataflow, True, True)
                n += 1
            except Exception:  # a function atheris cannot patch stays uninstrumented
                pass
    return n


def fuzz(test_one_input: Callable[[bytes], None], mutator=None) -> None:
    import atheris

    atheris.Setup(sys.argv, test_one_input, custom_mutator=mutator)
    atheris.Fuzz()
