"""Precision and recall as guided-diffusion's `evaluations/evaluator.py` computes them, restated
in NumPy (the evaluator itself needs TensorFlow 1 graphs, which the venv does not have).

This restates, step by step, `ManifoldEstimator.manifold_radii`, `ManifoldEstimator.evaluate_pr`,
`DistanceBlock` and `_batch_pairwise_distances` (openai/guided-diffusion), with their defaults:
squared Euclidean distances max(|u|^2 - 2 u.v + |v|^2, 0) computed per block of
row_batch x col_batch; in float16 (every op's result rounded to float16, the reductions and the
matmul accumulated in float32 as TF does on GPU) unless some value of the block is not finite,
then in float32; radius = value at sorted position k (k = 3) of the point's row of distances to
its own set, the point itself included; precision = share of samples within (<=) some reference
radius, recall = share of references within some sample radius.

Usage: ref_prdc.py REF.npy SAMPLES.npy [--k 3] [--row-batch 10000] [--col-batch 10000] [--float]
Prints JSON {precision, recall, radii_ref, radii_samples, f32_blocks}.
"""
import argparse
import json

import numpy as np

F16, F32 = np.float16, np.float32
f32_blocks = 0


def sq_dist(u, v, dtype):
    """_batch_pairwise_distances in `dtype`, each op's result rounded to `dtype`."""
    r = lambda x: x.astype(dtype)
    u, v = r(u), r(v)
    uf, vf = u.astype(F32), v.astype(F32)
    norm_u = r(r(uf * uf).astype(F32).sum(axis=1, dtype=F32)).reshape(-1, 1)
    norm_v = r(r(vf * vf).astype(F32).sum(axis=1, dtype=F32)).reshape(1, -1)
    mm = r(uf @ vf.T)
    two_mm = r(mm.astype(F32) * 2)
    d = r(norm_u.astype(F32) - two_mm.astype(F32))
    d = r(d.astype(F32) + norm_v.astype(F32))
    return np.maximum(d, r(np.zeros(()))).astype(F32)


def distance_block(u, v, half):
    global f32_blocks
    if half:
        d16 = sq_dist(u, v, F16)
        if np.all(np.isfinite(d16)):
            return d16
        f32_blocks += 1
    return sq_dist(u, v, F32)


def manifold_radii(features, k, row_batch, col_batch, half):
    n = len(features)
    radii = np.zeros([n], dtype=F32)
    distance_batch = np.zeros([row_batch, n], dtype=F32)
    for begin1 in range(0, n, row_batch):
        end1 = min(begin1 + row_batch, n)
        for begin2 in range(0, n, col_batch):
            end2 = min(begin2 + col_batch, n)
            distance_batch[0 : end1 - begin1, begin2:end2] = distance_block(
                features[begin1:end1], features[begin2:end2], half
            )
        part = np.partition(distance_batch[0 : end1 - begin1, :], np.arange(k + 1), axis=1)
        radii[begin1:end1] = part[:, k]
    return radii


def evaluate_pr(f1, r1, f2, r2, row_batch, col_batch, half):
    s1 = np.zeros([len(f1)], dtype=bool)
    s2 = np.zeros([len(f2)], dtype=bool)
    for b1 in range(0, len(f1), row_batch):
        for b2 in range(0, len(f2), col_batch):
            d = distance_block(f1[b1 : b1 + row_batch], f2[b2 : b2 + col_batch], half)
            s1[b1 : b1 + row_batch] |= np.any(d <= r2[None, b2 : b2 + col_batch], axis=1)
            s2[b2 : b2 + col_batch] |= np.any(d <= r1[b1 : b1 + row_batch, None], axis=0)
    return float(np.mean(s2.astype(np.float64))), float(np.mean(s1.astype(np.float64)))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("ref")
    p.add_argument("samples")
    p.add_argument("--k", type=int, default=3)
    p.add_argument("--row-batch", type=int, default=10000)
    p.add_argument("--col-batch", type=int, default=10000)
    p.add_argument("--float", action="store_true")
    a = p.parse_args()
    ref = np.load(a.ref).astype(F32)
    samples = np.load(a.samples).astype(F32)
    half = not a.float
    r_ref = manifold_radii(ref, a.k, a.row_batch, a.col_batch, half)
    r_s = manifold_radii(samples, a.k, a.row_batch, a.col_batch, half)
    precision, recall = evaluate_pr(ref, r_ref, samples, r_s, a.row_batch, a.col_batch, half)
    print(json.dumps({
        "precision": precision,
        "recall": recall,
        "radii_ref": r_ref.astype(np.float64).tolist(),
        "radii_samples": r_s.astype(np.float64).tolist(),
        "f32_blocks": f32_blocks,
    }))


if __name__ == "__main__":
    main()
