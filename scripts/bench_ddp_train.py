"""PyTorch's data-parallel training step, the reference for `ddpm-bench --data-parallel`:
diffusers' UNet2DModel in the CIFAR-10 layout (35.7M parameters) trained on this rank's share
of --global-batch, wrapped in torch.nn.parallel.DistributedDataParallel (gloo on the CPU, nccl
on CUDA, bucket_cap_mb=25) when launched by torchrun with more than one process, plain
otherwise; eps-MSE loss, torch.optim.Adam, clip_grad_norm_(1.0) and diffusers' EMAModel: bench_reference.py's
training step itself.

  python scripts/bench_ddp_train.py --threads 2 --global-batch 8
  torchrun --standalone --nproc-per-node 2 scripts/bench_ddp_train.py --threads 1 --global-batch 8

Rank 0 prints one JSON object: seconds_per_step (mean over --steps after 2 warm-up steps) and
images_per_s (global batch / seconds_per_step).
"""
import argparse
import json
import os
import sys
import time

import torch
import torch.distributed as dist

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_reference import CIFAR, train_step, unet  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--global-batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--device", default="cpu")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = a.device
    if world > 1:
        if device == "cuda":
            device = f"cuda:{os.environ['LOCAL_RANK']}"
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    rank = dist.get_rank() if world > 1 else 0
    assert a.global_batch % world == 0, "--global-batch must be a multiple of the world size"
    torch.manual_seed(0)
    model = unet(CIFAR, device).train()
    ddp = lambda m: torch.nn.parallel.DistributedDataParallel(m, bucket_cap_mb=25)  # noqa: E731
    step = train_step(model, a.global_batch // world, device, wrap=ddp if world > 1 else (lambda m: m))

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    for _ in range(2):
        step()
    if world > 1:
        dist.barrier()
    sync()
    start = time.perf_counter()
    for _ in range(a.steps):
        step()
    sync()
    sec = (time.perf_counter() - start) / a.steps
    if rank == 0:
        print(json.dumps({
            "bench": "train_data_parallel",
            "implementation": "PyTorch DDP" if world > 1 else "PyTorch (one process)",
            "torch": torch.__version__,
            "world_size": world,
            "threads": a.threads,
            "global_batch": a.global_batch,
            "steps": a.steps,
            "seconds_per_step": sec,
            "images_per_s": a.global_batch / sec,
        }), flush=True)
    # As in bench_allreduce.py: torch 2.11's teardown after DDP on gloo sometimes never returns.
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
