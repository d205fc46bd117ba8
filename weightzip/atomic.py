"""Safe outputs: every file or folder either appears whole under its final name or not at all,
and nothing the user already has is replaced unless they asked for it.

- The work goes to a hidden sibling, `.NAME.~PID.RAND.tmp`, renamed over NAME at the end. The
  sibling is created before the work starts, so a read-only or missing folder fails at once.
- Open siblings are listed in a registry. SIGTERM removes them and then ends the process as the
  default action would (the CLIs exit with 143). The handler does not raise: an exception
  raised from a signal handler while C++ code runs Python (an extension module's import, say)
  cannot unwind through it and aborts the process instead. Ctrl-C and errors remove the
  sibling in `finally`. A `kill -9` cannot be caught: the next run on the same output removes
  siblings whose process is gone (the PID in the name says whose it was).
- Errors name the user's path, never the hidden sibling.
"""
from __future__ import annotations

import errno
import os
import re
import shutil
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TMP_SUFFIX = ".tmp"
LEGACY_STALE_S = 3600  # siblings of the previous naming carry no PID: removed after an hour


_OPEN: dict[Path, None] = {}  # hidden siblings being written, in any thread (dict ops are atomic)


def remove_open_siblings() -> None:
    """Remove every hidden sibling still being written (called on SIGTERM, then the process ends)."""
    for _ in range(3):  # another thread may add or drop one while we copy
        try:
            open_now = tuple(_OPEN)
            break
        except RuntimeError:
            continue
    else:
        return
    for tmp in open_now:
        _remove(tmp)


def _remove(tmp: Path) -> None:
    if tmp.is_dir() and not tmp.is_symlink():
        shutil.rmtree(tmp, ignore_errors=True)
    elif os.path.lexists(tmp):
        try:
            tmp.unlink()
        except FileNotFoundError:  # the SIGTERM handler got there first
            pass


def _on_sigterm(signum, frame):  # noqa: ARG001
    remove_open_siblings()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)  # the default action: the process ends, by SIGTERM


@contextmanager
def _sigterm_removes_siblings() -> Iterator[None]:
    """Inside the block, SIGTERM removes the open siblings before the process ends, if the
    process had the default handler and this is the main thread (a CLI installs its own)."""
    main = threading.current_thread() is threading.main_thread()
    if not main or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _tmp_pattern(name: str) -> re.Pattern:
    # ours: .NAME.~PID.RAND.tmp; the previous release's: .NAME.RAND.tmp (8 hex digits)
    return re.compile(r"\." + re.escape(name) + r"\.(?:~(\d+)\.)?[0-9a-f]{8}" + re.escape(TMP_SUFFIX))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale(dst: Path) -> list[Path]:
    """Remove hidden siblings of dst left by killed runs (their PID is gone); returns them."""
    dst = Path(dst)
    removed: list[Path] = []
    pat = _tmp_pattern(dst.name)
    try:
        names = os.listdir(dst.parent if str(dst.parent) else ".")
    except OSError:
        return removed
    for n in names:
        m = pat.fullmatch(n)
        if not m:
            continue
        p = dst.parent / n
        try:
            stale = (not _alive(int(m.group(1))) if m.group(1)
                     else time.time() - p.lstat().st_mtime > LEGACY_STALE_S)
            if stale:
                shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
                removed.append(p)
        except OSError:
            continue
    return removed


def tmp_sibling(dst: Path) -> Path:
    return dst.with_name(f".{dst.name}.~{os.getpid()}.{uuid.uuid4().hex[:8]}{TMP_SUFFIX}")


def refuse_existing(dst: Path, overwrite: bool, folder: bool = False) -> None:
    """FileExistsError unless dst is free (or may be replaced). A file never replaces a
    folder and a folder never replaces a file, even with overwrite."""
    if not os.path.lexists(dst):
        return
    if dst.is_dir() and not folder:
        raise IsADirectoryError(errno.EISDIR, "is a folder (give a file name with -o)", str(dst))
    if folder and not dst.is_dir():
        raise FileExistsError(errno.EEXIST, "exists and is not a folder", str(dst))
    if not folder and not overwrite:
        raise FileExistsError(errno.EEXIST, "exists (use --force, or overwrite=True, to replace it)", str(dst))


def check_writable(dst: os.PathLike | str, overwrite: bool = False, folder: bool = False) -> Path:
    """Fail now, before any work, if dst could not be written at the end: it exists (without
    overwrite), its folder is missing, read-only or not a folder. Returns dst as a Path."""
    dst = Path(dst)
    refuse_existing(dst, overwrite, folder)
    parent = dst.parent if str(dst.parent) else Path(".")
    if not parent.is_dir():
        raise FileNotFoundError(errno.ENOENT, "cannot write: the folder does not exist", str(dst))
    if not os.access(parent, os.W_OK | os.X_OK):  # also EROFS for root on a read-only mount
        raise PermissionError(errno.EACCES, "cannot write: the folder is not writable", str(dst))
    return dst


_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO, errno.EFBIG}


def user_error(e: OSError, tmp: Path, dst: Path) -> OSError:
    """A write error naming dst instead of the hidden sibling (ENOSPC said plainly); other
    errors (an unreadable input, say) pass through unchanged."""
    fn = None if e.filename is None else str(e.filename)
    if fn is not None and not fn.startswith(str(tmp)):
        return e
    if fn is None and e.errno not in _WRITE_ERRNOS:
        return e
    reason = "no space left on device" if e.errno == errno.ENOSPC else (e.strerror or str(e))
    if fn is not None and fn != str(tmp):  # a file inside a staging folder
        dst = dst / Path(fn).relative_to(tmp)
    return type(e)(e.errno or errno.EIO, f"cannot write: {reason}", str(dst))


@contextmanager
def _cleanup(tmp: Path, dst: Path) -> Iterator[None]:
    """Errors name dst; the hidden sibling never outlives the block (errors, Ctrl-C, SIGTERM)."""
    with _sigterm_removes_siblings():
        _OPEN[tmp] = None
        try:
            try:
                yield
            except OSError as e:
                raise user_error(e, tmp, dst) from None
        finally:
            _OPEN.pop(tmp, None)
            _remove(tmp)


@contextmanager
def atomic_path(dst: os.PathLike | str, overwrite: bool = False) -> Iterator[Path]:
    """Yield a hidden temporary sibling of dst (an empty file); it becomes dst only if the
    block succeeds. dst must not exist unless overwrite=True (FileExistsError); a folder is
    never replaced by a file."""
    dst = Path(dst)
    refuse_existing(dst, overwrite)
    remove_stale(dst)
    tmp = tmp_sibling(dst)
    with _cleanup(tmp, dst):
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # fails now, not after the work
        yield tmp
        refuse_existing(dst, overwrite)  # appeared meanwhile?
        os.replace(tmp, dst)


def write_atomic(dst: os.PathLike | str, data: bytes | bytearray | memoryview, overwrite: bool = False) -> Path:
    """Write data to a temporary sibling of dst, then rename it over dst: never a half-written
    output. An existing dst is replaced only with overwrite=True (FileExistsError otherwise)."""
    dst = Path(dst)
    with atomic_path(dst, overwrite) as tmp:
        tmp.write_bytes(data)
    return dst


@contextmanager
def atomic_folder(dst: os.PathLike | str, overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty hidden staging folder beside dst. On success it becomes dst if dst does
    not exist; if dst is an existing folder, only the staged files are moved into it
    (`place_files`): nothing else in dst is touched, and a file already there is replaced
    only with overwrite=True (checked before anything moves)."""
    dst = Path(dst)
    refuse_existing(dst, overwrite, folder=True)
    remove_stale(dst)
    tmp = tmp_sibling(dst)
    with _cleanup(tmp, dst):
        tmp.mkdir()
        yield tmp
        if dst.is_dir():
            place_files(tmp, dst, overwrite)
        else:
            refuse_existing(dst, overwrite, folder=True)
            os.replace(tmp, dst)


def place_files(staged: Path, dst: Path, overwrite: bool = False) -> list[Path]:
    """Move every file under the staged folder to the same relative path under the existing
    folder dst. Only those paths are written; other files in dst are never touched. Refuses
    (before moving anything) if one exists and overwrite is False. Returns the paths."""
    rels = sorted(p.relative_to(staged) for p in staged.rglob("*") if not p.is_dir())
    for rel in rels:
        out = dst / rel
        for parent in list(rel.parents)[:-1]:
            if os.path.lexists(dst / parent) and not (dst / parent).is_dir():
                raise FileExistsError(errno.EEXIST, "exists and is not a folder", str(dst / parent))
        if os.path.lexists(out):
            if out.is_dir():
                raise IsADirectoryError(errno.EISDIR, "is a folder, the archive has a file there", str(out))
            if not overwrite:
                raise FileExistsError(errno.EEXIST, "exists (use --force, or overwrite=True, to replace "
                                      "the files this archive restores)", str(out))
    placed = []
    for rel in rels:
        out = dst / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged / rel, out)
        placed.append(out)
    return placed
