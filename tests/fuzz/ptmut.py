"""Structure-aware mutation of torch checkpoints (atheris custom mutator of fuzz_pt.py).

Zip checkpoints (torch.save) are opened as archives; one member is edited (the pickle, with
byte mutations or swaps of the names the scanner keys on: storage classes, rebuild
functions, dtypes; a storage's bytes; the byteorder record; the member list: renamed, dropped,
duplicated) and the archive is written back with valid CRCs and directory, so that the
torch_zip / pickle_scan / zipscan parsers see the edit rather than a zip error. Legacy
checkpoints get the same name swaps in place. About a fifth of the mutations are plain byte
mutations of the whole file (zip records and CRCs included).
"""
from __future__ import annotations

import io
import random
import warnings
import zipfile
from typing import Callable

ByteMutator = Callable[[bytes, int], bytes]

SWAPS = [b"FloatStorage", b"HalfStorage", b"DoubleStorage", b"BFloat16Storage", b"LongStorage",
         b"BoolStorage", b"ByteStorage", b"UntypedStorage", b"ComplexFloatStorage", b"QInt8Storage",
         b"_rebuild_tensor_v2", b"_rebuild_tensor_v3", b"_rebuild_tensor", b"_rebuild_qtensor",
         b"_rebuild_parameter", b"float32", b"bfloat16", b"float8_e5m2", b"int64", b"OrderedDict"]


def _swap(data: bytes, rng: random.Random) -> bytes:
    """Replace one occurrence of a name the scanner keys on by another."""
    found = [(w, i) for w in SWAPS for i in _find_all(data, w)]
    if not found:
        return data
    w, i = rng.choice(found)
    new = rng.choice(SWAPS)
    return data[:i] + new + data[i + len(w):]


def _find_all(data: bytes, w: bytes) -> list[int]:
    out, i = [], data.find(w)
    while i >= 0 and len(out) < 16:
        out.append(i)
        i = data.find(w, i + 1)
    return out


def _members(data: bytes) -> list[tuple[str, bytes]] | None:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            return [(i.filename, z.read(i)) for i in z.infolist()]
    except Exception:  # not a readable zip: mutated as bytes
        return None


def _zip(members: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate member names are one of the mutations
        for name, blob in members:
            z.writestr(zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0)), blob)
    return buf.getvalue()


def mutate(data: bytes, max_size: int, seed: int, bytes_mutator: ByteMutator | None = None) -> bytes:
    if bytes_mutator is None:
        import atheris
        bytes_mutator = atheris.Mutate
    rng = random.Random(seed)
    r = rng.random()
    members = _members(data) if r >= 0.2 else None
    if not members:
        if r >= 0.2 and rng.random() < 0.5:  # legacy files: a name swap in place
            out = _swap(data, rng)
            return out if out != data and len(out) <= max_size else bytes_mutator(data, max_size)
        return bytes_mutator(data, max_size)
    pkl = [i for i, (n, _) in enumerate(members) if n.endswith(".pkl")]
    if r < 0.65 and pkl:  # a pickle
        i = rng.choice(pkl)
        name, blob = members[i]
        blob = _swap(blob, rng) if rng.random() < 0.3 else bytes_mutator(blob, 2 * len(blob) + 64)
        members[i] = (name, blob)
    elif r < 0.8:  # any member's bytes (storages, byteorder, version)
        i = rng.randrange(len(members))
        name, blob = members[i]
        if name.endswith("byteorder") and rng.random() < 0.5:
            blob = rng.choice([b"big", b"little", b""])
        else:
            blob = bytes_mutator(blob, 2 * len(blob) + 16)
        members[i] = (name, blob)
    else:  # the member list
        i = rng.randrange(len(members))
        name, blob = members[i]
        op = rng.randrange(4)
        if op == 0:
            del members[i]
        elif op == 1:
            members.insert(i, (name, blob))
        elif op == 2:
            prefix = name.split("/")[0]
            members[i] = (rng.choice([f"{prefix}/data/{rng.randrange(8)}", f"{prefix}/data.pkl",
                                      f"{prefix}/.data/{rng.randrange(4)}", "x/data.pkl", name + "/"]), blob)
        else:
            j = rng.randrange(len(members))
            members[i], members[j] = members[j], members[i]
    try:
        out = _zip(members)
    except Exception:
        return bytes_mutator(data, max_size)
    return out if len(out) <= max_size else bytes_mutator(data, max_size)
