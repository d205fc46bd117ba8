"""Without libzstd (forced off with WEIGHTZIP_NO_ZSTD=1, read when the core first needs it):
packing works with rANS only and says so once; files without zstd streams decode; a file
that has them fails with one clear line naming the library. Each case runs in a fresh
process, since the library is looked up once per process."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import weightzip
from weightzip import _C

st = pytest.importorskip("safetensors.numpy")

SCRIPT = textwrap.dedent("""
    import sys, warnings
    import numpy as np, safetensors.numpy as st
    import weightzip
    from weightzip import _C
    src, out, zfile = sys.argv[1:4]
    assert not _C.zstd_available()
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        a = weightzip.pack(src, out + ".a.wz", level="max")
        b = weightzip.pack(src, out + ".b.wz")
    notes = [str(x.message) for x in w if "libzstd" in str(x.message)]
    assert len(notes) == 1, notes
    restored = weightzip.unpack(b, out + ".safetensors")
    assert open(restored, "rb").read() == open(src, "rb").read()
    used = set()
    for row in weightzip.info(a)["entries"] + weightzip.info(b)["entries"]:
        used |= set(row["codecs"])
    assert "zstd" not in used and "rans" in used, used
    try:
        weightzip.load(zfile)
    except weightzip.FormatError as e:
        assert "libzstd" in str(e), e
        print("OK")
""")


def _model() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    rows = np.repeat(rng.standard_normal((4, 512)).astype(np.float32), 64, axis=0)  # repeats: zstd wins
    return {"w": (rng.standard_normal((256, 256)) * 0.02).astype(np.float32), "rows": rows}


@pytest.mark.skipif(not _C.zstd_available(), reason="needs libzstd to make the zstd-coded file")
def test_packing_and_reading_without_libzstd(tmp_path):
    st.save_file(_model(), tmp_path / "m.safetensors")
    zfile = weightzip.pack(tmp_path / "m.safetensors", tmp_path / "z.wz")
    assert any("zstd" in row["codecs"] for row in weightzip.info(zfile)["entries"])  # the control
    env = {**os.environ, "WEIGHTZIP_NO_ZSTD": "1"}
    r = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "m.safetensors"), str(tmp_path / "o"),
                        str(zfile)], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "OK", r.stderr[-2000:]
    # the CLI: one line, exit 1
    r = subprocess.run([sys.executable, "-m", "weightzip", "unpack", str(zfile), "-o", str(tmp_path / "x.st")],
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "libzstd" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "x.st").exists()


def test_zstd_off_is_rans_only_and_no_bigger_than_a_few_percent(tmp_path):
    """In this process (zstd on or absent), against a fresh one with it off: the same data packs
    within 1 % when zstd has no repeats to find."""
    a = (np.random.default_rng(1).standard_normal(1 << 18) * 0.02).astype(np.float32)
    on = len(weightzip.compress(a))
    code = ("import numpy as np, weightzip; a = (np.random.default_rng(1).standard_normal(1 << 18) * 0.02)"
            ".astype(np.float32); print(len(weightzip.compress(a)))")
    r = subprocess.run([sys.executable, "-c", code], env={**os.environ, "WEIGHTZIP_NO_ZSTD": "1"},
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert on <= int(r.stdout) <= 1.01 * on
