"""A one-minute fuzzing campaign over every target (slow: `pytest -m slow tests/fuzz`).

Builds the libFuzzer harnesses of csrc/ (ASan + UBSan) and runs each a few seconds, then the
atheris harnesses of the Python decoders; any crash, sanitizer report, hang, memory blowup,
undocumented exception or inconsistent output fails the test, with the finding's input
path and log tail. Skips cleanly without clang/libFuzzer or atheris. The long campaign is
bench/fuzz.py.
"""
from __future__ import annotations

import importlib.util

import campaign
import pytest

pytestmark = pytest.mark.slow

CPP_SECONDS = 4  # x 8 targets
PY_SECONDS = 7  # x 4 targets (plus ~3 s start-up each: the codecs load)


def _report(results) -> str:
    lines = []
    for r in results:
        for f in r.findings:
            lines.append(f"[{r.target}] {f['kind']}: {f['what']}\n  input: {f['input']}\n{f['log_tail'][-1500:]}")
    return "\n\n".join(lines)


def test_cpp_decoders_campaign(tmp_path):
    import build
    cxx = build.find_cxx()
    if cxx is None:
        pytest.skip("no clang++ with libFuzzer (apt-get install clang libclang-rt-14-dev)")
    bins = build.build(cxx)
    results = [campaign.run_cpp(name, bins, tmp_path, CPP_SECONDS) for name in campaign.CPP_TARGETS]
    assert not any(r.findings for r in results), _report(results)
    for r in results:  # every harness ran and saw its decoder's code
        assert r.execs > 100 and r.cov > 50, (r.target, r.execs, r.cov)


def test_python_decoders_campaign(tmp_path):
    if importlib.util.find_spec("atheris") is None:
        pytest.skip("atheris is not installed (pip install -e '.[fuzz]')")
    names = [n for n in campaign.PY_TARGETS if campaign.python_target_available(n)]
    results = [campaign.run_python(name, tmp_path, PY_SECONDS) for name in names]
    assert not any(r.findings for r in results), _report(results)
    for r in results:
        assert r.execs > 100 and r.cov > 50, (r.target, r.execs, r.cov)
        assert sum(v for k, v in r.outcomes.items() if k != "ok") > 0, r.outcomes  # parsers refused inputs
