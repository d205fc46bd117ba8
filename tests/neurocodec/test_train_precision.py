"""The image training's speed settings (TrainConfig.precision / channels_last / compile):
the bf16 path runs and stays close to fp32, the mixed forward is the model's forward when
autocast is off, checkpoints hold contiguous fp32 weights, and runs resume across settings.
CPU, one thread, tiny models."""
from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from neurocodec.runtime.registry import build_model  # noqa: E402
from neurocodec.tools.checkpoints import load_checkpoint  # noqa: E402

tr = importlib.import_module("neurocodec.tools.image.train")

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = dict(N=8, M=8, lmbdas=[0.01, 0.05])


def image_folder(root: Path, n: int = 3) -> Path:
    from PIL import Image

    root.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        yy, xx = np.mgrid[0:64 + 4 * i, 0:72].astype(np.float32)
        rgb = np.stack([128 + 90 * np.sin(xx / (5 + c) + yy / (7 + c)) for c in range(3)], 2)
        rgb += rng.normal(0, 8, rgb.shape)
        Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(root / f"{i}.png")
    return root


def smooth_batch(b: int = 2, size: int = 64) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32),
                            indexing="ij")
    x = torch.stack([0.5 + 0.4 * torch.sin(xx / (4 + c) + yy / (6 + c)) for c in range(3)])  # [3, s, s]
    return (x[None] + 0.03 * torch.randn(b, 3, size, size)).clamp(0, 1)  # [b, 3, s, s]


def twin_models(arch: str, channels_last: bool = False):
    """(fp32 model, the same weights with bf16 transforms), in training mode."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    ref = build_model(arch, TINY).train().to(memory_format=fmt)
    bf16 = build_model(arch, TINY).train().to(memory_format=fmt)
    bf16.load_state_dict(ref.state_dict())
    tr.autocast_transforms(bf16, torch.bfloat16, "cpu")
    return ref, bf16


@pytest.mark.parametrize("arch", ["hyperprior", "shallow"])
@pytest.mark.parametrize("channels_last", [False, True])
def test_bf16_loss_close_to_fp32(arch, channels_last):
    ref, bf16 = twin_models(arch, channels_last)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x, q = smooth_batch().contiguous(memory_format=fmt), torch.tensor([0, 1])
    torch.manual_seed(3)
    l32, s32 = tr.rd_loss(ref, x, q)
    torch.manual_seed(3)
    l16, s16 = tr.rd_loss(bf16, x, q)
    assert l16.dtype == torch.float32 and s16["bpp"].dtype == torch.float32
    assert l16.item() != l32.item()  # bf16 did run
    assert abs(l16.item() / l32.item() - 1) < 0.02
    assert torch.allclose(s16["bpp"], s32["bpp"], rtol=0.02)
    l16.backward()  # the bf16 backward reaches every transform, in fp32 parameters' grads
    for name, p in bf16.named_parameters():
        assert p.dtype == torch.float32, name
        if name.startswith(tr.TRANSFORMS):
            assert p.grad is not None and p.grad.dtype == torch.float32, name


def test_only_the_transforms_run_in_bf16():
    """Convs inside the transforms compute in bf16; the entropy models see fp32 inputs and
    give fp32 likelihoods; the model's outputs are fp32."""
    _, model = twin_models("hyperprior")
    seen = {}

    def record(name):
        return lambda m, i, o: seen.update({name: (i[0].dtype, (o[1] if isinstance(o, tuple) else o).dtype)})

    model.g_a[0].register_forward_hook(record("g_a conv"))
    model.g_s[-1].register_forward_hook(record("g_s conv"))
    for name in ("entropy_bottleneck", "gaussian_conditional"):
        getattr(model, name).register_forward_hook(record(name))
    out = model(smooth_batch(), torch.tensor([0, 1]))
    assert seen["g_a conv"][1] == seen["g_s conv"][1] == torch.bfloat16
    assert seen["entropy_bottleneck"] == seen["gaussian_conditional"] == (torch.float32, torch.float32)
    assert out["x_hat"].dtype == torch.float32


def test_eval_mode_and_state_dict_unchanged():
    """Validation (eval mode) runs the transforms in fp32: the same as a plain model; the
    state_dict's keys and values are the plain model's."""
    ref, bf16 = twin_models("shallow")
    assert list(ref.state_dict()) == list(bf16.state_dict())
    ref.eval(), bf16.eval()
    x, q = smooth_batch(), torch.tensor([1, 0])
    with torch.no_grad():
        a, b = ref(x, q), bf16(x, q)
    assert torch.equal(a["x_hat"], b["x_hat"])
    for k in a["likelihoods"]:
        assert torch.equal(a["likelihoods"][k], b["likelihoods"][k])


def test_precision_settings_in_config():
    cfg = tr.make_config("hyperprior", ["imgs"], precision="fp32", channels_last="false", compile="1")
    assert (cfg.precision, cfg.channels_last, cfg.compile) == ("fp32", False, True)
    default = tr.make_config("hyperprior", ["imgs"])
    assert (default.precision, default.channels_last, default.compile) == ("auto", True, False)
    with pytest.raises(ValueError, match="--precision: bad value 'fp16'"):
        tr.make_config("hyperprior", ["imgs"], precision="fp16")
    with pytest.raises(ValueError, match="--channels-last: bad value"):
        tr.make_config("hyperprior", ["imgs"], channels_last="maybe")


def test_auto_precision_follows_the_hardware():
    cpu = torch.device("cpu")
    assert tr.autocast_dtype("fp32", cpu) is None
    assert tr.autocast_dtype("bf16", cpu) is torch.bfloat16
    assert tr.autocast_dtype("auto", cpu) is (torch.bfloat16 if tr.bf16_native(cpu) else None)


def assert_fp32_contiguous(state: dict) -> None:
    for k, v in state.items():
        if v.is_floating_point():
            assert v.dtype == torch.float32, k
        assert v.is_contiguous(), k


def test_bf16_channels_last_training_checkpoints_fp32_and_resumes(tmp_path, monkeypatch):
    """A bf16 + channels_last run: its checkpoint holds contiguous fp32 weights (and optimiser
    states), it resumes to the uninterrupted run's weights, and an fp32 NCHW run resumes it."""
    monkeypatch.chdir(tmp_path)
    data = image_folder(tmp_path / "imgs")
    opts = dict(crop=64, batch=2, threads=1, device="cpu", precision="bf16", channels_last=True, **TINY)
    straight = tr.train(tr.make_config("hyperprior", [str(data)], out="straight", steps=4, **opts))
    tr.train(tr.make_config("hyperprior", [str(data)], out="resumed", steps=2, **opts))
    resumed = tr.train(tr.make_config("hyperprior", [str(data)], out="resumed", steps=4, **opts))
    a, b = load_checkpoint(straight), load_checkpoint(resumed)
    assert b["step"] == 4 and b["config"]["train"]["precision"] == "bf16"
    assert_fp32_contiguous(b["model"])
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for st in b["opt"]["state"].values():
        assert all(v.dtype == torch.float32 for v in st.values() if v.is_floating_point())
    # switch settings on resume: fp32, NCHW
    fp32 = tr.train(tr.make_config("hyperprior", [str(data)], out="resumed", steps=5,
                                   **{**opts, "precision": "fp32", "channels_last": False}))
    c = load_checkpoint(fp32)
    assert c["step"] == 5 and c["config"]["train"]["precision"] == "fp32"
    assert_fp32_contiguous(c["model"])
    assert "bf16 transforms, channels_last" in (tmp_path / "straight" / "train.log").read_text()


def test_checkpoint_exports(tmp_path, monkeypatch):
    """A channels_last bf16 checkpoint exports to a codec that encodes (weights as usual)."""
    from neurocodec.tools.image.export import export

    monkeypatch.chdir(tmp_path)
    data = image_folder(tmp_path / "imgs")
    ck = tr.train(tr.make_config("shallow", [str(data)], out="run", steps=2, crop=64, batch=2, threads=1,
                                 device="cpu", precision="bf16", channels_last=True, **TINY))
    out = export(ck, tmp_path / "codec", "tiny-bf16", 901)
    assert (Path(out) / "codec.json").exists()


@pytest.mark.slow
def test_compiled_training_runs(tmp_path, monkeypatch):
    """compile=True (torch.compile of the forward + loss; minutes on CPU the first time)."""
    monkeypatch.chdir(tmp_path)
    data = image_folder(tmp_path / "imgs")
    ck = tr.train(tr.make_config("shallow", [str(data)], out="run", steps=2, crop=64, batch=2, threads=1,
                                 device="cpu", precision="bf16", channels_last=True, compile=True, **TINY))
    assert_fp32_contiguous(load_checkpoint(ck)["model"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_bf16_training_on_cuda(tmp_path, monkeypatch):
    """precision auto on a CUDA device: bf16 autocast with device_type "cuda" where the GPU has
    bf16, fp32 weights in the checkpoint."""
    monkeypatch.chdir(tmp_path)
    data = image_folder(tmp_path / "imgs")
    ck = tr.train(tr.make_config("hyperprior", [str(data)], out="run", steps=2, crop=64, batch=2, threads=1,
                                 device="cuda", **TINY))
    assert tr.autocast_dtype("auto", torch.device("cuda")) is (
        torch.bfloat16 if torch.cuda.is_bf16_supported() else None)
    assert_fp32_contiguous(load_checkpoint(ck)["model"])
