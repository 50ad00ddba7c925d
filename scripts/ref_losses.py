"""NumPy (float64) oracle for the tensor math of ddpm-core: a statement of improved-diffusion's
`p_mean_variance`, `training_losses`, `_vb_terms_bpd`, `_prior_bpd` and `calc_bpd_loop`
(with losses.py's normal_kl and discretized_gaussian_log_likelihood), written from the papers'
formulas and that code base's conventions, independent of the Rust implementation.

Usage: ref_losses.py INPUT.json  -> prints one JSON object.
The input names a schedule (ref_schedule.py's arguments), the parameterisation, and arrays.
"""
import json
import sys
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from ref_schedule import arrays, named_betas  # noqa: E402


def normal_kl(m1, lv1, m2, lv2):
    return 0.5 * (-1.0 + lv2 - lv1 + np.exp(lv1 - lv2) + (m1 - m2) ** 2 * np.exp(-lv2))


def cdf(x):
    return 0.5 * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x ** 3)))


def disc_loglik(x, mean, log_scale):
    c = x - mean
    inv = np.exp(-log_scale)
    plus = cdf(inv * (c + 1 / 255))
    minus = cdf(inv * (c - 1 / 255))
    return np.where(
        x < -0.999,
        np.log(np.maximum(plus, 1e-12)),
        np.where(x > 0.999, np.log(np.maximum(1 - minus, 1e-12)), np.log(np.maximum(plus - minus, 1e-12))),
    )


def mean_flat(x):
    return x.reshape(x.shape[0], -1).mean(axis=1)


class Diffusion:
    def __init__(self, betas, mean, var):
        self.a = arrays(betas)
        self.betas = betas
        self.T = len(betas)
        self.mean, self.var = mean, var
        ac = self.a["alphas_cumprod"]
        self.sqrt_ac, self.sqrt_1mac = np.sqrt(ac), np.sqrt(1 - ac)
        self.sqrt_recip, self.sqrt_recipm1 = np.sqrt(1 / ac), np.sqrt(1 / ac - 1)

    def ex(self, arr, t, ndim):
        return np.asarray(arr)[t].reshape((-1,) + (1,) * (ndim - 1))

    def q_sample(self, x0, t, eps):
        return self.ex(self.sqrt_ac, t, x0.ndim) * x0 + self.ex(self.sqrt_1mac, t, x0.ndim) * eps

    def posterior(self, x0, xt, t):
        n = xt.ndim
        mean = self.ex(self.a["posterior_mean_coef1"], t, n) * x0 + self.ex(self.a["posterior_mean_coef2"], t, n) * xt
        return mean, self.ex(self.a["posterior_log_variance_clipped"], t, n) * np.ones_like(xt)

    def pmv(self, out, xt, t, clip):
        n, C = xt.ndim, xt.shape[1]
        var_out = None
        if self.var in ("learned", "learned_range"):
            out, var_out = out[:, :C], out[:, C:]
        if self.var == "fixed_small":
            lv = self.ex(self.a["posterior_log_variance_clipped"], t, n) * np.ones_like(xt)
        elif self.var == "fixed_large":
            lv = self.ex(self.a["fixedlarge_log_variance"], t, n) * np.ones_like(xt)
        elif self.var == "learned":
            lv = var_out
        else:
            frac = (var_out + 1) / 2
            lv = frac * self.ex(np.log(self.betas), t, n) + (1 - frac) * self.ex(self.a["posterior_log_variance_clipped"], t, n)
        if self.mean == "eps":
            x0 = self.ex(self.sqrt_recip, t, n) * xt - self.ex(self.sqrt_recipm1, t, n) * out
        elif self.mean == "x0":
            x0 = out
        else:
            x0 = self.ex(self.sqrt_ac, t, n) * xt - self.ex(self.sqrt_1mac, t, n) * out
        if clip:
            x0 = np.clip(x0, -1, 1)
        mean, _ = self.posterior(x0, xt, t)
        return mean, lv, x0

    def vb(self, out, x0, xt, t, clip):
        true_mean, true_lv = self.posterior(x0, xt, t)
        mean, lv, x0p = self.pmv(out, xt, t, clip)
        kl = mean_flat(normal_kl(true_mean, true_lv, mean, lv)) / np.log(2.0)
        nll = mean_flat(-disc_loglik(x0, mean, 0.5 * lv)) / np.log(2.0)
        return np.where(t == 0, nll, kl), x0p

    def prior(self, x0):
        t = np.full(x0.shape[0], self.T - 1)
        mean = self.ex(self.sqrt_ac, t, x0.ndim) * x0
        lv = self.ex(np.log(1 - self.a["alphas_cumprod"]), t, x0.ndim) * np.ones_like(x0)
        return mean_flat(normal_kl(mean, lv, 0.0, 0.0)) / np.log(2.0)


def analytic_model(xt, t, T, learned):
    """The 'network' of the bound test: smooth in x_t and t, with a variance channel if learned."""
    tt = (t / T).reshape((-1,) + (1,) * (xt.ndim - 1))
    mean = 0.4 * xt * (1 - 0.5 * tt) + 0.05
    if learned:
        return np.concatenate([mean, np.tanh(0.7 * xt) * 0.9 - 0.1 * tt], axis=1)
    return mean


def main():
    inp = json.load(open(sys.argv[1]))
    s = SimpleNamespace(**inp["schedule"])
    betas = named_betas(s.schedule, s.steps, 1e-4, 0.02, False, 0.008, 0.999)
    d = Diffusion(betas, inp["mean"], inp["var"])
    shape = inp["shape"]
    x0 = np.array(inp["x0"], dtype=np.float64).reshape(shape)
    eps = np.array(inp["eps"], dtype=np.float64).reshape(shape)
    t = np.array(inp["t"], dtype=np.int64)
    out_shape = [shape[0], inp["out_channels"]] + shape[2:]
    output = np.array(inp["output"], dtype=np.float64).reshape(out_shape)
    xt = d.q_sample(x0, t, eps)
    res = {"x_t": xt.ravel().tolist()}
    for clip in (False, True):
        mean, lv, x0p = d.pmv(output, xt, t, clip)
        res[f"mean_clip{int(clip)}"] = mean.ravel().tolist()
        res[f"log_variance_clip{int(clip)}"] = lv.ravel().tolist()
        res[f"x0_pred_clip{int(clip)}"] = x0p.ravel().tolist()
    vb, _ = d.vb(output, x0, xt, t, False)
    res["vb"] = vb.tolist()
    res["prior_bpd"] = d.prior(x0).tolist()
    # training_losses
    C = shape[1]
    mean_out = output[:, :C]
    ac = d.a["alphas_cumprod"]
    target = {"eps": eps, "x0": x0, "v": d.ex(np.sqrt(ac), t, 4) * eps - d.ex(np.sqrt(1 - ac), t, 4) * x0}[inp["mean"]]
    mse = mean_flat((target - mean_out) ** 2)
    gamma = inp.get("min_snr_gamma")
    if gamma is not None:
        snr = ac[t] / (1 - ac[t])
        w = {"eps": np.minimum(snr, gamma) / snr, "x0": np.minimum(snr, gamma), "v": np.minimum(snr, gamma) / (snr + 1)}[inp["mean"]]
        mse = mse * w
    if inp["loss"] == "vlb":
        res["loss"] = (vb * d.T).tolist()
    elif inp["loss"] == "hybrid":
        res["loss"] = (mse + vb * inp.get("hybrid_lambda", 0.001) * d.T).tolist()
    else:
        res["loss"] = mse.tolist()
    # calc_bpd_loop with the analytic model and the given per-step noise
    if "bpd_noise" in inp:
        noise = np.array(inp["bpd_noise"], dtype=np.float64).reshape([d.T] + shape)
        learned = d.var in ("learned", "learned_range")
        terms = np.zeros((shape[0], d.T))
        for tt in range(d.T - 1, -1, -1):
            tb = np.full(shape[0], tt)
            xtt = d.q_sample(x0, tb, noise[tt])
            out = analytic_model(xtt, tb.astype(np.float64), d.T, learned)
            terms[:, tt], _ = d.vb(out, x0, xtt, tb, True)
        res["bpd_vb"] = terms.ravel().tolist()
        res["bpd_total"] = (terms.sum(axis=1) + d.prior(x0)).tolist()
    print(json.dumps(res))


if __name__ == "__main__":
    main()
