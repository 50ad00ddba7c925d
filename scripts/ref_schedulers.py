"""diffusers' schedulers as step-for-step oracles for ddpm-sample: DDPMScheduler,
DDIMScheduler, DPMSolverMultistepScheduler ("dpmsolver++" and "sde-dpmsolver++") and
UniPCMultistepScheduler (bh2, predict_x0).

Usage: ref_schedulers.py INPUT.json -> JSON {"timesteps": [...], "samples": [[...], ...]}, or a
list of such objects for a list of inputs (one interpreter start for many cases).
Input: {"sampler": "ddpm"|"ddim"|"dpmpp"|"dpmpp_sde"|"unipc", "T": int, "beta_schedule": "linear"|"squaredcos_cap_v2",
        "steps": int, "timesteps": [optional custom descending list, ddpm only],
        "variance_type": "fixed_small"|"fixed_large", "eta": float, "clip": bool,
        "clip_convention": "improved-diffusion"|"diffusers" (ddim; default improved-diffusion),
        "set_alpha_to_one": bool (ddim; default true), "steps_offset": int (ddim; default 0),
        "timestep_spacing": "leading"|"trailing"|"linspace" (ddpm, ddim; default leading),
        "sigmas": [S + 1 VE noise levels ending in 0] (dpmpp, dpmpp_sde, unipc: replace the
                  scheduler's float32 table), "karras": bool (their use_karras_sigmas),
        "solver_order": int (unipc),
        "shape": [...], "x_T": [...], "model_outputs": [[...] per step], "noises": [[...] per step]}
The i-th step gets model_outputs[i] as the network output and noises[i] as its fresh noise
(DDPMScheduler through randn_tensor, DDIMScheduler and the SDE solver through variance_noise).
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
from diffusers import (DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler,
                       UniPCMultistepScheduler)


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
        s = DDPMScheduler(**common, variance_type=inp["variance_type"], clip_sample=inp["clip"],
                          timestep_spacing=inp.get("timestep_spacing", "leading"),
                          steps_offset=inp.get("steps_offset", 0))
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
    elif kind == "unipc":
        s = UniPCMultistepScheduler(**common, solver_order=inp["solver_order"], solver_type="bh2",
                                    predict_x0=True, lower_order_final=True,
                                    final_sigmas_type="zero", timestep_spacing="linspace",
                                    use_karras_sigmas=inp.get("karras", False),
                                    thresholding=inp["clip"], sample_max_value=1.0)
        s.set_timesteps(inp["steps"])
    else:
        algorithm = "sde-dpmsolver++" if kind == "dpmpp_sde" else "dpmsolver++"
        s = DPMSolverMultistepScheduler(**common, algorithm_type=algorithm, solver_order=2,
                                        solver_type="midpoint", lower_order_final=True,
                                        final_sigmas_type="zero", timestep_spacing="linspace",
                                        use_karras_sigmas=inp.get("karras", False),
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
    if inp.get("sigmas"):
        # Our noise levels in f64 (the scheduler's are float32, and at Karras or logSNR
        # placements fall between its integer timesteps).
        ac = s.alphas_cumprod
        s.alpha_t = ac.sqrt()
        s.sigma_t = (1 - ac).sqrt()
        s.lambda_t = s.alpha_t.log() - s.sigma_t.log()
        assert len(inp["sigmas"]) == len(s.sigmas), (len(inp["sigmas"]), len(s.sigmas))
        s.sigmas = torch.tensor(inp["sigmas"], dtype=torch.float64)
    elif kind == "dpmpp":
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
    if kind in ("dpmpp", "dpmpp_sde", "unipc"):
        # Start at the first step even where rounding repeats a timestep (Karras's levels on
        # the cosine schedule round 999 twice; diffusers would then begin at the second).
        s.set_begin_index(0)
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
        elif kind == "dpmpp_sde":
            z = noises[i] if i < len(noises) else torch.zeros(shape, dtype=torch.float64)
            sample = s.step(outs[i], t, sample, variance_noise=z).prev_sample
        else:
            sample = s.step(outs[i], t, sample).prev_sample
        samples.append(sample.reshape(-1).tolist())
    return {"timesteps": [int(t) for t in s.timesteps], "samples": samples}


if __name__ == "__main__":
    main()
