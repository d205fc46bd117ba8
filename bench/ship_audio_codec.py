"""Release step for the audio codec: training checkpoint -> codecs/audio-rvq/.

    python bench/ship_audio_codec.py --run ../runs/audio            # export + bench + card
    python bench/ship_audio_codec.py --run ../runs/audio --no-bench # reuse bench/results/audio*

1. export the run's checkpoint.pt (neurocodec export: fp16 weights and index priors fitted
   on the training audio's codes, packed by weightzip);
2. run bench/audio.py (speech/test and music/test, Opus 6/12 kbps in the same run);
3. copy the per-set results next to the weights and write MODEL_CARD.md from the measured
   numbers and the training record.
"""
from __future__ import annotations

import os

# Shipped weights are packed without zstd, so a machine without libzstd reads them too.
os.environ.setdefault("WEIGHTZIP_NO_ZSTD", "1")

import argparse
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

NAME, CODEC_ID = "audio-rvq", 3


def f(v, nd=2) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{nd}f}"


def model_card(meta: dict, bench: dict, weights_bytes: int) -> str:
    from neurocodec import load_codec

    codec = load_codec(NAME)
    cfg, tr = codec.cfg, meta["training"]
    tc = tr["config"]
    n_params = sum(p.numel() for p in codec.model.parameters())
    macs = codec.model.macs_per_second()
    sets = []
    for set_name, res in bench["sets"].items():
        rows = "\n".join(
            f"| {m['system']} | {m['nominal_kbps']:g} | {f(m['kbps'], 3)} | {f(m.get('stages'))} | {f(m['si_sdr'])} | "
            f"{f(m['mel'], 3)} | {f(m['stoi'], 3)} | {f(m['pesq_wb'])} | {f(m.get('entropy_saving_pct'), 1)} |"
            for m in res["means"])
        sets.append(f"### {set_name} ({res['files']} files)\n\n| system | nominal kbps | file kbps | stages/frame | "
                    f"SI-SDR dB | mel dist | STOI | PESQ-WB | entropy saving % |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n{rows}\n")
    rtf = [m for res in bench["sets"].values() for m in res["means"] if m["system"] == NAME]
    rtf_s = ", ".join(f"{m['nominal_kbps']:g} kbps {m['encdec_rtf']:.1f}×" for m in rtf[:3])
    cmd = (f"neurocodec train --codec audio-rvq --data ../shared/data/audio/speech/train ../shared/data/audio/music/train "
           f"--weights {','.join(f'{w:g}' for w in tc['weights'])} --out runs/audio --time-budget {tc['time_budget_min']:g} "
           f"--threads {tc['threads']}")
    return f"""# {NAME} (codec id {meta['id']}): 24 kHz neural audio codec, 0.75-9 kbps

SEANet/DAC-style convolutional autoencoder with residual vector quantization. **The default audio codec.**

| | |
|---|---|
| parameters | {n_params / 1e6:.2f} M |
| architecture | strided patch stem (kernel {2 * cfg.patch}, stride {cfg.patch}), {len(cfg.strides)} blocks (strides {list(cfg.strides)}, residual units with dilations {list(cfg.dilations)}, Snake), latent {cfg.latent_dim}; mirrored decoder ending in a transposed conv and tanh |
| frames | hop {cfg.hop_length} samples: {cfg.frame_rate:g} frames/s at {cfg.sample_rate} Hz |
| quantizer | {cfg.n_codebooks} RVQ stages × {cfg.codebook_size} codes, factorized {cfg.codebook_dim}-d L2-normalized lookups (DAC), quantizer dropout, dead-code restarts |
| compute | encoder {macs['encoder'] / 1e9:.2f} + decoder {macs['decoder'] / 1e9:.2f} GMAC per second of audio |
| weights | `weights.wz`, {weights_bytes / 2**20:.2f} MiB: float16 tensors (float32 for small ones) and the index priors, packed losslessly by weightzip without zstd (readable where libzstd is absent) |
| entropy coding | per-codebook first-order context model ({meta['priors']['n_ctx'] - 1} classes of the previous frame's code + the marginal), the core's indexed rANS |
| rate control | `--kbps` is the whole file's rate, headers included; the encoder picks how many stages per frame (e/1024 on average, spread evenly) fill it |
| channels | coded independently, sharing the rate; any input rate is resampled to 24 kHz (soxr VHQ) and back |

## Results (`bench/results/audio.md`; Opus 1.3.1 hard CBR in the same run)

Encode + decode speed on 2 cores: {rtf_s} real time (speech set).

{chr(10).join(sets)}
Plots: `quality_speech.png`, `quality_music.png`; per file: `per_file_speech.csv`, `per_file_music.csv`.
PESQ-WB is scored on speech only. Entropy saving: index bytes against fixed-length
packing (log2 K bits per code) of the same codes.

## Training

- data: `../shared/data/audio/speech/train` (LibriSpeech, 251 files, 52 min, 16 kHz) and
  `music/train` (sonic-pi samples and sms-tools sounds, 223 files, 9 min), resampled to 24 kHz,
  down-mixed to mono; sampling shares {tc['weights']}; 6 files per folder held out for validation.
  Never the test sets.
- random {tc['segment_frames'] * cfg.hop_length / cfg.sample_rate:.2f} s segments at a random level ({tc['level_db'][0]:g} to {tc['level_db'][1]:g} dBFS RMS), batch {tc['batch']},
  AdamW lr {tc['lr']:g} (β 0.8/0.99) with cosine decay to {tc['lr_final']:g}×, gradient clipping {tc['clip']:g}.
- loss: {tc['mel_weight']:g}·multi-scale mel (7 windows, 32-2048) + {tc['stft_weight']:g}·multi-resolution STFT
  + {tc['wave_weight']:g}·waveform L1 + {tc['commit_weight']:g}·commitment + {tc['codebook_weight']:g}·codebook; no adversarial
  stage (it does not pay off within CPU budgets). Quantizer dropout p={cfg.quantizer_dropout:g};
  dead codes (usage < {tc['restart_threshold']:g} of uniform) restarted every {tc['restart_every']} steps.
- {tr['step']} steps in {tr['minutes']:.0f} min on CPU (2 threads of a 2-core AMD EPYC VM). The run was
  resumed from its checkpoints three times: twice to change the time budget, and once to undo an
  experiment: from step 2612 a −SI-SDR loss term (weight 1) was added to teach the decoder the
  waveform's phase; near-silent padded clips made it spike and damage the weights (STOI on 3 test
  files fell from ~0.83 to ~0.62), and in 300 more steps SI-SDR did not improve, so training went on
  from the step-2612 checkpoint without it.
- index priors fitted on the codes of {', '.join(f'{v:g} s of {Path(k).parent.name}/{Path(k).name}' for k, v in meta['priors']['seconds'].items())}.
- command: `{cmd}`, then `neurocodec export runs/audio/checkpoint.pt --out codecs/{NAME} --name {NAME} --id {meta['id']} --default`

## Limitations

- Trained for {tr['minutes']:.0f} CPU minutes; published codecs (DAC, EnCodec) train for days on GPUs
  with adversarial losses. Expect muffled, phasey output; see the measured numbers above.
- Speech training data is 16 kHz: nothing above 8 kHz was learned from speech.
- Stereo is coded as two independent mono channels (no mid/side), each at half the rate.
- Decoding is bit-exact across processes and torch thread counts on one machine type
  (chunked decoding, each chunk on one intra-op thread); across CPU instruction sets the float32
  decoder may differ in the last bits.
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, default=REPO.parent / "runs" / "audio")
    ap.add_argument("--no-bench", action="store_true")
    ap.add_argument("--no-export", action="store_true")
    ap.add_argument("--limit", type=int)
    a = ap.parse_args()
    py, dst = sys.executable, REPO / "codecs" / NAME
    if not a.no_export:
        subprocess.run([py, "-m", "neurocodec", "export", str(a.run / "checkpoint.pt"), "--out", str(dst),
                        "--name", NAME, "--id", str(CODEC_ID), "--default"], check=True)
    if not a.no_bench:
        cmd = [py, str(REPO / "bench" / "audio.py"), "--codec", NAME] + (["--limit", str(a.limit)] if a.limit else [])
        subprocess.run(cmd, check=True)
    bench = json.loads((REPO / "bench" / "results" / "audio.json").read_text())
    for set_name in bench["sets"]:
        src = REPO / "bench" / "results" / "audio" / set_name
        shutil.copy2(src / "quality.png", dst / f"quality_{set_name}.png")
        shutil.copy2(src / "per_file.csv", dst / f"per_file_{set_name}.csv")
    results = {k: bench[k] for k in ("provenance", "sets", "usage_entropy", "seams", "memory") if k in bench}
    (dst / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    meta = json.loads((dst / "codec.json").read_text())
    (dst / "MODEL_CARD.md").write_text(model_card(meta, bench, (dst / "weights.wz").stat().st_size))
    print(f"{dst}: {sum(p.stat().st_size for p in dst.iterdir()) / 2**20:.2f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
