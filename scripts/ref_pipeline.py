"""diffusers' DDIMPipeline on a UNet2DModel folder, from given initial noise.

Usage: ref_pipeline.py MODEL_DIR NOISE.npy STEPS OUT.npy [--clip]
Runs DDIMPipeline(unet, DDIMScheduler.from_config(scheduler config)) with eta 0 and the
pipeline's own loop, replacing its random draw of x_T by NOISE; writes the images in [-1, 1]
(N x C x H x W) before the pipeline's uint8/float conversion. --clip keeps clip_sample=True with
use_clipped_model_output=True (improved-diffusion's DDIM); otherwise clipping is off.
"""
import sys

import numpy as np
import torch
import diffusers.pipelines.ddim.pipeline_ddim as pipe_mod
from diffusers import DDIMPipeline, DDIMScheduler, UNet2DModel


def main():
    model_dir, noise_path, steps, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    clip = "--clip" in sys.argv
    unet = UNet2DModel.from_pretrained(model_dir).eval()
    sched = DDIMScheduler.from_pretrained(model_dir + "/scheduler", clip_sample=clip, set_alpha_to_one=True)
    noise = torch.from_numpy(np.load(noise_path)).float()
    pipe_mod.randn_tensor = lambda *a, **k: noise.clone()
    pipe = DDIMPipeline(unet=unet, scheduler=sched)
    pipe.set_progress_bar_config(disable=True)
    with torch.no_grad():
        images = pipe(batch_size=noise.shape[0], num_inference_steps=steps, eta=0.0,
                      use_clipped_model_output=clip, output_type="np").images
    # The pipeline returns (x/2 + 0.5).clamp(0, 1) as N x H x W x C.
    x = torch.from_numpy(images).permute(0, 3, 1, 2) * 2 - 1
    np.save(out, x.numpy().astype(np.float32))


if __name__ == "__main__":
    main()
