"""Data-parallel training (neurocodec.tools.trainer under torchrun): two gloo processes, one
thread each, on a toy task and through the CLI.

The toy task draws the global batch from a generator seeded alike on every process and keeps
this process's rows, so two processes must reproduce the one-process run up to float
rounding. The file doubles as the torchrun worker script (run as __main__ below): one launch
(`python -m torch.distributed.run --nproc-per-node 2 --standalone test_ddp.py ROOT`) runs
every multi-process phase, the `neurocodec train` command last (what `torchrun -m neurocodec
train` runs in each process), and each rank writes what it saw as JSON for the tests. The
literal `torchrun ... -m neurocodec train` launch is a slow test (it costs a second launch)."""
from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from neurocodec.cli import main  # noqa: E402
from neurocodec.tools import trainer  # noqa: E402
from neurocodec.tools.checkpoints import load_checkpoint  # noqa: E402
from neurocodec.tools.trainer import TrainTask, fit, limit_steps, open_run  # noqa: E402

WIDTH, STEPS = 4, 6


@dataclass
class ShardConfig:
    out: str = ""
    steps: int = STEPS
    time_budget_min: float = 0.0
    batch: int = 8  # global
    lr: float = 0.05
    clip: float = 1.0
    val_every: int = 4
    ckpt_every_min: float = 0.0  # a checkpoint after every step
    seed: int = 0
    device: str = "cpu"
    threads: int = 1
    init: str = ""
    model: dict = field(default_factory=lambda: {"arch": "toy", "width": WIDTH})


class ShardModel(torch.nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.lin = torch.nn.Linear(width, 1)
        self.rare = torch.nn.Linear(width, 1, bias=False)  # only rows with x0 > 1.2 reach it: often no gradient
        self.scale = torch.nn.Parameter(torch.zeros(()))  # trained by the second optimiser


class ShardTask(TrainTask):
    """Linear regression whose global batch every process draws alike (its rng is seeded by
    cfg.seed, not run.seed) and of which it keeps its own rows; a parameter that a batch may
    not reach (a gradient missing on one process, or on all); a second optimiser."""
    desc, shown = "toy", ("mse",)

    def __init__(self, cfg: ShardConfig, run, sleep: float = 0.0):
        self.cfg, self.run, self.sleep = cfg, run, sleep
        self.rng = np.random.default_rng(cfg.seed)
        self.model = ShardModel(cfg.model["width"])
        self.optimizers = {"opt": torch.optim.Adam([*self.model.lin.parameters(), self.model.rare.weight], lr=cfg.lr),
                           "aux_opt": torch.optim.SGD([self.model.scale], lr=0.1)}
        self.w_true = torch.arange(cfg.model["width"], dtype=torch.float32)  # [W]
        self.after, self.validations, self.local_batches = [], 0, set()

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        time.sleep(self.sleep)
        b = self.cfg.batch  # this process's share
        self.local_batches.add(b)
        n = b * self.run.world
        x = self.rng.standard_normal((n, WIDTH)).astype(np.float32)  # [n, W]
        noise = 0.1 * self.rng.standard_normal(n).astype(np.float32)  # [n]
        rows = slice(self.run.rank * b, (self.run.rank + 1) * b)
        return torch.from_numpy(x[rows]), torch.from_numpy(noise[rows])

    def loss(self, batch):
        x, noise = batch
        y = x @ self.w_true + noise  # [b]
        err = (self.model.lin(x)[:, 0] - y).pow(2)  # [b]
        loss = err.mean()
        hit = x[:, 0] > 1.2  # [b]
        if hit.any():
            loss = loss + (self.model.rare(x[hit])[:, 0] - 1).pow(2).sum() / len(x)
        return loss, {"mse": err.detach()}

    def lr_at(self, frac: float) -> float:
        return self.cfg.lr * (1 - 0.5 * frac)

    def after_step(self, step: int) -> dict:
        self.after.append(step)
        aux = (self.model.scale - 1).pow(2)
        self.optimizers["aux_opt"].zero_grad()
        aux.backward()
        self.optimizers["aux_opt"].step()
        return {"aux": aux.detach()}

    def validate(self) -> dict:
        self.validations += 1
        return {"w": round(self.model.lin.weight.sum().item(), 4)}


def shard_run(out: Path, task_opts: dict | None = None, **cfg_opts) -> ShardTask:
    cfg = ShardConfig(out=str(out), **cfg_opts)
    run = open_run(cfg)
    task = ShardTask(cfg, run, **(task_opts or {}))
    task.ckpt = fit(task, run)
    task.seed = run.seed
    return task


def weights(task_or_state) -> dict[str, list]:
    sd = task_or_state.model.state_dict() if isinstance(task_or_state, ShardTask) else task_or_state["model"]
    return {k: v.flatten().tolist() for k, v in sd.items()}


def max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float(np.abs(np.subtract(a[k], b[k])).max()) for k in a)


# ---- the torchrun worker ------------------------------------------------------------------------

def worker(root: Path) -> None:
    """Every phase on this process; each rank writes root/<phase>-rank<r>.json."""
    rank = int(os.environ["RANK"])
    saves = []
    real_save = trainer.save_checkpoint
    trainer.save_checkpoint = lambda path, state: (saves.append(state["step"]), real_save(path, state))

    def record(phase: str, task: ShardTask | None = None, **more) -> None:
        res = dict(more, saves=list(saves))
        if task is not None:
            res.update(weights=weights(task), after=task.after, validations=task.validations, seed=task.seed,
                       local_batches=sorted(task.local_batches))
        (root / f"{phase}-rank{rank}.json").write_text(json.dumps(res))
        saves.clear()

    record("straight", shard_run(root / "straight"))  # 6 steps
    with limit_steps(3):
        record("half", shard_run(root / "half"))  # 3 of 6 steps
    if rank == 0:
        shutil.copytree(root / "half", root / "half_copy")  # resumed by one process in the test
    record("resumed", shard_run(root / "half"))  # steps 4..6
    record("from_one", shard_run(root / "from_one"))  # a one-process checkpoint at step 3, resumed
    # rank 1 is slower: the time budget must stop both at rank 0's step, in step
    record("budget", shard_run(root / "budget", steps=10**6, time_budget_min=0.4 / 60, ckpt_every_min=5.0,
                               task_opts={"sleep": 0.03 * rank}))
    try:
        shard_run(root / "odd", batch=7)
    except ValueError as e:
        record("odd", error=str(e))
    # the audio task: dead-code restarts (from each rank's own batch) every other step, weights compared each step
    from tiny_codec import TINY_AUDIO_MODEL

    audio_train = importlib.import_module("neurocodec.tools.audio.train")
    audio_train.train(audio_train.make_config(
        "audio-rvq", [str(root / "clips")], out=str(root / "audio"), steps=4, batch=4, threads=1, device="cpu",
        segment_frames=8, restart_every=2, restart_threshold=0.9, ckpt_every_min=0, **TINY_AUDIO_MODEL))
    os.chdir(root)  # the CLI, in this process group (as `torchrun -m neurocodec train` runs it in a fresh one)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = main(CLI_TRAIN)
    record("cli", status=status, stdout=out.getvalue())


# ---- the tests ----------------------------------------------------------------------------------

def torchrun(*args, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """python -m torch.distributed.run --nproc-per-node 2 --standalone ARGS, one thread each."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--standalone", *map(str, args)]
    with subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True) as p:  # a session of its own: a hang kills the workers too
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            out, err = p.communicate()
            pytest.fail(f"torchrun hung ({timeout} s): {err[-6000:]}")
    return subprocess.CompletedProcess(cmd, p.returncode, out, err)


CLI_TRAIN = ["train", "--codec", "hyperprior", "--N", "8", "--M", "8", "--lmbda", "0.01,0.05", "--data", "imgs",
             "--out", "run", "--crop", "64", "--batch", "4", "--threads", "1", "--device", "cpu", "--steps", "100",
             "--max-steps", "2"]


def tiny_images(folder: Path) -> None:
    from cli_helpers import smooth_image

    folder.mkdir()
    for i in range(3):
        smooth_image(64 + 4 * i, 68).save(folder / f"{i}.png")


def tiny_clips(folder: Path) -> None:
    import soundfile as sf
    from tiny_codec import tone

    folder.mkdir()
    for i in range(3):
        sf.write(str(folder / f"c{i}.wav"), tone(16000, 0.5, seed=i), 16000)


@pytest.fixture(scope="module")
def ddp(tmp_path_factory) -> Path:
    """The worker's phases, run once by two processes (after the one-process checkpoint that
    one phase resumes)."""
    root = tmp_path_factory.mktemp("ddp")
    tiny_images(root / "imgs")
    tiny_clips(root / "clips")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with limit_steps(3):
            shard_run(root / "from_one")
    finally:
        torch.set_num_threads(n)
    r = torchrun(Path(__file__).resolve(), root, cwd=root)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-6000:]
    return root


def result(root: Path, phase: str) -> list[dict]:
    return [json.loads((root / f"{phase}-rank{r}.json").read_text()) for r in range(2)]


@pytest.mark.usefixtures("one_torch_thread")
def test_two_processes_train_as_one_with_the_global_batch(ddp, tmp_path):
    one = shard_run(tmp_path / "one")
    r0, r1 = result(ddp, "straight")
    assert r0["weights"] == r1["weights"]  # bit for bit on both processes
    assert max_diff(r0["weights"], weights(one)) < 1e-5
    assert r0["after"] == r1["after"] == one.after == list(range(1, STEPS + 1))
    assert r0["local_batches"] == r1["local_batches"] == [4]  # each process draws half of the global batch
    assert r0["seed"] == one.seed == 0 and r1["seed"] != 0  # per-rank seeds; rank 0 keeps the one-process seed
    assert (r0["validations"], r1["validations"]) == (one.validations, 0)  # validation on rank 0 only
    a, b = load_checkpoint(ddp / "straight" / "checkpoint.pt"), load_checkpoint(one.ckpt)
    assert a["step"] == b["step"] == STEPS and a["world"] == 2 and b["world"] == 1
    assert a["config"]["train"]["batch"] == 8  # the global batch is recorded
    assert a["ema"] == pytest.approx(b["ema"], rel=1e-5)  # the mean loss over both processes
    assert len(a["rng_ranks"]) == 2 and "rng_ranks" not in b


def test_only_rank_0_writes_checkpoints_and_the_log(ddp):
    r0, r1 = result(ddp, "straight")
    assert r0["saves"] == [*range(1, STEPS + 1), STEPS] and r1["saves"] == []  # every step, and at the end
    assert sorted(p.name for p in (ddp / "straight").iterdir()) == ["checkpoint.pt", "train.log"]
    log = (ddp / "straight" / "train.log").read_text()
    assert log.count("done: step 6") == 1 and "2 processes (gloo), global batch 8" in log


@pytest.mark.usefixtures("one_torch_thread")
def test_resume_under_two_processes_and_across_process_counts(ddp, tmp_path):
    straight, half, resumed = result(ddp, "straight")[0], result(ddp, "half")[0], result(ddp, "resumed")
    assert half["after"] == [1, 2, 3] and half["saves"] == [1, 2, 3, 3]  # limit_steps: 3 steps, checkpointed
    assert resumed[0]["after"] == [4, 5, 6] and resumed[0]["weights"] == resumed[1]["weights"]
    assert resumed[0]["weights"] == straight["weights"]  # the interrupted run is the uninterrupted one
    assert "resumed at step 3" in (ddp / "half" / "train.log").read_text()
    # a two-process checkpoint resumed by one process (rank 0's random states)
    one = shard_run(tmp_path / "ref")
    shutil.copytree(ddp / "half_copy", tmp_path / "half")
    alone = shard_run(tmp_path / "half")
    assert alone.after == [4, 5, 6] and max_diff(weights(alone), weights(one)) < 1e-5
    # a one-process checkpoint resumed by two (fresh random states)
    from_one = result(ddp, "from_one")
    assert from_one[0]["after"] == from_one[1]["after"] == [4, 5, 6]
    assert from_one[0]["weights"] == from_one[1]["weights"]
    log = (ddp / "from_one" / "train.log").read_text()
    assert "resumed at step 3" in log and "reseeded: the checkpoint is of 1 processes" in log


def test_time_budget_is_rank_0s_clock(ddp):
    r0, r1 = result(ddp, "budget")
    assert r0["after"] == r1["after"] and 0 < len(r0["after"]) < 10**6  # both stopped after the same step
    assert r0["weights"] == r1["weights"]
    state = load_checkpoint(ddp / "budget" / "checkpoint.pt")
    assert state["step"] == r0["after"][-1] and state["elapsed"] >= 0.4


def test_audio_restarts_stay_identical_on_every_process(ddp):
    log = (ddp / "audio" / "train.log").read_text()
    assert "step 2 restarted" in log and "step 4 restarted" in log and "done: step 4" in log
    assert "differed" not in log  # the weights were compared at every step's checkpoint


def test_global_batch_must_split_evenly(ddp):
    assert all("--batch 7 (the global batch) does not split evenly over 2 processes" in r["error"]
               for r in result(ddp, "odd"))


def check_cli_run(folder: Path) -> None:
    """One checkpoint (of the global batch, after --max-steps steps) and one log, rank 0's."""
    assert sorted(p.name for p in folder.iterdir()) == ["checkpoint.pt", "train.log"]
    state = load_checkpoint(folder / "checkpoint.pt")
    assert state["step"] == 2 and state["world"] == 2 and state["config"]["train"]["batch"] == 4
    log = (folder / "train.log").read_text()
    assert log.count("done: step 2") == 1 and "2 processes (gloo), global batch 4" in log
    assert "differed" not in log


def test_neurocodec_train_under_torchrun(ddp):
    """`neurocodec train --max-steps 2` on a few tiny images, in each of the two processes: both
    succeed, and only rank 0 (the one writer) prints the checkpoint line."""
    results = result(ddp, "cli")
    assert [r["status"] for r in results] == [0, 0]
    assert ["checkpoint: run/checkpoint.pt" in r["stdout"] for r in results] == [True, False]
    check_cli_run(ddp / "run")


@pytest.mark.usefixtures("one_torch_thread")
def test_max_steps_in_one_process(tmp_path, monkeypatch, capsys):
    """--max-steps without torchrun: 2 more steps per invocation, a checkpoint after each."""
    monkeypatch.chdir(tmp_path)
    tiny_images(tmp_path / "imgs")
    for step in (2, 4):
        assert main(CLI_TRAIN) == 0
        state = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
        assert state["step"] == step and state["world"] == 1 and "rng_ranks" not in state
    assert "checkpoint: run/checkpoint.pt" in capsys.readouterr().out


@pytest.mark.slow
def test_torchrun_module_cli(tmp_path):
    """The literal `torchrun --nproc-per-node 2 -m neurocodec train ...` (a launch of its own)."""
    tiny_images(tmp_path / "imgs")
    r = torchrun("-m", "neurocodec", *CLI_TRAIN, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-6000:]
    assert r.stdout.count("checkpoint: run/checkpoint.pt") == 1  # rank 0's line only
    check_cli_run(tmp_path / "run")


if __name__ == "__main__":  # the torchrun worker: python -m torch.distributed.run ... test_ddp.py ROOT
    worker(Path(sys.argv[1]))
