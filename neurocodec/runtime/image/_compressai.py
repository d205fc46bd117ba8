"""Import CompressAI's entropy models and layers without ``compressai/__init__``.

That __init__ imports every CompressAI subpackage, including the point-cloud datasets and
torch_geometric: 3-60 s on these machines, for every `neurocodec encode`. We only need
entropy_models, layers and ops, which do not depend on the rest. A placeholder package
module stands in while they are imported and while entropy models are built (their
constructors import ``compressai.ans``); it is removed right after, so a later plain
`import compressai` still runs the real __init__ (and reuses these submodules).
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from contextlib import contextmanager


@contextmanager
def _placeholder():
    if "compressai" in sys.modules:  # the real package (or our placeholder) is present
        yield
        return
    spec = importlib.util.find_spec("compressai")
    if spec is None or not spec.submodule_search_locations:
        # a ModuleNotFoundError naming it: Codec.from_dir turns it into "install the codecs extra"
        raise ModuleNotFoundError("neurocodec's image codecs need CompressAI: pip install 'neurocodec[codecs]'",
                                  name="compressai")
    stub = types.ModuleType("compressai")
    stub.__path__ = list(spec.submodule_search_locations)
    stub.__spec__ = spec
    stub.get_entropy_coder = lambda: "ans"
    stub.available_entropy_coders = lambda: ["ans"]
    sys.modules["compressai"] = stub
    try:
        yield
    finally:
        if sys.modules.get("compressai") is stub:
            del sys.modules["compressai"]


with _placeholder():
    _em = importlib.import_module("compressai.entropy_models")
    _layers = importlib.import_module("compressai.layers")

GDN = _layers.GDN
ResidualBlock = _layers.ResidualBlock


def EntropyBottleneck(channels: int):
    with _placeholder():
        return _em.EntropyBottleneck(channels)


def GaussianConditional(scale_table):
    with _placeholder():
        return _em.GaussianConditional(scale_table)
