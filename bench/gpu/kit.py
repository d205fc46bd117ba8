"""The GPU kit's data and validation helpers (train_all.py is the driver).

Data: a pack folder with train/ and val/ (or valid/, validation/) subfolders is used as it
is; any other folder (or one with train/ but no val split) is split here: every k-th file is
held out for validation, the rest are linked into a train folder under the work folder. A
test/ split is never used for validation (it is what the codecs are reported on).

Validation, on the same held-out data before and after training:
- image, model-based: the eval-mode training model (rounded latents, likelihood rates: within
  2-3 % of the real files' rate and 0.05 dB of their PSNR, tests/neurocodec/test_from_codec.py)
  per quality on fixed crops: bpp, PSNR, and the training loss λ·255²·MSE + bpp; BD-rate of
  after against before.
- image, real: the codec's own encode/decode (the shipped codec before, the trained checkpoint
  exported after) of the first crops: bytes and PSNR, BD-rate.
- audio: the eval-mode model per folder (speech, music) at 2, 4, 8 and all codebooks: the
  multi-scale mel loss of training and the SNR, on fixed segments of held-out clips.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

VAL_NAMES = ("val", "valid", "validation")


def list_files(kind: str, folder: Path) -> list[Path]:
    if kind == "image":
        from neurocodec.runtime.image.io import IMAGE_SUFFIXES

        return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    from neurocodec.runtime.audio.io import list_audio

    return list_audio(folder)


def split(kind: str, src: Path, work: Path, max_val: int) -> tuple[Path, list[Path], Path, str]:
    """(train folder, validation files, the folder the training files come from, how) for
    the data in src."""
    if (src / "train").is_dir():
        for v in VAL_NAMES:
            if (src / v).is_dir() and list_files(kind, src / v):
                return src / "train", list_files(kind, src / v)[:max_val], src / "train", f"{src}/train + {src}/{v}"
        src = src / "train"
    files = list_files(kind, src)
    if len(files) < 2:
        raise ValueError(f"{src}: {len(files)} {kind} files (need at least 2: one to train on, one to validate)")
    n_val = max(1, min(max_val, len(files) // 10))
    step = len(files) // n_val
    val = files[::step][:n_val]
    train = work / "train"
    if train.exists():
        for p in train.iterdir():
            p.unlink()
    train.mkdir(parents=True, exist_ok=True)
    for i, p in enumerate(f for f in files if f not in val):
        os.symlink(p.resolve(), train / f"{i:05d}_{p.name}")
    return train, val, src, f"{src} split here: {len(files) - n_val} train / {n_val} val files (every {step}th)"


def fit_crop(paths: list[Path], crop: int) -> int:
    """crop, or a smaller multiple of 64 that half the images are at least as large as."""
    from PIL import Image

    sides = []
    for p in paths:
        with Image.open(p) as im:
            sides.append(min(im.size))
    if not sides or np.mean(np.array(sides) >= crop) >= 0.5:
        return crop
    return max(64, int(np.median(sides)) // 64 * 64)


# ---- images -------------------------------------------------------------------------------------

def image_val_crops(paths: list[Path], crop: int, max_crops: int) -> np.ndarray:
    """Up to two fixed crops per image (centre, then top-left): uint8 [V, crop, crop, 3]."""
    from neurocodec.runtime.image.io import read_image

    crops = []
    for p in paths:
        img = read_image(p, warn_lost=False)[0]
        h, w = img.shape[:2]
        if min(h, w) < crop:
            continue
        y, x = (h - crop) // 2, (w - crop) // 2
        crops.append(img[y:y + crop, x:x + crop])
        if h >= 2 * crop or w >= 2 * crop:
            crops.append(img[:crop, :crop])
    if not crops:
        raise ValueError(f"no validation image is at least {crop}x{crop}")
    return np.stack(crops[:max_crops])


def _psnr(mse: float) -> float:
    return round(10 * math.log10(1.0 / max(mse, 1e-12)), 3)


def _bd(before: dict, after: dict) -> dict:
    from neurocodec.tools.rd import bd_psnr, bd_rate

    r1 = [v["bpp"] for v in before.values()]
    d1 = [v["psnr"] for v in before.values()]
    r2 = [v["bpp"] for v in after.values()]
    d2 = [v["psnr"] for v in after.values()]
    try:
        return {"bd_rate_pct": round(bd_rate(r1, d1, r2, d2), 2), "bd_psnr_db": round(bd_psnr(r1, d1, r2, d2), 3)}
    except ValueError as e:  # fewer than 4 qualities
        return {"bd_error": str(e)}


def image_model_val(model, crops: np.ndarray, device) -> dict:
    """Per quality {bpp, psnr, rd} of the eval-mode training model on the crops (fp32), and the
    mean rd over the qualities."""
    import torch

    lmbdas = list(model.cfg.lmbdas)
    model.eval()
    res = {}
    with torch.no_grad():
        for q, lm in enumerate(lmbdas):
            bits, se, n_px = 0.0, 0.0, 0
            for i in range(0, len(crops), 8):
                x = torch.from_numpy(crops[i:i + 8]).to(device).permute(0, 3, 1, 2).float() / 255
                out = model(x, torch.full((len(x),), q, device=device))
                bits += sum(-lik.clamp_min(1e-9).log2().sum().item() for lik in out["likelihoods"].values())
                se += (out["x_hat"].clamp(0, 1) - x).pow(2).sum().item() / 3
                n_px += x.shape[0] * x.shape[2] * x.shape[3]
            bpp, mse = bits / n_px, se / n_px
            res[q] = {"bpp": round(bpp, 5), "psnr": _psnr(mse), "rd": round(lm * 255**2 * mse + bpp, 5)}
    return {"per_quality": res, "rd_mean": round(float(np.mean([v["rd"] for v in res.values()])), 5)}


def image_real_val(codec, crops: np.ndarray) -> dict:
    """Per quality {bpp, psnr} of the codec's real files (encode, decode) of the crops."""
    res = {}
    for q in range(len(codec.cfg.lmbdas)):
        nbytes, se, n_px = 0, 0.0, 0
        for c in crops:
            data = codec.encode(c, quality=q)
            rec = codec.decode(data).astype(np.float64)
            nbytes += len(data)
            se += float(np.sum((rec - c) ** 2)) / 3 / 255**2
            n_px += c.shape[0] * c.shape[1]
        res[q] = {"bpp": round(nbytes * 8 / n_px, 5), "psnr": _psnr(se / n_px)}
    return {"per_quality": res}


def compare_image(before: dict, after: dict) -> dict:
    out = {"model": {"rd_mean_before": before["model"]["rd_mean"], "rd_mean_after": after["model"]["rd_mean"],
                     **_bd(before["model"]["per_quality"], after["model"]["per_quality"])}}
    if "real" in before and "real" in after:
        out["real"] = _bd(before["real"]["per_quality"], after["real"]["per_quality"])
    m = out["model"]
    verdict = [m.get("bd_rate_pct", math.inf) < 0, m["rd_mean_after"] < m["rd_mean_before"]]
    if "real" in out:
        verdict.append(out["real"].get("bd_rate_pct", math.inf) < 0)
    out["improved"] = all(verdict)
    return out


# ---- audio --------------------------------------------------------------------------------------

def audio_val_segments(paths: list[Path], sr: int, hop: int, seconds: float) -> np.ndarray:
    """A fixed segment (the middle `seconds`, zero-padded) of each clip, mono: float32 [V, 1, T]."""
    from neurocodec.runtime.audio.io import read_audio

    T = max(hop, int(seconds * sr) // hop * hop)
    out = np.zeros((len(paths), 1, T), np.float32)
    for i, p in enumerate(paths):
        x = read_audio(p, sr)[0].mean(0)
        s = max(0, (len(x) - T) // 2)
        seg = x[s:s + T]
        out[i, 0, :len(seg)] = seg
    return out


def audio_model_val(model, sets: dict[str, np.ndarray], device) -> dict:
    """Per folder and per number of codebooks {mel, snr_db} of the eval-mode model; mel_mean over
    all of them."""
    import torch

    from neurocodec.tools.audio.losses import MultiScaleMelLoss

    cfg = model.cfg
    mel_fn = MultiScaleMelLoss(cfg.sample_rate, mag_weight=0.0).to(device)
    model.eval()
    res: dict = {}
    with torch.no_grad():
        for name, segs in sets.items():
            res[name] = {}
            for n_q in sorted({2, 4, 8, cfg.n_codebooks}):
                if n_q > cfg.n_codebooks:
                    continue
                mel, snr = [], []
                for i in range(0, len(segs), 8):
                    x = torch.from_numpy(segs[i:i + 8]).to(device)
                    x_hat = model(x, n_q)["x_hat"]
                    mel.append(mel_fn(x_hat, x).item() * len(x))
                    err = (x_hat - x).pow(2).sum((1, 2)) / x.pow(2).sum((1, 2)).clamp_min(1e-9)
                    snr += (-10 * err.log10()).tolist()
                res[name][n_q] = {"mel": round(sum(mel) / len(segs), 5), "snr_db": round(float(np.mean(snr)), 3)}
    mels = [v["mel"] for per in res.values() for v in per.values()]
    return {"per_set": res, "mel_mean": round(float(np.mean(mels)), 5)}


def compare_audio(before: dict, after: dict) -> dict:
    b, a = before["model"], after["model"]
    d_snr = {name: {n_q: round(a["per_set"][name][n_q]["snr_db"] - v["snr_db"], 3) for n_q, v in per.items()}
             for name, per in b["per_set"].items()}
    return {"model": {"mel_mean_before": b["mel_mean"], "mel_mean_after": a["mel_mean"], "snr_db_gain": d_snr},
            "improved": a["mel_mean"] < b["mel_mean"]}
