#!/usr/bin/env python3
"""A peer's whole trainer on Fashion-MNIST, unmodified: lucidrains' denoising-diffusion-pytorch
(`Unet`, `GaussianDiffusion`, `Trainer` from the venv), for the side-by-side comparison with
ddpm-rs's `configs/fashion-mnist.toml` (issue 19, BENCHMARKS.md "Fashion-MNIST, equal budget").

It writes the training images (Debian's dataset-fashion-mnist files, or --data DIR) as PNGs
padded to 32x32 with 2 black pixels a side (as ddpm-rs pads them), trains with the paper's
diffusion (T = 1000, linear betas, eps prediction) and the given batch, learning rate and EMA
decay (EMA updated every step, as ddpm-rs does), `calculate_fid = False`, then samples the EMA
model with DDIM (eta 0) or ancestrally into `samples.npz` (array `samples`, float32 in [-1, 1],
N x 1 x 32 x 32), which `cargo xtask fid --samples OUT/samples-ddim50-seed0.npz --ref fashion-mnist`
measures with our measure. The last line of stdout is a JSON summary (parameters, wall times,
images per second).

    python scripts/peer_fashion.py --out /tmp/peer --steps 2000 --dim 28 --samples 10000

For a comparison at equal wall time (scripts/peer_fashion_budget.sh), `--save-every S` makes the
Trainer save `results/model-{step // S}.pt` every S steps (its own `save_and_sample_every`; the
one image it samples there uses DDIM at 50 steps), the training is stopped from outside at the
budget, and `--from-milestone M` then samples that saved model instead of training.
"""

import argparse
import gzip
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

PACKAGE_DIR = Path("/usr/share/datasets/fashion-mnist")


def read_idx(path: Path) -> np.ndarray:
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    dims = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def find(data: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz"):
        if (data / name).is_file():
            return data / name
    sys.exit(f"{data}: no {stem}(.gz): install Debian's dataset-fashion-mnist or pass --data DIR")


def write_images(data: Path, folder: Path, limit: int | None) -> int:
    from PIL import Image

    images = read_idx(find(data, "train-images-idx3-ubyte"))
    if limit:
        images = images[:limit]
    folder.mkdir(parents=True, exist_ok=True)
    if len(list(folder.glob("*.png"))) == len(images):
        return len(images)
    padded = np.pad(images, ((0, 0), (2, 2), (2, 2)))
    for i, img in enumerate(padded):
        Image.fromarray(img, mode="L").save(folder / f"{i:05d}.png")
    return len(images)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--data", type=Path, default=PACKAGE_DIR)
    p.add_argument("--limit", type=int, default=None, help="first N training images only")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--ema-decay", type=float, default=0.999)
    p.add_argument("--dim", type=int, default=28, help="Unet(dim, dim_mults=(1, 2, 2))")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--samples", type=int, default=1000)
    p.add_argument("--sample-batch", type=int, default=250)
    p.add_argument("--samplers", default="ddim50", help="comma-separated: ddim50, ancestral")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save-every", type=int, default=10**9, help="the Trainer's save_and_sample_every")
    p.add_argument("--from-milestone", type=int, default=None,
                   help="skip training: sample results/model-M.pt")
    p.add_argument("--prepare-only", action="store_true", help="write the PNG folder, then stop")
    a = p.parse_args()
    if a.steps < 1 or a.samples < 0 or a.batch < 16:
        sys.exit("--steps must be >= 1, --samples >= 0, --batch >= 16 (the Trainer's minimum)")

    import torch

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    from denoising_diffusion_pytorch import GaussianDiffusion, Trainer, Unet

    folder = a.out / "images"
    n_images = write_images(a.data, folder, a.limit)
    if a.prepare_only:
        return
    model = Unet(dim=a.dim, dim_mults=(1, 2, 2), channels=1)
    params = sum(t.numel() for t in model.parameters())
    diffusion = GaussianDiffusion(
        model,
        image_size=32,
        timesteps=1000,
        objective="pred_noise",
        beta_schedule="linear",
        sampling_timesteps=50,
    )
    trainer = Trainer(
        diffusion,
        str(folder),
        train_batch_size=a.batch,
        train_lr=a.lr,
        train_num_steps=a.steps,
        ema_update_every=1,
        ema_decay=a.ema_decay,
        augment_horizontal_flip=False,
        save_and_sample_every=a.save_every,
        num_samples=1,
        results_folder=str(a.out / "results"),
        calculate_fid=False,
        amp=False,
    )
    if a.from_milestone is None:
        started = time.time()
        trainer.train()
        train_s = time.time() - started
    else:
        trainer.load(a.from_milestone)
        a.steps, train_s = trainer.step, float("nan")
    summary = {
        "peer": "denoising-diffusion-pytorch",
        "params": params,
        "images": n_images,
        "steps": a.steps,
        "batch": a.batch,
        "threads": a.threads,
        "train_seconds": train_s,
        "train_images_per_s": a.steps * a.batch / train_s,
    }
    ema = trainer.ema.ema_model.eval()
    for sampler in [s for s in a.samplers.split(",") if s and a.samples]:
        if sampler == "ddim50":
            ema.sampling_timesteps, ema.is_ddim_sampling, ema.ddim_sampling_eta = 50, True, 0.0
        elif sampler == "ancestral":
            ema.sampling_timesteps, ema.is_ddim_sampling = 1000, False
        else:
            sys.exit(f"--samplers: unknown {sampler!r} (ddim50, ancestral)")
        torch.manual_seed(a.seed)
        started = time.time()
        parts, left = [], a.samples
        with torch.inference_mode():
            while left > 0:
                b = min(a.sample_batch, left)
                parts.append(ema.sample(batch_size=b).clamp(0, 1) * 2 - 1)
                left -= b
        secs = time.time() - started
        x = torch.cat(parts).float().numpy()
        tag = "" if a.from_milestone is None else f"-m{a.from_milestone}"
        path = a.out / f"samples-{sampler}{tag}-seed{a.seed}.npz"
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, samples=x)
        os.replace(tmp, path)
        summary[f"{sampler}_seconds"] = secs
        summary[f"{sampler}_images_per_s"] = a.samples / secs
        summary[f"{sampler}_samples"] = str(path)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
