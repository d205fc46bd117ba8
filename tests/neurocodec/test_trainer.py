"""The shared training loop (neurocodec.tools.trainer) on a toy task, the checkpoint helpers,
and the image/audio training configs (make_config) and run folders. CPU, one thread, tiny."""
from __future__ import annotations

import importlib
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from neurocodec.tools import checkpoints  # noqa: E402
from neurocodec.tools.checkpoints import load_checkpoint, save_checkpoint  # noqa: E402
from neurocodec.tools.trainer import TrainTask, fit, open_run  # noqa: E402

# the modules (the packages' own train() is the kind-generic entry point)
image_train = importlib.import_module("neurocodec.tools.image.train")
audio_train = importlib.import_module("neurocodec.tools.audio.train")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---- the loop on a toy task ---------------------------------------------------------------------

@dataclass
class ToyConfig:
    out: str = ""
    steps: int = 6
    time_budget_min: float = 0.0
    lr: float = 0.05
    clip: float = 1.0
    val_every: int = 4
    ckpt_every_min: float = 0.0  # 0: a checkpoint after every step
    seed: int = 0
    device: str = "cpu"
    threads: int = 1
    init: str = ""
    model: dict = field(default_factory=lambda: {"arch": "toy", "width": 4})


class Crash(Exception):
    pass


class ToyModel(torch.nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.lin = torch.nn.Linear(width, 1)
        self.scale = torch.nn.Parameter(torch.zeros(()))  # trained by the second optimiser


class ToyTask(TrainTask):
    """Linear regression with numpy-drawn inputs and torch-drawn noise (both random states
    matter for resume), a second optimiser stepped in after_step."""
    desc, shown = "toy", ("mse",)

    def __init__(self, cfg: ToyConfig, run, crash_at: int = 0, sleep: float = 0.0):
        self.cfg, self.crash_at, self.sleep = cfg, crash_at, sleep
        self.rng = np.random.default_rng(run.seed)
        self.model = ToyModel(cfg.model["width"])
        self.optimizers = {"opt": torch.optim.Adam(self.model.lin.parameters(), lr=cfg.lr),
                           "aux_opt": torch.optim.SGD([self.model.scale], lr=0.1)}
        self.w_true = torch.arange(cfg.model["width"], dtype=torch.float32)  # [W]
        self.batches, self.after, self.lrs, self.validations = 0, [], [], 0

    def batch(self) -> torch.Tensor:
        self.batches += 1
        if self.batches == self.crash_at:
            raise Crash
        time.sleep(self.sleep)
        return torch.from_numpy(self.rng.standard_normal((8, self.cfg.model["width"])).astype(np.float32))  # [8, W]

    def loss(self, x: torch.Tensor):
        y = x @ self.w_true + 0.1 * torch.randn(len(x))  # [8]
        err = (self.model.lin(x)[:, 0] - y).pow(2)  # [8]
        return err.mean(), {"mse": err.detach()}

    def lr_at(self, frac: float) -> float:
        self.lrs.append(self.cfg.lr * (1 - 0.5 * frac))
        return self.lrs[-1]

    def after_step(self, step: int) -> dict:
        self.after.append(step)
        aux = (self.model.scale - 1).pow(2)
        self.optimizers["aux_opt"].zero_grad()
        aux.backward()
        self.optimizers["aux_opt"].step()
        return {"aux": aux.detach()}

    def validate(self) -> dict:
        assert not self.model.training and not torch.is_grad_enabled()
        self.validations += 1
        return {"w": round(self.model.lin.weight.sum().item(), 4)}


def toy_run(out: Path, resume: bool = True, task_opts: dict | None = None, **cfg_opts) -> ToyTask:
    cfg = ToyConfig(out=str(out), **cfg_opts)
    run = open_run(cfg, resume)
    task = ToyTask(cfg, run, **(task_opts or {}))
    task.ckpt = fit(task, run)
    assert task.ckpt == out / "checkpoint.pt"
    return task


def assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_fit_checkpoints_steps_and_validates(tmp_path):
    task = toy_run(tmp_path / "run")
    assert task.after == [1, 2, 3, 4, 5, 6]
    assert task.lrs[0] == 0.05 and task.lrs[-1] == pytest.approx(0.05 * (1 - 0.5 * 5 / 6))
    assert task.validations == 2  # at step 4 and at the end
    state = load_checkpoint(task.ckpt)  # weights_only=True
    assert state["step"] == 6 and state["elapsed"] > 0
    assert state["config"] == {"train": asdict(task.cfg), "model": {"arch": "toy", "width": 4}}
    assert {"model", "opt", "aux_opt", "rng", "ema"} <= state.keys()
    assert_same_state(state["model"], task.model.state_dict())
    log = (tmp_path / "run" / "train.log").read_text()
    assert "val step 4" in log and "done: step 6" in log
    assert not list((tmp_path / "run").glob("*.tmp"))


def test_resume_after_a_crash_gives_the_uninterrupted_weights(tmp_path):
    straight = toy_run(tmp_path / "a")
    with pytest.raises(Crash):
        toy_run(tmp_path / "b", task_opts={"crash_at": 4})  # 3 steps done, each checkpointed
    assert load_checkpoint(tmp_path / "b" / "checkpoint.pt")["step"] == 3
    resumed = toy_run(tmp_path / "b")
    assert resumed.after == [4, 5, 6]
    assert "resumed at step 3" in (tmp_path / "b" / "train.log").read_text()
    a, b = load_checkpoint(straight.ckpt), load_checkpoint(resumed.ckpt)
    assert b["step"] == 6
    assert_same_state(a["model"], b["model"])
    assert a["ema"] == pytest.approx(b["ema"])
    assert a["opt"]["state"][0]["step"] == b["opt"]["state"][0]["step"] == 6  # Adam's state carried over


def test_resume_of_a_checkpoint_without_random_states(tmp_path):
    """Checkpoints of the earlier loops had no "rng" or "ema": those resume (reseeded)."""
    with pytest.raises(Crash):
        toy_run(tmp_path / "run", task_opts={"crash_at": 3})
    state = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    del state["rng"], state["ema"]
    torch.save(state, tmp_path / "run" / "checkpoint.pt")
    task = toy_run(tmp_path / "run")
    assert task.after == [3, 4, 5, 6] and load_checkpoint(task.ckpt)["step"] == 6


def test_restart_ignores_the_checkpoint(tmp_path):
    toy_run(tmp_path / "run", steps=2)
    task = toy_run(tmp_path / "run", resume=False, steps=3)
    assert task.after == [1, 2, 3]


def test_time_budget_stops_and_checkpoints(tmp_path):
    budget_s = 0.3
    task = toy_run(tmp_path / "run", steps=10**6, time_budget_min=budget_s / 60, ckpt_every_min=5.0,
                   task_opts={"sleep": 0.02})
    state = load_checkpoint(task.ckpt)
    assert 0 < state["step"] < 10**6 and state["step"] == task.after[-1]
    assert state["elapsed"] >= budget_s
    assert task.lrs[-1] < 0.05  # the schedule followed the time, not the step count
    assert not list((tmp_path / "run").glob("*.tmp"))


def test_save_checkpoint_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    good = {"config": {"model": {}}, "model": {"w": torch.ones(2)}, "step": 1}
    save_checkpoint(path, good)
    assert load_checkpoint(path)["step"] == 1

    def half_save(obj, f):
        Path(f).write_bytes(b"PK\x03\x04 half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoints.torch, "save", half_save)
    with pytest.raises(OSError):
        save_checkpoint(path, {**good, "step": 2})
    assert load_checkpoint(path)["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]


# ---- make_config --------------------------------------------------------------------------------

def test_module_constants():
    assert (image_train.KIND, image_train.ARCHS) == ("image", ("hyperprior", "shallow"))
    assert (audio_train.KIND, audio_train.ARCHS) == ("audio", ("audio-rvq",))
    assert audio_train.TrainConfig is audio_train.AudioTrainConfig


@pytest.mark.parametrize("mod", [image_train, audio_train])
def test_make_config_defaults_are_the_dataclass_defaults(mod):
    arch = mod.ARCHS[-1]
    cfg = mod.make_config(arch, ["d"], steps=None, batch=None, lr=None)
    ref = asdict(mod.TrainConfig())
    got = asdict(cfg)
    for k in set(ref) - {"data", "out", "model"}:
        assert got[k] == ref[k], k
    assert cfg.out == f"runs/{arch}" and mod.TrainConfig().out == ""


def test_make_config_image_overrides():
    cfg = image_train.make_config("shallow", ["imgs"], out="o", steps=3, crop=64, batch=2, lr=2e-4, threads=1,
                                  time_budget_min=1.5, fixed_quality=1, init="x.pt", lmbdas=[0.01, 0.05], N=16,
                                  M=None)
    assert (cfg.data, cfg.out, cfg.steps, cfg.crop, cfg.batch, cfg.lr, cfg.threads) == ("imgs", "o", 3, 64, 2, 2e-4, 1)
    assert (cfg.time_budget_min, cfg.fixed_quality, cfg.init) == (1.5, 1, "x.pt")
    assert cfg.model["arch"] == "shallow" and cfg.model["lmbdas"] == [0.01, 0.05]
    assert cfg.model["N"] == 16 and cfg.model["M"] == 192  # M: ImageModelConfig's default
    assert image_train.make_config("hyperprior", "imgs", lmbdas="0.1, 0.2").model["lmbdas"] == [0.1, 0.2]
    assert image_train.make_config("hyperprior", ["imgs"], out=Path("r")).out == "r"


def test_make_config_audio_overrides():
    cfg = audio_train.make_config("audio-rvq", ["speech", "music"], weights="3,1", batch=4, n_codebooks=4,
                                  channels=8, strides=[2, 4])
    assert cfg.data == ["speech", "music"] and cfg.weights == [3.0, 1.0] and cfg.batch == 4
    assert cfg.model["arch"] == "audio-rvq" and cfg.model["n_codebooks"] == 4 and cfg.model["channels"] == 8
    assert tuple(cfg.model["strides"]) == (2, 4) and cfg.model["patch"] == audio_train.DEFAULT_MODEL["patch"]
    assert audio_train.make_config("audio-rvq", ["a"]).model["n_codebooks"] == 12  # the shipped recipe


@pytest.mark.parametrize("mod, arch, data, opts, match", [
    (audio_train, "audio-rvq", ["a"], {"crop": 64}, "--crop is not an option of audio training"),
    (audio_train, "audio-rvq", ["a"], {"lmbdas": [0.1]}, "--lmbdas is not an option of audio training"),
    (image_train, "hyperprior", ["a"], {"weights": [1.0]}, "--weights is not an option of image training"),
    (image_train, "hyperprior", ["a"], {"model": {}}, "--model is not an option of image training"),
    (image_train, "hyperprior", ["a"], {"steps": 2.5}, "--steps: bad value"),
    (image_train, "hyperprior", ["a", "b"], {}, "one data folder"),
    (image_train, "hyperprior", [], {}, "one data folder"),
    (audio_train, "audio-rvq", [], {}, "one or more data folders"),
    (audio_train, "audio-rvq", ["a", "b"], {"weights": [1.0]}, "1 shares for 2 data folders"),
    (image_train, "audio-rvq", ["a"], {}, "not an image model"),
    (audio_train, "shallow", ["a"], {}, "not an audio model"),
    (audio_train, "audio-rvq", ["a"], {"patch": 3}, "patch must be 1 or even"),
])
def test_make_config_errors(mod, arch, data, opts, match):
    with pytest.raises(ValueError, match=match):
        mod.make_config(arch, data, **opts)


# ---- the image and audio tasks ------------------------------------------------------------------

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


def test_image_training_out_default_and_exact_resume(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = image_folder(tmp_path / "imgs")
    opts = dict(crop=64, batch=2, threads=1, device="cpu", N=8, M=8, lmbdas=[0.01, 0.05])
    straight = image_train.train(image_train.make_config("shallow", [str(data)], out="straight", steps=4, **opts))
    image_train.train(image_train.make_config("shallow", [str(data)], steps=2, **opts))
    path = image_train.train(image_train.make_config("shallow", [str(data)], steps=4, **opts))
    assert path == Path("runs/shallow/checkpoint.pt")
    a, b = load_checkpoint(straight), load_checkpoint(path)
    assert b["step"] == 4 and b["config"]["train"]["out"] == "runs/shallow"
    assert_same_state(a["model"], b["model"])  # lr is flat before lr_drop_at: the same run
    assert b["config"]["model"]["N"] == 8 and set(b) >= {"opt", "aux_opt"}


def test_audio_training_out_default_and_resume(tmp_path, monkeypatch):
    import soundfile as sf
    from tiny_codec import TINY_AUDIO_MODEL, tone

    monkeypatch.chdir(tmp_path)
    data = tmp_path / "clips"
    data.mkdir()
    for i in range(3):
        sf.write(str(data / f"c{i}.wav"), tone(16000, 0.5, seed=i), 16000)
    opts = dict(batch=2, threads=1, device="cpu", segment_frames=8, restart_every=2, **TINY_AUDIO_MODEL)
    cfg = audio_train.make_config("audio-rvq", [str(data)], steps=2, **opts)
    cfg.out = ""
    assert audio_train.train(cfg) == Path("runs/audio-rvq/checkpoint.pt")
    path = audio_train.train(audio_train.make_config("audio-rvq", [str(data)], steps=3, **opts))
    state = load_checkpoint(path)
    assert state["step"] == 3 and state["config"]["model"]["n_codebooks"] == TINY_AUDIO_MODEL["n_codebooks"]
    assert state["config"]["train"]["data"] == [str(data)]
    log = Path("runs/audio-rvq/train.log").read_text()
    assert "resumed at step 2" in log and "step 2 restarted" in log
