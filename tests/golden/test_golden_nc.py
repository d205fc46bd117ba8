"""The committed .nc golden files (README.md): each shipped codec's files decode to exactly the
recorded output, and this neurocodec, given the same inputs, writes them byte for byte again.
Decode-only (legacy) files, written by older releases, must keep decoding as recorded.

Image codecs (hyperprior, shallow): a 40x24 RGB and a 16x16 grayscale synthetic image at
qualities 1 and 4. Audio (audio-rvq): 0.5 s of a synthetic chirp, mono at 24 kHz (3 and 6
kbps) and stereo at 16 kHz (12 kbps). Torch runs on one thread (encoders' float analysis is
only pinned on one thread; decoders pin themselves)."""
from __future__ import annotations

import golden_data as gd
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("compressai")
import neurocodec
from neurocodec.runtime.bitstream import MAGIC, NcFile

MANIFEST = gd.load_manifest()
NC = MANIFEST["nc"]
pytestmark = [pytest.mark.shipped_codecs, pytest.mark.usefixtures("one_torch_thread", "codecs")]


@pytest.fixture(scope="module")
def codecs():
    """Load each shipped codec once (neurocodec caches them); skip if one is not installed."""
    for name in sorted({e["codec"] for e in NC.values() if "codec" in e} | {"audio-rvq"}):
        try:
            neurocodec.load_codec(name)
        except (LookupError, FileNotFoundError) as e:  # CodecNotFound is a LookupError
            pytest.skip(f"shipped codec {name!r} not installed ({e})")


def environment_note() -> str:
    """Float kernels (torch version, CPU) may change the bits of a float transform."""
    here, then = gd.environment(), MANIFEST["written_with"]["nc"]
    diff = {k: (here.get(k), then.get(k)) for k in set(here) | set(then) if here.get(k) != then.get(k)}
    return f"; environment (here, when written): {diff}" if diff else "; same environment as when written"


def decoded_mismatch(name: str, out) -> str:
    """The decoded output's description beside the recorded one, for a failure message."""
    got = gd.describe_decoded(out)
    want = gd.expected_decoded(NC[name], MANIFEST["written_with"]["nc"])
    return f"{name}: decoded {got}, recorded {want}" + environment_note()


def test_inputs_are_unchanged():
    for key, (x, sr) in gd.nc_inputs().items():
        assert {**gd.describe(x), **({"sample_rate": sr} if sr else {})} == MANIFEST["inputs"][key], key


def test_every_case_is_committed():
    assert {n for n, e in NC.items() if e["encode"]} == set(gd.nc_cases())
    assert set(gd.LEGACY_NC) | set(gd.FITTED_NC) <= {n for n, e in NC.items() if not e["encode"]}
    assert all(e.get("legacy") for e in NC.values() if not e["encode"])  # says what it is
    kinds = {neurocodec.load_codec(e["codec"]).kind for e in NC.values() if e["encode"]}
    assert kinds == {"image", "audio"}
    shipped = {c["name"] for c in neurocodec.list_codecs() if "/codecs/" in str(c.get("path", "")).replace("\\", "/")}
    pinned = {e["codec"] for e in NC.values() if e["encode"]} | {c["codec"] for c in gd.FITTED_NC.values()}
    assert shipped <= pinned, "a shipped codec has no golden file"


@pytest.mark.parametrize("name", list(NC))
def test_committed_file_is_the_recorded_one(name):
    blob = (gd.HERE / name).read_bytes()
    assert gd.sha256(blob) == NC[name]["sha256"] and len(blob) == NC[name]["bytes"], \
        f"{name} differs from manifest.json: was it rewritten without regenerate.py?"
    assert blob[:3] == MAGIC and blob[3] == NC[name]["format_version"]
    nc = NcFile.from_bytes(blob)  # the container's checksums hold
    if NC[name]["encode"]:
        assert nc.codec_id == neurocodec.load_codec(NC[name]["codec"]).id


@pytest.mark.parametrize("name", list(NC))
def test_decodes_to_the_recorded_output(name):
    out = neurocodec.decode((gd.HERE / name).read_bytes())
    want = gd.expected_decoded(NC[name], MANIFEST["written_with"]["nc"])
    if want is None:
        pytest.skip(f"{name}: a float decoder, recorded on {sorted(NC[name].get('decoded_on', {}))} and "
                    f"{gd.float_platform(MANIFEST['written_with']['nc'])}, not on this CPU's "
                    f"{gd.float_platform(gd.environment())} (tests/golden/regenerate.py --record-isa)")
    assert gd.describe_decoded(out) == want, decoded_mismatch(name, out)


def test_float_records_are_per_simd_level_and_vendor(monkeypatch):
    written = {"cpu_capability": "AVX512", "cpu_vendor": "AuthenticAMD"}
    entry = {"decoded": "amd512", "float_decoder": True, "decoded_on": {"AVX2/AuthenticAMD": "amd2"}}
    for env, want in [({"cpu_capability": "AVX512", "cpu_vendor": "AuthenticAMD"}, "amd512"),
                      ({"cpu_capability": "AVX2", "cpu_vendor": "AuthenticAMD"}, "amd2"),
                      ({"cpu_capability": "AVX512", "cpu_vendor": "GenuineIntel"}, None),  # not recorded: skip
                      ({}, "amd512")]:  # no torch: the written record
        monkeypatch.setattr(gd, "environment", lambda env=env: env)
        assert gd.expected_decoded(entry, written) == want, env
        assert gd.expected_decoded({**entry, "float_decoder": False}, written) == "amd512"  # one record


@pytest.mark.parametrize("name", [n for n in NC if NC[n]["encode"]])
def test_encoder_writes_the_same_bytes(name):
    want = (gd.HERE / name).read_bytes()
    case = {k: NC[name][k] for k in ("codec", "input", "quality", "kbps") if k in NC[name]}
    assert case == gd.nc_cases()[name]
    got = gd.make_nc(case)
    if got != want:
        a, b = NcFile.from_bytes(got), NcFile.from_bytes(want)
        head = [(x.codec_id, x.quality, x.shape, [len(s) for s in x.streams]) for x in (a, b)]
        pytest.fail(f"{name}: {gd.first_difference(got, want)}\n(codec, quality, shape, stream bytes): "
                    f"today {head[0]}, committed {head[1]}" + environment_note())


@pytest.mark.parametrize("name", [n for n in NC if NC[n]["encode"]])
def test_header_fields(name):
    """What info() reports of each file: its codec, quality or rate, and the input's shape."""
    e = NC[name]
    x, sr = gd.nc_inputs()[e["input"]]
    i = neurocodec.info((gd.HERE / name).read_bytes())
    assert i["codec"] == e["codec"] and i["version"] == 1
    if sr is None:
        assert i["quality"] == e["quality"] and i["shape"] == [x.shape[0], x.shape[1], 1 if x.ndim == 2 else 3]
        assert e["decoded"]["shape"] == list(x.shape) and e["decoded"]["dtype"] == "uint8"
    else:
        channels = 1 if x.ndim == 1 else x.shape[1]
        assert i["shape"] == [sr, len(x), channels] and i["quality"] == round(e["kbps"] * 10)
        assert i["bytes"] <= e["kbps"] * 1000 / 8 * len(x) / sr  # the rate is a budget for the whole file
        assert e["decoded"]["shape"] == list(x.shape) and e["decoded"]["sample_rate"] == sr


def test_decoded_images_resemble_their_inputs():
    """A sanity check on what the bytes pin: real images, not noise."""
    inputs = gd.nc_inputs()
    for name, e in NC.items():
        if "input" in e and e["codec"] != "audio-rvq":
            x = inputs[e["input"]][0].astype(np.float64)
            y = neurocodec.decode((gd.HERE / name).read_bytes()).astype(np.float64)
            assert 10 * np.log10(255 ** 2 / np.mean((x - y) ** 2)) > 20, name
