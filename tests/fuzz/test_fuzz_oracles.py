"""Fast checks of the fuzzing machinery, in the default suite (no atheris or clang needed):
every committed seed passes its harness's oracle (the regression reproducers included), and
the structure-aware mutators re-seal what they edit (else fuzzing would stop at checksums).
"""
from __future__ import annotations

import io
import random
from pathlib import Path

import fuzz_wz
import ncmut
import ptmut
import pyfuzz
import pytest
import wzfmt
import wzmut

import weightzip
from weightzip import _C
from weightzip.container import Reader

# The committed .wz seeds hold zstd streams: decoding them needs libzstd.
needs_zstd = pytest.mark.skipif(not _C.zstd_available(), reason="libzstd.so.1 is not loaded")

CORPUS = Path(__file__).resolve().parent / "corpus"
REPRO = Path(__file__).resolve().parent / "repro"


def seeds(target: str, prefix: str = "") -> list[Path]:
    return sorted(p for p in (CORPUS / target).iterdir() if p.name.startswith(prefix))


def oracle(one_input, data: bytes, extra: tuple = ()) -> None:
    """Run a harness body as the fuzzer does: a documented error is fine, anything else fails."""
    try:
        one_input(data)
    except Exception as e:
        if isinstance(e, pyfuzz.Finding) or not pyfuzz.documented(e, extra):
            raise


@pytest.mark.parametrize("path", seeds("wz"), ids=lambda p: p.name)
def test_wz_seed_passes_the_oracle(path):
    oracle(fuzz_wz.one_input, path.read_bytes())


@pytest.mark.parametrize("path", seeds("wz", "regress_"), ids=lambda p: p.name)
def test_wz_regression_is_refused_by_the_reader(path):
    """Index edits that once crashed unpack()/decompress() with TypeError, OSError or a bare
    ValueError (make_corpus.REGRESSIONS) are refused when the index is read."""
    with pytest.raises(weightzip.FormatError, match="corrupt index"):
        Reader(io.BytesIO(path.read_bytes()))


@needs_zstd
@pytest.mark.parametrize("path", [p for p in seeds("wz") if not p.name.startswith("regress_")], ids=lambda p: p.name)
def test_wzfmt_rebuild_decodes_the_same(path):
    blob = path.read_bytes()
    a, b = Reader(io.BytesIO(blob)), Reader(io.BytesIO(wzfmt.build(wzfmt.parse(blob))))
    assert [e.nbytes for e in a.entries] == [e.nbytes for e in b.entries]
    for i in range(len(a.entries)):
        assert a.read_entry(i).tobytes() == b.read_entry(i).tobytes()


@needs_zstd
def test_wz_mutations_get_past_the_index_checksum():
    """With a byte mutator that changes nothing, every change is a structured edit: none may
    leave a stale index checksum (chunk records may be stale on purpose)."""
    pool = [p.read_bytes() for p in seeds("wz", "frame_") + seeds("wz", "pack_")]
    rng, refused, passed = random.Random(1), 0, 0
    for i in range(400):
        out = wzmut.mutate(rng.choice(pool), 1 << 16, i, lambda d, n: d)
        try:
            Reader(io.BytesIO(out))
            passed += 1
        except weightzip.FormatError as e:
            assert "index checksum" not in str(e)
            refused += 1
    assert passed > 50 and refused > 50  # both the parser's accept and refuse paths are reached


def test_nc_rebuild_is_exact_and_mutations_keep_checksums():
    pool = [p.read_bytes() for p in seeds("nc-image") + seeds("nc-audio")]
    for blob in pool:
        assert ncmut.build(ncmut.parse(blob)) == blob
    from neurocodec.runtime.bitstream import NcFile, NcFormatError
    rng = random.Random(2)
    for i in range(300):
        out = ncmut.mutate(rng.choice(pool), 8192, i, lambda d, n: d)
        try:
            NcFile.from_bytes(out)
        except NcFormatError as e:
            assert "checksum" not in str(e)


def test_pt_rezip_keeps_the_layout():
    from weightzip import torch_zip
    for p in seeds("pt"):
        blob = p.read_bytes()
        members = ptmut._members(blob)
        if members is None:  # legacy format: not a zip
            continue
        again = ptmut._zip(members)
        spans = [s[2:] for s in torch_zip.layout(io.BytesIO(blob), len(blob))[1]]
        assert [s[2:] for s in torch_zip.layout(io.BytesIO(again), len(again))[1]] == spans


@pytest.mark.parametrize("path", seeds("pt"), ids=lambda p: p.name)
def test_pt_seed_passes_the_oracle(path):
    import fuzz_pt
    fuzz_pt.roundtrip(path.read_bytes())  # every seed, not one in ROUNDTRIP_EVERY
    oracle(fuzz_pt.one_input, path.read_bytes())


def test_pt_span_names_are_unique():  # regression: a renamed span took a name already in use
    import fuzz_pt
    oracle(fuzz_pt.one_input, (REPRO / "pt_duplicate_span_names.pt").read_bytes())


def test_wz_tensor_of_33_dims_is_a_format_error():  # regression: numpy's bare ValueError escaped
    oracle(fuzz_wz.one_input, (REPRO / "wz_tensor_of_33_dims.wz").read_bytes())


@pytest.mark.parametrize("target", ["nc-image", "nc-audio"])
def test_nc_seeds_pass_the_oracle(target, one_torch_thread):
    import fuzz_nc

    from neurocodec.runtime.registry import CodecNotFound
    for p in seeds(target):
        oracle(fuzz_nc.one_input, p.read_bytes(), extra=(CodecNotFound,))
