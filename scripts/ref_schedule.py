"""Reference schedules for the parity tests of ddpm-core.

Two independent oracles:
  * `numpy`: a NumPy (float64) statement of improved-diffusion's `get_named_beta_schedule`,
    `GaussianDiffusion.__init__` and `space_timesteps`/`SpacedDiffusion` (openai/improved-diffusion),
    plus Ho et al.'s other named schedules; compared with ddpm-core to 1e-12 relative.
  * `diffusers`: diffusers' DDPMScheduler, which stores its arrays in float32; compared to ~1e-6.

Prints one JSON object.
"""
import argparse
import warnings
import json
import math

import numpy as np


def named_betas(name, T, beta_start, beta_end, scale_linear, cosine_s, max_beta):
    if name == "linear":
        scale = 1000.0 / T if scale_linear else 1.0
        return np.linspace(scale * beta_start, scale * beta_end, T, dtype=np.float64)
    if name == "cosine":
        f = lambda u: math.cos((u + cosine_s) / (1 + cosine_s) * math.pi / 2) ** 2
        return np.array([min(1 - f((i + 1) / T) / f(i / T), max_beta) for i in range(T)], dtype=np.float64)
    if name == "quadratic":
        return np.linspace(beta_start ** 0.5, beta_end ** 0.5, T, dtype=np.float64) ** 2
    if name == "sigmoid":
        x = np.linspace(-6, 6, T, dtype=np.float64)
        return 1 / (1 + np.exp(-x)) * (beta_end - beta_start) + beta_start
    if name == "constant":
        return beta_end * np.ones(T, dtype=np.float64)
    if name == "jsd":
        return 1.0 / np.linspace(T, 1, T, dtype=np.float64)
    raise SystemExit(f"unknown schedule {name}")


def space_timesteps(T, spec):
    if spec.startswith("ddim"):
        n = int(spec[4:])
        for stride in range(1, T):
            if len(range(0, T, stride)) == n:
                return sorted(set(range(0, T, stride)))
        raise SystemExit("no stride")
    counts = [int(c) for c in spec.split(",")]
    size_per, extra = divmod(T, len(counts))
    start, steps = 0, []
    for i, count in enumerate(counts):
        size = size_per + (1 if i < extra else 0)
        stride = 1 if count <= 1 else (size - 1) / (count - 1)
        cur = 0.0
        for _ in range(count):
            steps.append(start + round(cur))
            cur += stride
        start += size
    return sorted(set(steps))


def arrays(betas):
    alphas = 1.0 - betas
    ac = np.cumprod(alphas)
    acp = np.append(1.0, ac[:-1])
    pv = betas * (1.0 - acp) / (1.0 - ac)
    return {
        "betas": betas,
        "alphas_cumprod": ac,
        "alphas_cumprod_prev": acp,
        "posterior_variance": pv,
        "posterior_log_variance_clipped": np.log(np.append(pv[1], pv[1:])),
        "posterior_mean_coef1": betas * np.sqrt(acp) / (1.0 - ac),
        "posterior_mean_coef2": (1.0 - acp) * np.sqrt(alphas) / (1.0 - ac),
        "sqrt_recipm1_alphas_cumprod": np.sqrt(1.0 / ac - 1),
        "fixedlarge_log_variance": np.log(np.append(pv[1], betas[1:])),
    }


def numpy_oracle(a):
    betas = named_betas(a.schedule, a.steps, a.beta_start, a.beta_end, a.scale_linear, a.cosine_s, a.max_beta)
    timestep_map = list(range(a.steps))
    if a.respace:
        kept = space_timesteps(a.steps, a.respace)
        ac = np.cumprod(1.0 - betas)
        last, new = 1.0, []
        for i, abar in enumerate(ac):
            if i in kept:
                new.append(1 - abar / last)
                last = abar
        betas, timestep_map = np.array(new), kept
    # JSON has no infinities (jsd ends at beta = 1, abar = 0): report them as null.
    out = {k: [x if math.isfinite(x) else None for x in v.tolist()] for k, v in arrays(betas).items()}
    out["timestep_map"] = timestep_map
    return out


def diffusers_oracle(a):
    from diffusers import DDPMScheduler

    names = {"linear": "linear", "cosine": "squaredcos_cap_v2", "quadratic": "scaled_linear", "sigmoid": "sigmoid"}
    s = DDPMScheduler(
        num_train_timesteps=a.steps,
        beta_schedule=names[a.schedule],
        beta_start=a.beta_start,
        beta_end=a.beta_end,
        variance_type="fixed_small",
    )
    variance = [float(s._get_variance(t)) for t in range(a.steps)]
    return {
        "betas": s.betas.double().tolist(),
        "alphas_cumprod": s.alphas_cumprod.double().tolist(),
        "posterior_variance": variance,
    }


def main():
    warnings.simplefilter("ignore", RuntimeWarning)
    p = argparse.ArgumentParser()
    p.add_argument("--oracle", choices=["numpy", "diffusers"], default="numpy")
    p.add_argument("--schedule", default="linear")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--beta-start", type=float, default=1e-4)
    p.add_argument("--beta-end", type=float, default=0.02)
    p.add_argument("--scale-linear", action="store_true")
    p.add_argument("--cosine-s", type=float, default=0.008)
    p.add_argument("--max-beta", type=float, default=0.999)
    p.add_argument("--respace")
    a = p.parse_args()
    print(json.dumps(numpy_oracle(a) if a.oracle == "numpy" else diffusers_oracle(a)))


if __name__ == "__main__":
    main()
