"""denoising-diffusion-pytorch (lucidrains, PyPI `denoising-diffusion-pytorch`) as an oracle
for ddpm-core and ddpm-sample: its own beta schedules, GaussianDiffusion buffers, q_sample,
q_posterior, p_losses and ddim_sample, called as published.

Usage: ref_ddp.py INPUT.json -> prints one JSON object (or, for {"cases": [INPUT, ...]}, a list
of them, one process for many inputs). INPUT has "cmd":
  "schedules": {"T": int}                      -> betas of linear_beta_schedule (its 1000/T
                                                  scaling), cosine_beta_schedule, sigmoid_beta_schedule
  "math": {"T", "beta_schedule", "objective", "min_snr", "shape", "x0", "noise", "t"}
      -> GaussianDiffusion's buffers, q_sample, q_posterior and p_losses (per example) with the
         deterministic network `net` below
  "ddim": {"T", "beta_schedule", "S", "shape", "x_T"}
      -> ddim_sample (eta 0; it always clips x0 and re-derives eps) from x_T with `net`:
         {"kept": the times it visits, ascending, "x0": result}

GaussianDiffusion stores its buffers in float32 (computed in float64 first); the module is
converted to float64 afterwards, so arithmetic is float64 on float32-rounded tables.
"""
import json
import sys

import torch
from torch import nn

import denoising_diffusion_pytorch.denoising_diffusion_pytorch as ddp


def net_fn(x, t):
    """The deterministic 'network' both sides evaluate: smooth in x and t."""
    t = t.to(torch.float64).reshape((-1,) + (1,) * (x.ndim - 1))
    return torch.tanh(1.3 * x) * (0.6 + 0.3 * torch.cos(t / 97.0)) + 0.1 * x


class Net(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.channels = channels
        self.out_dim = channels
        self.self_condition = False

    def forward(self, x, t, x_self_cond=None):
        return net_fn(x, t)


def diffusion(inp, **kw):
    shape = inp["shape"]
    gd = ddp.GaussianDiffusion(
        Net(shape[1]),
        image_size=(shape[2], shape[3]),
        timesteps=inp["T"],
        beta_schedule=inp["beta_schedule"],
        objective=inp.get("objective", "pred_noise"),
        min_snr_loss_weight=inp.get("min_snr", False),
        min_snr_gamma=5,
        auto_normalize=False,
        **kw,
    )
    return gd.double()


def flat(x):
    return x.double().reshape(-1).tolist()


def main():
    inp = json.load(open(sys.argv[1]))
    # {"cases": [INPUT, ...]} runs several inputs in one process -> a list of outputs.
    if "cases" in inp:
        print(json.dumps([run(case) for case in inp["cases"]]))
    else:
        print(json.dumps(run(inp)))


def run(inp):
    cmd = inp["cmd"]
    if cmd == "schedules":
        T = inp["T"]
        out = {
            "linear": flat(ddp.linear_beta_schedule(T)),
            "cosine": flat(ddp.cosine_beta_schedule(T)),
            "sigmoid": flat(ddp.sigmoid_beta_schedule(T)),
        }
    elif cmd == "math":
        gd = diffusion(inp)
        shape = inp["shape"]
        t64 = lambda k: torch.tensor(inp[k], dtype=torch.float64).reshape(shape)
        x0, noise = t64("x0"), t64("noise")
        t = torch.tensor(inp["t"], dtype=torch.long)
        x_t = gd.q_sample(x0, t, noise=noise)
        mean, var, logvar = gd.q_posterior(x0, x_t, t)
        loss = gd.p_losses(x0, t, noise=noise, loss_reduction="none")
        out = {"x_t": flat(x_t), "posterior_mean": flat(mean), "posterior_variance": flat(var),
               "posterior_log_variance_clipped": flat(logvar), "loss": flat(loss)}
        for name in ["betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_recipm1_alphas_cumprod",
                     "posterior_variance", "posterior_log_variance_clipped", "posterior_mean_coef1",
                     "posterior_mean_coef2", "loss_weight"]:
            out["buffer_" + name] = flat(getattr(gd, name))
    elif cmd == "ddim":
        gd = diffusion(inp, sampling_timesteps=inp["S"], ddim_sampling_eta=0.0)
        assert gd.is_ddim_sampling
        x_T = torch.tensor(inp["x_T"], dtype=torch.float64).reshape(inp["shape"])
        visited = []
        real_net = gd.model.forward

        def spy(x, t, x_self_cond=None):
            visited.append(int(t[0]))
            return real_net(x, t, x_self_cond)

        gd.model.forward = spy
        # ddim_sample draws its start with torch.randn(shape) and (eta 0) multiplies its fresh
        # noise by 0: hand it x_T as the start.
        randn = torch.randn
        torch.randn = lambda *a, **k: x_T.clone()
        try:
            x0 = gd.ddim_sample(tuple(inp["shape"]))
        finally:
            torch.randn = randn
        out = {"kept": sorted(visited), "x0": flat(x0)}
    else:
        raise SystemExit(f"unknown cmd {cmd}")
    return out


if __name__ == "__main__":
    main()
