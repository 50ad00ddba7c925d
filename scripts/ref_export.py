"""diffusers reading a folder written by `ddpm-train export` (crates/ddpm-sample/tests/diffusers_export.rs).

  ref_export.py DIR IO.safetensors OUT.npy
      loads DIR with DDPMPipeline.from_pretrained (no code of ours), runs its UNet2DModel on the
      inputs x, t (and y) of IO.safetensors, writes the output to OUT.npy, runs the pipeline
      itself for 3 steps (unconditional models: DDPMPipeline passes no class labels), and prints JSON: the pipeline's class names, its scheduler's betas and
      config, and whether the pipeline's images are finite.
"""
import json
import sys

import numpy as np
import torch
from diffusers import DDPMPipeline
from safetensors.torch import load_file


def main():
    folder, io_path, out_path = sys.argv[1:4]
    pipe = DDPMPipeline.from_pretrained(folder)
    unet = pipe.unet.eval()
    io = load_file(io_path)
    with torch.no_grad():
        out = unet(io["x"], io["t"], class_labels=io.get("y")).sample
    np.save(out_path, out.numpy().astype(np.float32))
    pipe.set_progress_bar_config(disable=True)
    images = None
    # DDPMPipeline passes no class labels, so it runs only an unconditional UNet.
    if unet.config.num_class_embeds is None:
        with torch.no_grad():
            images = pipe(batch_size=2, num_inference_steps=3, output_type="np",
                          generator=torch.Generator().manual_seed(0)).images
    sched = pipe.scheduler
    print(json.dumps({
        "unet": type(unet).__name__,
        "scheduler": type(sched).__name__,
        "betas": sched.betas.double().tolist(),
        "config": {k: v for k, v in sched.config.items() if isinstance(v, (int, float, str, bool)) or v is None},
        "images_finite": None if images is None else bool(np.isfinite(images).all()),
        "image_shape": None if images is None else list(images.shape),
    }))


if __name__ == "__main__":
    main()
