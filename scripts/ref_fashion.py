"""Reference decode of Fashion-MNIST for the reader parity test of ddpm-data.

An independent decode of the IDX files: gzip + numpy.frombuffer, the layout taken from the
format's own header (big-endian magic, sizes), nothing shared with the Rust reader. For each
split it writes the pixels and the labels as raw uint8 bytes into OUT_DIR
(`{split}-pixels.u8`, `{split}-labels.u8`) and prints one JSON object with the shapes and
the per-class counts.

usage: ref_fashion.py DATA_DIR OUT_DIR
"""
import gzip
import json
import os
import sys

import numpy as np


def idx(path):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    dims = raw[3]
    shape = tuple(int(x) for x in np.frombuffer(raw, dtype=">u4", count=dims, offset=4))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dims)
    return data.reshape(shape)


def main():
    data_dir, out_dir = sys.argv[1], sys.argv[2]
    result = {}
    for split, prefix in [("train", "train"), ("test", "t10k")]:
        images = idx(os.path.join(data_dir, f"{prefix}-images-idx3-ubyte.gz"))
        labels = idx(os.path.join(data_dir, f"{prefix}-labels-idx1-ubyte.gz"))
        images.tofile(os.path.join(out_dir, f"{split}-pixels.u8"))
        labels.tofile(os.path.join(out_dir, f"{split}-labels.u8"))
        result[split] = {
            "shape": list(images.shape),
            "counts": np.bincount(labels, minlength=10).tolist(),
        }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
