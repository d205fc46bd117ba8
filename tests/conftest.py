"""Root of the test suite: markers, shared fixtures. Each half has its own conftest
(tests/weightzip/, tests/neurocodec/); helpers live in common.py."""
from __future__ import annotations

import pytest


def pytest_configure(config):
    # also declared in pyproject.toml; repeated so the suite runs cleanly from anywhere
    config.addinivalue_line("markers", "data: tests that need ../shared/data (skipped when absent)")
    config.addinivalue_line("markers", "slow: long-running tests, excluded by default (run with -m slow)")


@pytest.fixture
def one_torch_thread():
    """Torch on one intra-op thread, seeded (fast, repeatable small-model tests)."""
    torch = pytest.importorskip("torch")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(n)
