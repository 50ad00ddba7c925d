"""The PyTorch side of `cargo xtask bench`: the same workloads as `ddpm-bench`, in PyTorch eager
with the reference implementations, on the same device and thread count. Prints one JSON object.

  bench_reference.py --device cpu|cuda --threads N --seconds S

Workloads (same shapes as ours):
  train_small / train_cifar10: one training step of diffusers' UNet2DModel (DDPM layout) with
      eps-MSE loss, torch.optim.Adam (PyTorch's default implementation on the CPU, fused=True on
      CUDA as ours is), clip_grad_norm_(1.0) and diffusers' EMAModel.step (foreach on CUDA); f32,
      and bf16 autocast on CUDA.
  sample_cifar10: one sampler step = a UNet2DModel forward pass + a DDIMScheduler step.
  inception: pytorch-fid InceptionV3 pool3 features of 32x32 images (random weights).
  frechet: pytorch-fid's calculate_frechet_distance on the 2048-d statistics ddpm-bench wrote.
"""
import argparse
import json
import time

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, UNet2DModel
from diffusers.training_utils import EMAModel

SMALL = dict(sample_size=32, block_out_channels=(64, 128, 128), layers_per_block=2,
             down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
             up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D"))
CIFAR = dict(sample_size=32, block_out_channels=(128, 256, 256, 256), layers_per_block=2,
             down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
             up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"))


def unet(cfg, device):
    return UNet2DModel(in_channels=3, out_channels=3, downsample_padding=0, flip_sin_to_cos=False,
                       freq_shift=1, norm_eps=1e-6, attention_head_dim=None, dropout=0.1, **cfg).to(device)


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def timed(fn, device, seconds, warmup=3):
    for _ in range(warmup):
        fn()
    sync(device)
    n, start = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        sync(device)
        el = time.perf_counter() - start
        if el >= seconds and n >= 3:
            return el / n


def train_step(model, batch, device, bf16=False, wrap=lambda m: m):
    """One training step of `model` on `batch` images (eps-MSE, Adam, clipping, EMA), the network
    called through `wrap(model)` (DistributedDataParallel in bench_ddp_train.py). The fastest
    settings PyTorch offers for the device, as ours: one fused Adam kernel and multi-tensor EMA
    on CUDA; the CPU keeps PyTorch's defaults, as its rows say."""
    cuda = device.startswith("cuda")
    ema = EMAModel(model.parameters(), decay=0.9999, foreach=cuda)
    net = wrap(model)
    opt = torch.optim.Adam(model.parameters(), lr=2e-4, eps=1e-8, fused=cuda or None)
    x0 = torch.randn(batch, 3, 32, 32, device=device)
    ac = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64), 0).to(device)

    def step():
        t = torch.randint(0, 1000, (batch,), device=device)
        eps = torch.randn_like(x0)
        a = ac[t].float().view(-1, 1, 1, 1)
        x_t = a.sqrt() * x0 + (1 - a).sqrt() * eps
        with torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=bf16):
            out = net(x_t, t).sample
        loss = F.mse_loss(out.float(), eps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        ema.step(model.parameters())

    return step


def bench_train(cfg, batch, device, seconds, bf16):
    torch.manual_seed(0)
    model = unet(cfg, device).train()
    step = train_step(model, batch, device, bf16)
    s = timed(step, device, seconds)
    return {"seconds_per_step": s, "images_per_s": batch / s, "batch": batch,
            "params": sum(p.numel() for p in model.parameters())}


def bench_sample(cfg, batch, device, seconds, bf16):
    torch.manual_seed(0)
    model = unet(cfg, device).eval()
    sched = DDIMScheduler(num_train_timesteps=1000, clip_sample=True)
    sched.set_timesteps(50)
    x = torch.randn(batch, 3, 32, 32, device=device)
    t = sched.timesteps[10]

    def step():
        with torch.no_grad(), torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
            out = model(x, t).sample
        sched.step(out.float(), t, x)

    s = timed(step, device, seconds)
    return {"seconds_per_step": s, "image_steps_per_s": batch / s, "batch": batch}


def bench_inception(batch, device, seconds):
    import pytorch_fid.inception as inc
    inc.load_state_dict_from_url = lambda *a, **k: None
    orig = torch.nn.Module.load_state_dict
    torch.nn.Module.load_state_dict = lambda self, sd, *a, **k: None
    try:
        model = inc.InceptionV3([3]).to(device).eval()
    finally:
        torch.nn.Module.load_state_dict = orig
    x = torch.rand(batch, 3, 32, 32, device=device)

    def step():
        with torch.no_grad():
            model(x)

    s = timed(step, device, seconds, warmup=1)
    return {"seconds_per_batch": s, "images_per_s": batch / s, "batch": batch}


def bench_frechet(stats_dir):
    """pytorch-fid's distance on the statistics ddpm-bench wrote (the same input as ours)."""
    from pytorch_fid.fid_score import calculate_frechet_distance
    a, b = np.load(f"{stats_dir}/a.npz"), np.load(f"{stats_dir}/b.npz")
    t = time.perf_counter()
    fid = calculate_frechet_distance(a["mu"], a["sigma"], b["mu"], b["sigma"])
    return {"seconds": time.perf_counter() - t, "fid": float(fid)}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--stats-dir", default="target/bench")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    gpu = a.device == "cuda"
    if gpu:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    out = {"device": a.device, "threads": a.threads, "torch": torch.__version__}
    precisions = ["f32", "bf16"] if gpu else ["f32"]
    for prec in precisions:
        bf16 = prec == "bf16"
        out[f"train_small_{prec}"] = bench_train(SMALL, 128 if gpu else 32, a.device, a.seconds, bf16)
        out[f"train_cifar10_{prec}"] = bench_train(CIFAR, 128 if gpu else 8, a.device, a.seconds, bf16)
        out[f"sample_cifar10_{prec}"] = bench_sample(CIFAR, 256 if gpu else 8, a.device, a.seconds, bf16)
    out["inception"] = bench_inception(200 if gpu else 10, a.device, a.seconds)
    out["frechet"] = bench_frechet(a.stats_dir)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
