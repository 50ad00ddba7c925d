#!/usr/bin/env python3
"""One row per samples.npz (array `samples`, N x 1 x H x W in [-1, 1]): the per-class figure of
README's Fashion-MNIST section. Each image is scaled up 2x and stands in a grey gutter of
max(2, H/6) pixels, as ddpm-rs's own grids draw it (ddpm-data's viz::gutter).

    python scripts/stack_rows.py OUT.png class-0/samples.npz class-1/samples.npz ...

`FILE.npz:A:B` takes images A to B-1 of that file for its row (README's peer figure:
`run/samples.npz:0:12 run/samples.npz:12:24`).
"""
import sys

import numpy as np
from PIL import Image

out, files = sys.argv[1], sys.argv[2:]


def row(arg):
    """The images of one row: FILE.npz, or FILE.npz:A:B for images A to B-1."""
    if arg.count(":") < 2:
        return np.load(arg)["samples"][:, 0]
    path, a, b = arg.rsplit(":", 2)
    x = np.load(path)["samples"][:, 0]
    try:
        a, b = int(a), int(b)
    except ValueError:
        sys.exit(f"{arg}: expected FILE.npz:A:B with whole numbers A and B")
    if not 0 <= a < b <= len(x):
        sys.exit(f"{arg}: expected 0 <= A < B <= {len(x)} (the images in {path})")
    return x[a:b]


rows = [row(f) for f in files]
n, h, w = max(len(r) for r in rows), rows[0].shape[1], rows[0].shape[2]
s = 2
g = max(2, -(-h * s // 6))
canvas = np.full((g + len(rows) * (h * s + g), g + n * (w * s + g)), 128, np.uint8)
for i, r in enumerate(rows):
    for j, img in enumerate(r):
        px = np.clip(np.round((img + 1) * 127.5), 0, 255).astype(np.uint8)
        px = px.repeat(s, 0).repeat(s, 1)
        y, x = g + i * (h * s + g), g + j * (w * s + g)
        canvas[y : y + h * s, x : x + w * s] = px
Image.fromarray(canvas, mode="L").save(out)
print(f"{out}: {len(rows)} rows of {n}")
