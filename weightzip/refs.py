"""References of delta files (`pack --ref PREV.wz`, docs/format.md "version 2: references").

A delta .wz records its reference's identity (RefId: name, XXH64 of its index, size). To
decode it, the reference must be found and attached to its Reader: `Resolver.attach` looks
for it among the paths given (`--ref`, repeatable for chains), then by its stored name
beside the file that needs it, and does the same for the reference's own reference (chains).
A file with the right name but another identity is refused (RefError), as is a missing one.
"""
from __future__ import annotations

import builtins
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Union

from .container import DICT_MAX, FOOTER, FOOTER_MAGIC, PREAMBLE, Reader
from .errors import FormatError, RefError
from .index import RefId

MAX_DEPTH = 200  # chain length (decoding recurses once per level; keyframes keep chains short)
PathLike = Union[str, os.PathLike]


def ref_id(path: Path) -> RefId:
    """The identity of a .wz file, from its footer (reads 32 bytes)."""
    try:
        with builtins.open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            if size < PREAMBLE.size + FOOTER.size:
                raise RefError(f"{path}: not a weightzip file (too short; truncated?)")
            f.seek(size - FOOTER.size)
            _, _, ihash, magic = FOOTER.unpack(f.read(FOOTER.size))
    except OSError as e:
        raise RefError(f"{path}: cannot read the reference ({e.strerror or e})") from None
    if magic != FOOTER_MAGIC:
        raise RefError(f"{path}: not a weightzip file (no index footer; truncated?)")
    return RefId(path.name, ihash, size)


def as_paths(ref: PathLike | Sequence[PathLike] | None) -> list[Path]:
    if ref is None:
        return []
    if isinstance(ref, (str, os.PathLike)):
        return [Path(ref)]
    return [Path(p) for p in ref]


class Resolver:
    """Finds and opens the references a delta file (and its references) need; close() closes
    them all."""

    def __init__(self, given: Sequence[Path] = ()):
        self.given = list(given)
        self._ids: dict[Path, RefId] = {}
        self._files: list[Any] = []

    def _id(self, p: Path) -> RefId:
        if p not in self._ids:
            self._ids[p] = ref_id(p)
        return self._ids[p]

    def attach(self, reader: Reader, path: Path) -> None:
        """Attach to reader its reference, and to that its own, down the chain."""
        chain = [path.name]
        seen = {(reader.index_xxh64, reader.size)}
        used: set[Path] = set()
        while reader.ref is not None:
            want = reader.ref
            if len(chain) > MAX_DEPTH or (want.index_xxh64, want.size) in seen:
                raise RefError(f"{path.name}: the chain of references loops or is longer than {MAX_DEPTH}")
            seen.add((want.index_xxh64, want.size))
            found = self._find(want, path, chain, used)
            used.add(found)
            f = builtins.open(found, "rb")
            self._files.append(f)
            try:
                ref = Reader(f)
            except FormatError as e:
                raise RefError(f"reference {found}: {e}") from None
            if (ref.index_xxh64, ref.size) != (want.index_xxh64, want.size):  # changed meanwhile
                raise RefError(_wrong(chain[-1], want, found, self._id(found)))
            reader.ref_reader = ref
            reader, path = ref, found
            chain.append(found.name)

    def _find(self, want: RefId, path: Path, chain: list[str], used: set[Path]) -> Path:
        for p in self.given:
            got = self._id(p)
            if (got.index_xxh64, got.size) == (want.index_xxh64, want.size):
                return p
        beside = path.parent / want.name
        if beside.is_file():
            got = ref_id(beside)
            if (got.index_xxh64, got.size) == (want.index_xxh64, want.size):
                return beside
            raise RefError(_wrong(chain[-1], want, beside, got))
        unused = [p for p in self.given if p not in used]
        if unused:
            raise RefError(_wrong(chain[-1], want, unused[0], self._id(unused[0])))
        if len(chain) == 1:
            raise RefError(f"{chain[0]} is a delta against {want.describe()}: give it with --ref "
                           f"(not found beside {chain[0]})")
        needed = ", ".join(f"needed by {n}" for n in reversed(chain))
        raise RefError(f"{want.describe()} ({needed}) not found: give it with --ref")

    def close(self) -> None:
        for f in self._files:
            f.close()
        self._files.clear()

    def __enter__(self) -> Resolver:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _wrong(needer: str, want: RefId, got_path: Path, got: RefId) -> str:
    return (f"wrong reference for {needer}: expected {want.describe()}, got {got_path} "
            f"(index {got.index_xxh64:016x}, {got.size:,} bytes); a re-packed copy of the same "
            "checkpoint is a different file")


def attach(reader: Reader, path: PathLike, ref: PathLike | Sequence[PathLike] | None) -> Resolver:
    """Resolve and attach the references reader needs; the caller closes the Resolver."""
    res = Resolver(as_paths(ref))
    try:
        res.attach(reader, Path(path))
    except BaseException:
        res.close()
        raise
    return res


class ReconCache:
    """The decoded tensor entries of the last file written through it (weightzip.save(...,
    cache=)), so that the next save against that very file (a training loop's chain of
    closed-loop deltas) reads them from memory instead of decoding the file. Costs one
    checkpoint of memory; the entries are used only for the file whose identity they came
    from (index XXH64 + size), so a stale cache is never wrong, only unused."""

    def __init__(self) -> None:
        self.key: tuple[int, int] | None = None
        self.entries: dict[int, Any] = {}

    def store(self, index_xxh64: int, size: int, entries: dict[int, Any]) -> None:
        self.key, self.entries = (index_xxh64, size), entries

    def lookup(self, rid: RefId) -> dict[int, Any]:
        return self.entries if self.key == (rid.index_xxh64, rid.size) else {}


class RefSource:
    """A reference opened for packing: which of its entries match a new tensor or blob, and
    their bytes (from `cache` when it holds this file's decoded entries)."""

    def __init__(self, path: PathLike, out: Path | None = None, cache: ReconCache | None = None):
        path = Path(path)
        if out is not None and path.resolve() == out.resolve():
            raise RefError(f"--ref {path}: the reference and the output are the same file")
        self.id = ref_id(path)
        self.cached = cache.lookup(self.id) if cache is not None else {}
        self.f = builtins.open(path, "rb")
        self.resolver = Resolver()
        try:
            try:
                self.reader = Reader(self.f)
            except FormatError as e:
                raise RefError(f"--ref {path}: not a usable weightzip file ({e})") from None
            self.resolver.attach(self.reader, path)
        except BaseException:
            self.close()
            raise
        r = self.reader
        folder = r.source.get("kind") == "folder"
        self._tensors: dict[tuple[str, str], int] = {}
        self._blobs: dict[tuple[str, int], int] = {}
        owner = {i: fd["path"] for fd in r.files for i in fd["parts"]} if folder else {}
        counts: dict[str, int] = {}
        for i, e in enumerate(r.entries):
            key = owner.get(i, "")
            if e.kind == "tensor":
                self._tensors.setdefault((key, e.name), i)
            else:
                counts[key] = counts.get(key, -1) + 1
                self._blobs[(key, counts[key])] = i

    def match(self, file: str, name: str, dtype: str, shape: tuple, chunk_bytes: int) -> int | None:
        j = self._tensors.get((file, name))
        if j is None or self.reader.chunk_bytes != chunk_bytes:
            return None
        e = self.reader.entries[j]
        return j if (e.dtype, e.shape) == (dtype, tuple(shape)) else None

    def match_blob(self, file: str, ordinal: int, nbytes: int, chunk_bytes: int) -> int | None:
        """The reference blob at the same place (file, ordinal): coded chunk by chunk against it
        if the sizes are equal, else (a blob of one chunk, e.g. a growing JSON log) with it as a
        zstd dictionary."""
        j = self._blobs.get((file, ordinal))
        if j is None or self.reader.chunk_bytes != chunk_bytes:
            return None
        have = self.reader.entries[j].nbytes
        return j if have == nbytes or (nbytes <= chunk_bytes and 0 < have <= DICT_MAX) else None

    def nbytes(self, j: int) -> int:
        return self.reader.entries[j].nbytes

    def slabs(self, j: int) -> Iterator[memoryview]:
        if j in self.cached:
            return iter([memoryview(self.cached[j])])
        return self.reader.iter_entry(j)

    def whole(self, j: int) -> Any:
        return self.cached[j] if j in self.cached else self.reader.read_entry(j)

    def close(self) -> None:
        self.resolver.close()
        self.f.close()
