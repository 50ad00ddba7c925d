#!/usr/bin/env python3
"""One row per samples.npz (array `samples`, N x 1 x H x W in [-1, 1]): the per-class figure of
README's Fashion-MNIST section. Each image is scaled up 2x and stands in a grey gutter of
max(2, H/6) pixels, as ddpm-rs's own grids draw it (ddpm-data's viz::gutter).

    python scripts/stack_rows.py OUT.png class-0/samples.npz class-1/samples.npz ...
"""
import sys

import numpy as np
from PIL import Image

out, files = sys.argv[1], sys.argv[2:]
rows = [np.load(f)["samples"][:, 0] for f in files]
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
