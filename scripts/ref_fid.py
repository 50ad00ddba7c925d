"""pytorch-fid as the oracle for ddpm-eval.

  ref_fid.py weights OUT.pth [--seed S] [--informative]
      pytorch-fid's FID Inception with random weights (its architecture, weights not loaded:
      PyTorch's init with every tensor perturbed, BatchNorm statistics too), saved the way the
      real file is (legacy serialisation, no num_batches_tracked). PyTorch's init shrinks the
      signal layer by layer, so those features hardly depend on the image (FID ~0 between any
      two sets, IS 1); --informative draws the convolutions as N(0, 3/fan_in) and BatchNorm near
      identity, so that the features vary with the input (IS stays near 1: the features share
      a large common part).
  ref_fid.py features WEIGHTS.pth IMAGES.npy OUT.npz --batch B [--spatial]
      pool3 features and fc logits (no bias) of images in [0, 1] (N x 3 x H x W), computed by
      pytorch-fid's InceptionV3 in batches of B. With --spatial, also `spatial` [N, 2023]: a
      forward hook on the network's `Mixed_6d.branch1x1` module (BasicConv2d: conv, bn, relu),
      whose output's first 7 channels are taken in NHWC order and flattened per image, as
      guided-diffusion's evaluator does with TF's `mixed_6/conv:0[..., :7]`.
  ref_fid.py fid-is WEIGHTS.pth SAMPLES.npy REF.npy --batch B
      the whole pytorch-fid protocol on two image sets in [0, 1] (N x 3 x H x W): pool3 features,
      mu and sigma (np.cov rowvar=False), calculate_frechet_distance, and the Inception Score
      (10 splits, as below) of SAMPLES; prints JSON {fid, is_mean, is_std}.
  ref_fid.py frechet A.npz B.npz
      pytorch-fid's calculate_frechet_distance on two statistics files; prints JSON {fid, seconds}.
  ref_fid.py is LOGITS.npy
      the Inception Score (10 splits) in NumPy; prints JSON {mean, std}.
  ref_fid.py load-features FEATURES.npz
      NumPy's view of a reference-features file: JSON {dtype, shape, values} of its `pool3`.
  ref_fid.py stats FEATURES.npy OUT.npz
      mu and sigma (np.cov rowvar=False) of features, as pytorch-fid computes them.
  ref_fid.py load STATS.npz
      the statistics as pytorch-fid's own loader (fid_score.compute_statistics_of_path) reads
      them, and the arrays guided-diffusion's evaluator reads (mu_s, sigma_s) when present;
      prints JSON {mu, sigma, mu_s, sigma_s} (flattened; null when absent).
"""
import json
import sys
import time

import numpy as np
import torch
import pytorch_fid.inception as inc
from pytorch_fid.fid_score import calculate_frechet_distance


def fid_inception():
    inc.load_state_dict_from_url = lambda *a, **k: None
    orig = torch.nn.Module.load_state_dict
    torch.nn.Module.load_state_dict = lambda self, sd, *a, **k: None
    try:
        return inc.fid_inception_v3()
    finally:
        torch.nn.Module.load_state_dict = orig


def features(weights, images, batch):
    """pool3 [N, 2048] and fc logits without the bias of images in [0, 1] (an .npy file),
    through pytorch-fid's InceptionV3 loaded the way pytorch-fid loads its weights."""
    sd = torch.load(weights, map_location="cpu", weights_only=True)
    inc.load_state_dict_from_url = lambda *a, **k: sd
    model = inc.InceptionV3([3], resize_input=True, normalize_input=True, use_fid_inception=True).eval()
    x = torch.from_numpy(np.load(images)).float()
    with torch.no_grad():
        pool3 = torch.cat([model(x[i : i + batch])[0].squeeze(3).squeeze(2) for i in range(0, x.shape[0], batch)])
    return pool3, pool3 @ sd["fc.weight"].T


def inception_score(logits, splits=10):
    """The Inception Score as the original TF code states it, in NumPy."""
    logits = logits.astype(np.float64)
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    p = e / e.sum(axis=1, keepdims=True)
    scores = []
    for k in range(splits):
        part = p[k * (p.shape[0] // splits) : (k + 1) * (p.shape[0] // splits)]
        py = np.mean(part, axis=0, keepdims=True)
        kl = part * (np.log(part) - np.log(py))
        scores.append(np.exp(np.mean(np.sum(kl, axis=1))))
    return float(np.mean(scores)), float(np.std(scores))


def main():
    cmd = sys.argv[1]
    if cmd == "weights":
        seed = int(sys.argv[sys.argv.index("--seed") + 1]) if "--seed" in sys.argv else 0
        informative = "--informative" in sys.argv
        torch.manual_seed(seed)
        net = fid_inception()
        sd = net.state_dict()
        out = {}
        for k, v in sd.items():
            if k.endswith("num_batches_tracked"):
                continue
            v = v.clone().float()
            if informative and k.endswith("conv.weight"):
                v = torch.randn_like(v) * (3.0 / v[0].numel()) ** 0.5
            elif informative and k.endswith("running_mean"):
                v = 0.01 * torch.randn_like(v)
            elif informative and k.endswith("bn.weight"):
                v = 1.0 + 0.1 * torch.randn_like(v)
            elif informative and k.endswith("bn.bias"):
                v = 0.01 * torch.randn_like(v)
            elif k.endswith("running_var"):
                v = 1.0 + 0.5 * torch.rand_like(v)
            elif k.endswith("running_mean"):
                v = 0.1 * torch.randn_like(v)
            elif "bn." in k:
                v = v + 0.1 * torch.randn_like(v)
            else:
                v = v + 0.01 * torch.randn_like(v)
            out[k] = v
        torch.save(out, sys.argv[2], _use_new_zipfile_serialization=False)
    elif cmd == "fid-is":
        weights, samples, ref = sys.argv[2], sys.argv[3], sys.argv[4]
        batch = int(sys.argv[sys.argv.index("--batch") + 1])
        (ps, ls), (pr, _) = (features(weights, samples, batch), features(weights, ref, batch))
        stats = lambda f: (np.mean(f, axis=0), np.cov(f, rowvar=False))
        (m1, s1), (m2, s2) = stats(ps.numpy().astype(np.float64)), stats(pr.numpy().astype(np.float64))
        mean, std = inception_score(ls.numpy())
        print(json.dumps({"fid": float(calculate_frechet_distance(m1, s1, m2, s2)),
                          "is_mean": mean, "is_std": std}))
    elif cmd == "features":
        weights, images, out = sys.argv[2], sys.argv[3], sys.argv[4]
        batch = int(sys.argv[sys.argv.index("--batch") + 1])
        sd = torch.load(weights, map_location="cpu", weights_only=True)
        # pytorch-fid's own loading path, with the file in place of the download.
        inc.load_state_dict_from_url = lambda *a, **k: sd
        # Keep the torchvision-layout network InceptionV3 builds, to hook a layer by its name.
        built = {}
        make = inc.fid_inception_v3
        inc.fid_inception_v3 = lambda: built.setdefault("net", make())
        model = inc.InceptionV3([3], resize_input=True, normalize_input=True, use_fid_inception=True).eval()
        captured = []
        if "--spatial" in sys.argv:
            hook = lambda module, inputs, output: captured.append(
                output[:, :7].permute(0, 2, 3, 1).reshape(output.shape[0], -1).clone()
            )
            built["net"].Mixed_6d.branch1x1.register_forward_hook(hook)
        x = torch.from_numpy(np.load(images)).float()
        pools = []
        with torch.no_grad():
            for i in range(0, x.shape[0], batch):
                pools.append(model(x[i : i + batch])[0].squeeze(3).squeeze(2))
        pool3 = torch.cat(pools)
        arrays = dict(pool3=pool3.numpy(), logits=(pool3 @ sd["fc.weight"].T).numpy())
        if captured:
            arrays["spatial"] = torch.cat(captured).numpy()
        np.savez(out, **arrays)
    elif cmd == "frechet":
        a, b = np.load(sys.argv[2]), np.load(sys.argv[3])
        t = time.perf_counter()
        fid = calculate_frechet_distance(a["mu"], a["sigma"], b["mu"], b["sigma"])
        print(json.dumps({"fid": float(fid), "seconds": time.perf_counter() - t}))
    elif cmd == "is":
        mean, std = inception_score(np.load(sys.argv[2]))
        print(json.dumps({"mean": mean, "std": std}))
    elif cmd == "load":
        from pytorch_fid.fid_score import compute_statistics_of_path

        mu, sigma = compute_statistics_of_path(sys.argv[2], None, 1, 2048, "cpu")
        f = np.load(sys.argv[2])
        extra = {k: f[k].ravel().tolist() if k in f.files else None for k in ("mu_s", "sigma_s")}
        print(json.dumps({"mu": mu.ravel().tolist(), "sigma": sigma.ravel().tolist(), **extra}))
    elif cmd == "load-features":
        a = np.load(sys.argv[2])["pool3"]
        print(json.dumps({"dtype": str(a.dtype), "shape": list(a.shape), "values": a.astype(np.float64).ravel().tolist()}))
    elif cmd == "stats":
        f = np.load(sys.argv[2]).astype(np.float64)
        np.savez_compressed(sys.argv[3], mu=np.mean(f, axis=0), sigma=np.cov(f, rowvar=False))
    else:
        raise SystemExit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
