"""diffusers' EulerDiscreteScheduler and EulerAncestralDiscreteScheduler as oracles for
ddpm-sample's `euler` and `euler-ancestral`, called as a pipeline calls them (set_timesteps,
scale_model_input, step), on the closed-form eps of Gaussian data N(m, s^2):
eps(x; sigma) = (x - D(x; sigma)) / sigma with D(x; sigma) = m + s^2 / (s^2 + sigma^2) (x - m),
exact in the VE view x = x0 + sigma eps that these schedulers step in.

The schedule is the DDPM paper's linear one (diffusers' beta_schedule="linear"); its
alphas_cumprod is rebuilt in float64 before set_timesteps so that the sigma table is not f32
cumprod rounding (set_timesteps and step still round to float32, as published).

Usage: ref_diffusers_euler.py INPUT.json -> {"x0", "sigmas", "timesteps"}. INPUT:
  {"ancestral": bool, "spacing": "karras"|"exponential", "T": int, "steps": int, "m", "s",
   "x_T": [...] (the VP state), "noise": [[...] per step] (ancestral only)}
Euler: EulerDiscreteScheduler(use_karras_sigmas=True or use_exponential_sigmas=True), final
sigma 0 (final_sigmas_type="zero").
Euler ancestral: EulerAncestralDiscreteScheduler has no sigma-spacing option, so it is handed the
sigmas and timesteps EulerDiscreteScheduler computes; its step() (sigma_up / sigma_down, eta 1)
runs unmodified, with randn_tensor returning noise[i] at step i (zeros at the last step, whose
sigma_up is 0).
"""
import json
import sys

import torch

import diffusers.schedulers.scheduling_euler_ancestral_discrete as ancestral_mod
from diffusers import EulerAncestralDiscreteScheduler, EulerDiscreteScheduler


def f64_alphas_cumprod(T):
    betas = torch.linspace(1e-4, 0.02, T, dtype=torch.float64)
    return torch.cumprod(1.0 - betas, dim=0)


def main():
    inp = json.load(open(sys.argv[1]))
    T, m, s = inp["T"], inp["m"], inp["s"]
    common = dict(num_train_timesteps=T, beta_schedule="linear", prediction_type="epsilon")
    spacing = {"use_%s_sigmas" % inp.get("spacing", "karras"): True}
    karras = EulerDiscreteScheduler(**common, **spacing, final_sigmas_type="zero")
    karras.alphas_cumprod = f64_alphas_cumprod(T)
    karras.set_timesteps(inp["steps"])
    if inp["ancestral"]:
        sched = EulerAncestralDiscreteScheduler(**common)
        sched.alphas_cumprod = f64_alphas_cumprod(T)
        sched.set_timesteps(inp["steps"])
        sched.sigmas, sched.timesteps = karras.sigmas.clone(), karras.timesteps.clone()
        draws = [torch.tensor(z, dtype=torch.float32) for z in inp["noise"]]
        draws.append(torch.zeros_like(draws[0]) if draws else None)
    else:
        sched = karras
    # x_T is the VP state: x~ = x_T sqrt(1 + sigma_max^2). diffusers' init_noise_sigma under its
    # default "linspace" spacing is sigma_max alone (1 / (2 sigma_max^2), about 2e-5, smaller
    # here); the start is ours so that the comparison is of the steps.
    x = torch.tensor(inp["x_T"], dtype=torch.float64).reshape(1, -1) * (1 + sched.sigmas[0].double() ** 2) ** 0.5
    x = x.to(torch.float32)
    for i, t in enumerate(sched.timesteps):
        sigma = sched.sigmas[i].double()
        sched.scale_model_input(x, t)
        xd = x.double()
        denoised = m + s * s / (s * s + sigma * sigma) * (xd - m)
        eps = ((xd - denoised) / sigma).to(torch.float32)
        if inp["ancestral"]:
            z = draws[i].reshape(x.shape)
            ancestral_mod.randn_tensor = lambda *a, _z=z, **k: _z
        x = sched.step(eps, t, x).prev_sample
    print(json.dumps({"x0": x.double().reshape(-1).tolist(),
                      "sigmas": sched.sigmas.double().tolist(),
                      "timesteps": sched.timesteps.double().tolist()}))


if __name__ == "__main__":
    main()
