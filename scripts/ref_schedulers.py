"""diffusers' schedulers as step-for-step oracles for ddpm-sample.

Usage: ref_schedulers.py INPUT.json -> JSON {"timesteps": [...], "samples": [[...], ...]}, or a
list of such objects for a list of inputs (one interpreter start for many cases).
Input: {"sampler": "ddpm"|"ddim"|"dpmpp", "T": int, "beta_schedule": "linear"|"squaredcos_cap_v2",
        "steps": int, "timesteps": [optional custom descending list, ddpm only],
        "variance_type": "fixed_small"|"fixed_large", "eta": float, "clip": bool,
        "clip_convention": "improved-diffusion"|"diffusers" (ddim; default improved-diffusion),
        "set_alpha_to_one": bool (ddim; default true), "steps_offset": int (ddim; default 0),
        "timestep_spacing": "leading"|"trailing"|"linspace" (ddim; default leading),
        "shape": [...], "x_T": [...], "model_outputs": [[...] per step], "noises": [[...] per step]}
The i-th step gets model_outputs[i] as the network output and noises[i] as its fresh noise.
"clip" is DDPMScheduler's and DDIMScheduler's clip_sample, and DPMSolverMultistepScheduler's
thresholding with sample_max_value 1.0 (dynamic thresholding whose s is clamped to [1, 1], which
is clipping to [-1, 1]). For DDIM, "clip_convention" picks step()'s use_clipped_model_output:
True re-derives eps from the clipped x0 (improved-diffusion), False keeps the model's eps
(DDIMPipeline's default).
"""
import json
import sys

import torch

sys.path.insert(0, __file__.rsplit("/", 1)[0])
import diffusers.schedulers.scheduling_ddpm as ddpm_mod
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler


def main():
    inp = json.load(open(sys.argv[1]))
    if isinstance(inp, list):
        print(json.dumps([run(case) for case in inp]))
    else:
        print(json.dumps(run(inp)))


def run(inp):
    shape = inp["shape"]
    t64 = lambda v: torch.tensor(v, dtype=torch.float64).reshape(shape)
    sample = t64(inp["x_T"])
    outs = [t64(o) for o in inp["model_outputs"]]
    noises = [t64(n) for n in inp.get("noises", [])]
    common = dict(num_train_timesteps=inp["T"], beta_schedule=inp["beta_schedule"], prediction_type="epsilon")
    kind = inp["sampler"]
    if kind == "ddpm":
        s = DDPMScheduler(**common, variance_type=inp["variance_type"], clip_sample=inp["clip"])
        if inp.get("timesteps"):
            s.set_timesteps(timesteps=inp["timesteps"])
        else:
            s.set_timesteps(inp["steps"])
    elif kind == "ddim":
        s = DDIMScheduler(**common, clip_sample=inp["clip"],
                          set_alpha_to_one=inp.get("set_alpha_to_one", True),
                          steps_offset=inp.get("steps_offset", 0),
                          timestep_spacing=inp.get("timestep_spacing", "leading"))
        use_clipped = inp.get("clip_convention", "improved-diffusion") == "improved-diffusion"
        s.set_timesteps(inp["steps"])
    else:
        s = DPMSolverMultistepScheduler(**common, algorithm_type="dpmsolver++", solver_order=2,
                                        solver_type="midpoint", lower_order_final=True,
                                        final_sigmas_type="zero", timestep_spacing="linspace",
                                        thresholding=inp["clip"], sample_max_value=1.0)
        s.set_timesteps(inp["steps"])
    # Rebuild the schedule in f64 (diffusers keeps f32 arrays) so that the comparison measures
    # the update rules, not f32 rounding; the betas are diffusers' own definitions.
    from ref_schedule import named_betas
    name = {"linear": "linear", "squaredcos_cap_v2": "cosine"}[inp["beta_schedule"]]
    betas = torch.from_numpy(named_betas(name, inp["T"], 1e-4, 0.02, False, 0.008, 0.999))
    s.betas = betas
    s.alphas = 1.0 - betas
    s.alphas_cumprod = torch.cumprod(s.alphas, dim=0)
    if kind == "ddim" and not inp.get("set_alpha_to_one", True):
        s.final_alpha_cumprod = s.alphas_cumprod[0]
    if kind == "dpmpp":
        # Recompute the sigma tables from the f64 alphas.
        ac = s.alphas_cumprod
        s.alpha_t = ac.sqrt()
        s.sigma_t = (1 - ac).sqrt()
        s.lambda_t = s.alpha_t.log() - s.sigma_t.log()
        import numpy as np
        sig = ((1 - ac) / ac).sqrt().numpy()
        ts = s.timesteps.numpy()
        sig_ts = np.interp(ts, np.arange(len(sig)), sig)
        s.sigmas = torch.from_numpy(np.concatenate([sig_ts, [0.0]])).double()
    samples = []
    for i, t in enumerate(s.timesteps):
        if kind == "ddpm":
            z = noises[i] if i < len(noises) else torch.zeros(shape, dtype=torch.float64)
            ddpm_mod.randn_tensor = lambda *a, _z=z, **k: _z
            sample = s.step(outs[i], t, sample).prev_sample
        elif kind == "ddim":
            z = noises[i] if i < len(noises) else None
            sample = s.step(outs[i], t, sample, eta=inp["eta"], use_clipped_model_output=use_clipped,
                            variance_noise=z).prev_sample
        else:
            sample = s.step(outs[i], t, sample).prev_sample
        samples.append(sample.reshape(-1).tolist())
    return {"timesteps": [int(t) for t in s.timesteps], "samples": samples}


if __name__ == "__main__":
    main()
