"""The variational bound in bits/dim of a diffusers UNet2DModel on given images, independently of
ddpm-rs: the network in PyTorch (diffusers), every Gaussian quantity in NumPy f64 from the paper's
formulas (Ho et al. 2020, eq. 5; improved-diffusion's calc_bpd_loop conventions: fixedlarge
variance with beta~_1 at t = 0, x0 predictions clipped to [-1, 1]).

Usage: ref_nll.py MODEL_DIR X0.npy NOISE.npy  -> JSON {"bpd": [...per image], "terms": [[...]]}
NOISE has shape T x N x C x H x W: the eps used to draw x_t at each t.
"""
import json
import sys

import numpy as np
import torch
from diffusers import UNet2DModel

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from ref_losses import Diffusion, normal_kl, mean_flat  # noqa: E402


def main():
    model_dir, x0_path, noise_path = sys.argv[1:4]
    cfg = json.load(open(model_dir + "/scheduler/scheduler_config.json"))
    T = cfg["num_train_timesteps"]
    betas = np.linspace(cfg["beta_start"], cfg["beta_end"], T, dtype=np.float64)
    d = Diffusion(betas, "eps", "fixed_large")
    unet = UNet2DModel.from_pretrained(model_dir).eval()
    x0 = np.load(x0_path).astype(np.float64)
    noise = np.load(noise_path).astype(np.float64)
    n = x0.shape[0]
    terms = np.zeros((n, T))
    for t in range(T - 1, -1, -1):
        tb = np.full(n, t)
        xt = d.q_sample(x0, tb, noise[t])
        with torch.no_grad():
            out = unet(torch.from_numpy(xt).float(), torch.from_numpy(tb.astype(np.float32))).sample.double().numpy()
        terms[:, t], _ = d.vb(out, x0, xt, tb, True)
    prior = d.prior(x0)
    print(json.dumps({"bpd": (terms.sum(axis=1) + prior).tolist(), "terms": terms.tolist(), "prior": prior.tolist()}))


if __name__ == "__main__":
    main()
