"""The committed .wz golden files (README.md): each decodes to exactly the recorded tensors and
bytes, and this weightzip, given the same inputs, writes each of them byte for byte again.

tensors_<level>.wz: weightzip.save() of every dtype's edge values (NaN payloads, +-Inf, -0.0,
subnormals...), random bits, smooth values, a constant, a scalar and an empty tensor; frame_*:
weightzip.compress() frames; packed_safetensors.wz: pack() of a hand-laid safetensors file."""
from __future__ import annotations

import golden_data as gd
import numpy as np
import pytest

import weightzip
from weightzip import _C

# The golden files hold zstd streams (their indexes too): without libzstd they cannot be read.
pytestmark = pytest.mark.skipif(not _C.zstd_available(), reason="libzstd.so.1 is not loaded")
MANIFEST = gd.load_manifest()
WZ = MANIFEST["wz"]


def expected_tensors(entry: dict) -> dict:
    t = entry["tensors"]
    return MANIFEST["tensor_sets"][t] if isinstance(t, str) else t


def test_every_golden_file_is_in_the_manifest():
    on_disk = {p.name for p in gd.HERE.iterdir() if p.suffix in (".wz", ".nc")}
    assert on_disk == set(WZ) | set(MANIFEST["nc"]), "regenerate.py records every golden file"
    assert {n for n, e in WZ.items() if e["encode"]} == set(gd.WZ_FILES)
    assert all(e.get("legacy") for e in WZ.values() if not e["encode"])  # retired: says what it is


@pytest.mark.parametrize("name", list(WZ))
def test_committed_file_is_the_recorded_one(name):
    blob = (gd.HERE / name).read_bytes()
    assert gd.sha256(blob) == WZ[name]["sha256"] and len(blob) == WZ[name]["bytes"], \
        f"{name} differs from manifest.json: was it rewritten without regenerate.py?"
    assert blob[:8] == b"\x89WZP\r\n\x1a\n" and blob[-8:] == b"WZINDEX\x00"
    assert int.from_bytes(blob[8:10], "little") == WZ[name]["format_version"]


def test_inputs_are_unchanged():
    """The generators still make the recorded inputs (else a failure below is not the format's)."""
    assert {k: gd.describe(v) for k, v in gd.wz_tensors().items()} == MANIFEST["tensor_sets"]["wz_tensors"]
    for name, (_level, make) in gd.FRAMES.items():
        x = make()
        got = {"bytes": len(x), "sha256": gd.sha256(x)} if isinstance(x, bytes) else gd.describe(x)
        assert got == WZ[name]["decoded"], name
    assert gd.sha256(gd.safetensors_bytes()) == WZ["packed_safetensors.wz"]["unpacked_sha256"]


def test_the_tensor_set_covers_every_dtype_and_edge():
    t = gd.wz_tensors()
    assert {a.dtype for a in t.values()} == set(gd.DTYPES.values())
    f32 = t["f32.edge"].view("<u4")
    for bits in (0x7FC00000, 0xFFC00001, 0x7F800001, 0x7F800000, 0xFF800000, 0x80000000, 0x00000001,
                 0x807FFFFF, 0x7F7FFFFF):  # NaNs with payloads, +-Inf, -0.0, subnormals, max
        assert bits in f32
    assert any(a.size == 0 for a in t.values()) and any(a.ndim == 0 for a in t.values())
    assert all(t[f"{k.lower()}.smooth"].shape == (9, 57) for k in gd.DTYPES)  # odd sizes


@pytest.mark.parametrize("name", [n for n in WZ if WZ[n]["kind"] in ("save", "pack")])
def test_decodes_to_the_recorded_tensors(name, tmp_path):
    path = gd.HERE / name
    want = expected_tensors(WZ[name])
    got = weightzip.load(path)
    assert list(got) == list(want)  # the stored order
    assert {k: gd.describe(v) for k, v in got.items()} == want
    with weightzip.open(path) as wf:  # random access decodes the same bits
        for k in list(want)[::7]:
            assert gd.describe(wf.get_tensor(k)) == want[k], k
        if WZ[name]["kind"] == "save":
            assert wf.metadata() == gd.WZ_METADATA
    out = weightzip.unpack(path, tmp_path / "restored")
    assert gd.sha256(out.read_bytes()) == WZ[name]["unpacked_sha256"]
    assert weightzip.verify(path).startswith("OK")


def test_decoded_values_are_the_inputs_bit_for_bit():
    """Against the generated arrays themselves: NaN payloads, -0.0 and subnormals survive."""
    want = gd.wz_tensors()
    for level in gd.LEVELS:
        got = weightzip.load(gd.HERE / f"tensors_{level}.wz")
        for k, a in want.items():
            assert got[k].dtype == a.dtype and got[k].shape == a.shape, k
            assert got[k].tobytes() == a.tobytes(), (level, k)


def test_packed_file_unpacks_to_its_source(tmp_path):
    out = weightzip.unpack(gd.HERE / "packed_safetensors.wz", tmp_path)
    assert out.name == gd.PACKED_SOURCE  # pack() recorded the source's name
    assert out.read_bytes() == gd.safetensors_bytes()


@pytest.mark.parametrize("name", [n for n in WZ if WZ[n]["kind"] == "compress"])
def test_frames_decompress_to_the_recorded_array(name):
    out = weightzip.decompress((gd.HERE / name).read_bytes())
    if "bytes" in WZ[name]["decoded"]:  # compress() of bytes gives bytes back
        assert isinstance(out, bytes) and {"bytes": len(out), "sha256": gd.sha256(out)} == WZ[name]["decoded"]
    else:
        assert gd.describe(out) == WZ[name]["decoded"]
    if name in gd.FRAMES:  # and against the input itself
        x = gd.FRAMES[name][1]()
        assert type(out) is type(x)
        if isinstance(x, bytes):
            assert out == x
        else:
            assert out.dtype == x.dtype and out.shape == x.shape and out.tobytes() == x.tobytes()


@pytest.mark.parametrize("name", [n for n in WZ if WZ[n]["encode"]])
def test_encoder_writes_the_same_bytes(name, tmp_path):
    """Format stability of the encoder: today's bytes are the committed ones (one thread)."""
    recorded = MANIFEST["written_with"]["wz"].get("libzstd")
    if gd.libzstd_version() != recorded:  # zstd frames may differ between zstd versions
        pytest.skip(f"libzstd {gd.libzstd_version()} here, {recorded} when the files were written")
    want = (gd.HERE / name).read_bytes()
    got = gd.make_wz(name, tmp_path)
    assert got == want, f"{name}: " + gd.first_difference(got, want)


def test_encoder_output_does_not_depend_on_threads(tmp_path):
    """Several chunks coded in parallel give the bytes one thread gives."""
    x = np.concatenate([gd.smooth("BF16", 5, (1 << 19,)), gd.random_bits("BF16", 6, (1 << 18,))])  # 1.5 MiB
    one = weightzip.compress(x, level="default", threads=1)
    assert weightzip.compress(x, level="default", threads=3) == one
    assert weightzip.decompress(one, threads=2).tobytes() == x.tobytes()
