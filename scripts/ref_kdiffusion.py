"""k-diffusion (crowsonkb, PyPI `k-diffusion`) as an oracle for ddpm-sample: Karras sigmas,
sample_heun (no churn), sample_dpmpp_2m, and the VP <-> VE conversions of its discrete-time
DDPM wrappers (DiscreteSchedule.t_to_sigma / sigma_to_t, DiscreteEpsDDPMDenoiser,
DiscreteVDDPMDenoiser), called as published.

The schedule is the DDPM paper's linear one, T steps, built here in float64 from torch.linspace
(not from ddpm-core). Samplers run on the closed-form denoiser of Gaussian data N(m, s^2):
D(x; sigma) = m + s^2 / (s^2 + sigma^2) (x - m), exact in the VE view x = x0 + sigma eps.

Usage: ref_kdiffusion.py INPUT.json -> one JSON object. INPUT has "cmd":
  "karras": {"T", "n", "dtype"}      -> {"sigmas"}: get_sigmas_karras(n, sigma_min, sigma_max, rho=7)
                                        with the wrapper's sigma_min/max, under default dtype `dtype`
  "exponential": {"T", "n"}          -> {"sigmas"}: get_sigmas_exponential(n, sigma_min, sigma_max)
  "heun":   {"T", "n", "m", "s", "x_T"} -> {"x0", "sigmas"}: sample_heun on those Karras sigmas from
                                        x = x_T sqrt(1 + sigma_0^2) (x_T: the VP state)
  "dpmpp":  {"sigmas", "m", "s", "x_T"} -> {"x0"}: sample_dpmpp_2m on the given sigmas (ending in 0)
  "euler":  {"sigmas", "m", "s", "x_T"} -> {"x0"}: sample_euler (no churn) on the given sigmas
  "euler_ancestral": {"sigmas", "m", "s", "x_T", "noise"} -> {"x0"}: sample_euler_ancestral (eta 1)
                                        whose noise_sampler returns noise[0], noise[1], ... in turn
  "dpmpp_2m_sde" | "dpmpp_3m_sde": {"sigmas", "m", "s", "x_T", "noise"} -> {"x0", "xs"}:
                                        sample_dpmpp_2m_sde (midpoint) / sample_dpmpp_3m_sde at
                                        eta 1 with noise as above; xs: the callback's x before each
                                        evaluation, in the VP scale x / sqrt(1 + sigma_i^2)
  "conversions": {"T", "t", "sigma", "x", "grid_sigma"} -> t_to_sigma(t), sigma_to_t(sigma), and
                                        the eps and v wrappers' D(x; grid_sigma) with `net` below
"""
import json
import sys

import torch

from k_diffusion import external, sampling


def net_fn(x, t):
    """The deterministic 'network' (as in ref_ddp.py): smooth in x and t."""
    t = t.to(torch.float64).reshape((-1,) + (1,) * (x.ndim - 1))
    return torch.tanh(1.3 * x) * (0.6 + 0.3 * torch.cos(t / 97.0)) + 0.1 * x


def alphas_cumprod(T):
    betas = torch.linspace(1e-4, 0.02, T, dtype=torch.float64)
    return torch.cumprod(1.0 - betas, dim=0)


def gaussian_denoiser(m, s):
    def D(x, sigma):
        sigma = sigma.reshape((-1,) + (1,) * (x.ndim - 1))
        return m + s * s / (s * s + sigma * sigma) * (x - m)

    return D


def flat(x):
    return x.double().reshape(-1).tolist()


def main():
    inp = json.load(open(sys.argv[1]))
    cmd = inp["cmd"]
    if cmd in ("karras", "heun"):
        wrap = external.DiscreteEpsDDPMDenoiser(net_fn, alphas_cumprod(inp["T"]), quantize=False)
        dtype = {"float64": torch.float64, "float32": torch.float32}[inp.get("dtype", "float64")]
        torch.set_default_dtype(dtype)
        sigmas = sampling.get_sigmas_karras(inp["n"], wrap.sigma_min.item(), wrap.sigma_max.item(), rho=7.0)
        torch.set_default_dtype(torch.float64)
        out = {"sigmas": flat(sigmas)}
        if cmd == "heun":
            x = torch.tensor(inp["x_T"], dtype=torch.float64) * (1 + sigmas[0] ** 2) ** 0.5
            x0 = sampling.sample_heun(gaussian_denoiser(inp["m"], inp["s"]), x.reshape(1, -1), sigmas, disable=True)
            out["x0"] = flat(x0)
    elif cmd == "exponential":
        torch.set_default_dtype(torch.float64)
        wrap = external.DiscreteEpsDDPMDenoiser(net_fn, alphas_cumprod(inp["T"]), quantize=False)
        sigmas = sampling.get_sigmas_exponential(inp["n"], wrap.sigma_min.item(), wrap.sigma_max.item())
        out = {"sigmas": flat(sigmas)}
    elif cmd == "dpmpp":
        torch.set_default_dtype(torch.float64)
        sigmas = torch.tensor(inp["sigmas"], dtype=torch.float64)
        x = torch.tensor(inp["x_T"], dtype=torch.float64) * (1 + sigmas[0] ** 2) ** 0.5
        x0 = sampling.sample_dpmpp_2m(gaussian_denoiser(inp["m"], inp["s"]), x.reshape(1, -1), sigmas, disable=True)
        out = {"x0": flat(x0)}
    elif cmd in ("euler", "euler_ancestral"):
        torch.set_default_dtype(torch.float64)
        sigmas = torch.tensor(inp["sigmas"], dtype=torch.float64)
        x = torch.tensor(inp["x_T"], dtype=torch.float64) * (1 + sigmas[0] ** 2) ** 0.5
        x = x.reshape(1, -1)
        D = gaussian_denoiser(inp["m"], inp["s"])
        if cmd == "euler":
            x0 = sampling.sample_euler(D, x, sigmas, disable=True)
        else:
            draws = iter(inp["noise"])
            noise = lambda sigma, sigma_next: torch.tensor(next(draws), dtype=torch.float64).reshape(x.shape)
            x0 = sampling.sample_euler_ancestral(D, x, sigmas, disable=True, noise_sampler=noise)
        out = {"x0": flat(x0)}
    elif cmd in ("dpmpp_2m_sde", "dpmpp_3m_sde"):
        torch.set_default_dtype(torch.float64)
        sigmas = torch.tensor(inp["sigmas"], dtype=torch.float64)
        x = torch.tensor(inp["x_T"], dtype=torch.float64) * (1 + sigmas[0] ** 2) ** 0.5
        x = x.reshape(1, -1)
        draws = iter(inp["noise"])
        noise = lambda sigma, sigma_next: torch.tensor(next(draws), dtype=torch.float64).reshape(x.shape)
        xs = []
        record = lambda info: xs.append(flat(info["x"] / (1 + info["sigma"] ** 2) ** 0.5))
        sampler = getattr(sampling, "sample_" + cmd)
        x0 = sampler(gaussian_denoiser(inp["m"], inp["s"]), x, sigmas, disable=True,
                     noise_sampler=noise, callback=record)
        out = {"x0": flat(x0), "xs": xs}
    elif cmd == "conversions":
        torch.set_default_dtype(torch.float64)
        ac = alphas_cumprod(inp["T"])
        eps = external.DiscreteEpsDDPMDenoiser(net_fn, ac, quantize=False)
        v = external.DiscreteVDDPMDenoiser(net_fn, ac, quantize=False)
        t = torch.tensor(inp["t"], dtype=torch.float64)
        sigma = torch.tensor(inp["sigma"], dtype=torch.float64)
        x = torch.tensor(inp["x"], dtype=torch.float64)
        gs = torch.tensor(inp["grid_sigma"], dtype=torch.float64)
        x = x.reshape(len(gs), -1)
        out = {
            "t_to_sigma": flat(eps.t_to_sigma(t)),
            "sigma_to_t": flat(eps.sigma_to_t(sigma)),
            "sigmas": flat(eps.sigmas),
            "eps_denoised": flat(eps(x, gs)),
            "v_denoised": flat(v(x, gs)),
        }
    else:
        raise SystemExit(f"unknown cmd {cmd}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
