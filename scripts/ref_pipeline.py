"""diffusers' DDIMPipeline on a UNet2DModel folder, from given initial noise.

Usage: ref_pipeline.py MODEL_DIR NOISE.npy STEPS OUT_DIR
MODEL_DIR is a UNet folder with scheduler/ inside, or a pipeline folder (model_index.json).
Runs DDIMPipeline(unet, DDIMScheduler.from_pretrained(MODEL_DIR/scheduler)) with eta 0 and the
pipeline's own loop, replacing its random draw of x_T by NOISE, in three variants, and writes
each one's images in [-1, 1] (N x C x H x W, before the pipeline's uint8/float conversion) to
OUT_DIR/theirs-<variant>.npy:
  default: the scheduler config as written (diffusers' defaults for what it lacks) and the
           pipeline's default use_clipped_model_output (None: the model's eps is kept after
           clipping), i.e. DDIMPipeline as a user runs it;
  noclip:  clip_sample = False;
  clip-id: clip_sample = True with use_clipped_model_output = True (eps re-derived from the
           clipped x0: improved-diffusion's DDIM).
Prints JSON {variant: {"x0_max": [max |x0 prediction| before clipping, per step]}}.
"""
import json
import os
import sys

import numpy as np
import torch
import diffusers.pipelines.ddim.pipeline_ddim as pipe_mod
from diffusers import DDIMPipeline, DDIMScheduler, UNet2DModel


def run(model_dir, noise, steps, overrides, clipped_output):
    # A pipeline folder (model_index.json, unet/, scheduler/), as `ddpm-train export` writes,
    # or a UNet folder with its scheduler/ beside the weights.
    pipeline = os.path.exists(os.path.join(model_dir, "model_index.json"))
    unet = UNet2DModel.from_pretrained(model_dir, subfolder="unet" if pipeline else None).eval()
    sched = DDIMScheduler.from_pretrained(model_dir + "/scheduler", **overrides)
    pipe_mod.randn_tensor = lambda *a, **k: noise.clone()
    # The pipeline rebuilds its scheduler with DDIMScheduler.from_config: wrap the one it uses.
    pipe = DDIMPipeline(unet=unet, scheduler=sched)
    used = pipe.scheduler
    x0_max = []
    step = used.step

    def recording_step(model_output, timestep, sample, *a, **k):
        abar = used.alphas_cumprod[timestep]
        x0 = (sample - (1 - abar).sqrt() * model_output) / abar.sqrt()
        x0_max.append(float(x0.abs().max()))
        return step(model_output, timestep, sample, *a, **k)

    used.step = recording_step
    pipe.set_progress_bar_config(disable=True)
    with torch.no_grad():
        images = pipe(batch_size=noise.shape[0], num_inference_steps=steps, eta=0.0,
                      use_clipped_model_output=clipped_output, output_type="np").images
    # The pipeline returns (x/2 + 0.5).clamp(0, 1) as N x H x W x C.
    x = torch.from_numpy(images).permute(0, 3, 1, 2) * 2 - 1
    return x.numpy().astype(np.float32), x0_max


def main():
    model_dir, noise_path, steps, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    noise = torch.from_numpy(np.load(noise_path)).float()
    variants = {
        "default": ({}, None),
        "noclip": ({"clip_sample": False}, None),
        "clip-id": ({"clip_sample": True}, True),
    }
    report = {}
    for tag, (overrides, clipped_output) in variants.items():
        x, x0_max = run(model_dir, noise, steps, overrides, clipped_output)
        np.save(f"{out}/theirs-{tag}.npy", x)
        report[tag] = {"x0_max": x0_max}
    print(json.dumps(report))


if __name__ == "__main__":
    main()
