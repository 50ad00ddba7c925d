"""KID oracle for ddpm-eval's kid.rs: clean-fid's own `kernel_distance` on our features.

clean-fid draws its subsets with `np.random.choice`, which Rust cannot reproduce; so this
script hands it ours: `np.random.choice` inside cleanfid.fid is replaced by a function that
returns the subsets given in the file, in the order clean-fid asks for them (per subset, one
of feats2 first, then one of feats1). Each subset's value is clean-fid's `kernel_distance`
with num_subsets=1 on that pair; the mean is one call with all of them. A last value uses
clean-fid's own random draw with subset size = n and one subset, which is deterministic
(a permutation of all features).

usage: ref_kid.py FEATURES.npz   (feats1 [n1, d], feats2 [n2, d], idx1 [S, m], idx2 [S, m]; f64)
prints JSON: {"mean", "per_subset": [...], "std", "full"}
"""
import json
import sys

import numpy as np
from cleanfid import fid


def main():
    z = np.load(sys.argv[1])
    feats1, feats2 = z["feats1"], z["feats2"]
    idx1, idx2 = z["idx1"].astype(np.int64), z["idx2"].astype(np.int64)
    s, m = idx1.shape
    real_choice = np.random.choice

    def given(order):
        it = iter(order)
        return lambda n, size, replace=True: next(it)

    def draws(rows):
        return [a for i in rows for a in (idx2[i], idx1[i])]

    np.random.choice = given(draws(range(s)))
    mean = fid.kernel_distance(feats1, feats2, num_subsets=s, max_subset_size=m)
    per = []
    for i in range(s):
        np.random.choice = given(draws([i]))
        per.append(fid.kernel_distance(feats1, feats2, num_subsets=1, max_subset_size=m))
    np.random.choice = real_choice
    n = min(len(feats1), len(feats2))
    full = fid.kernel_distance(feats1[:n], feats2[:n], num_subsets=1, max_subset_size=n)
    print(json.dumps({"mean": mean, "per_subset": per, "std": float(np.std(per)), "full": full}))


if __name__ == "__main__":
    main()
