"""Export scikit-learn's 8x8 handwritten digits (1797 images, 10 classes, UCI ML
hand-written digits, 16 grey levels) into the small binary file `ddpm-data` reads.

Run by `cargo xtask setup`; the data ships inside the scikit-learn package, so nothing
is downloaded. Format (little-endian):
    magic b"DDPMDIG1" | n u32 | height u32 | width u32 | max_value u32
    | n labels (u8) | n*height*width pixels (u8, 0..max_value, row-major)
"""
import struct
import sys

import numpy as np
from sklearn.datasets import load_digits


def main(out_path: str) -> None:
    d = load_digits()
    images = d.images.astype(np.int64)
    assert images.min() >= 0 and images.max() <= 16, "digits pixels are 0..16"
    n, h, w = images.shape
    labels = d.target.astype(np.uint8)
    with open(out_path, "wb") as f:
        f.write(b"DDPMDIG1")
        f.write(struct.pack("<IIII", n, h, w, 16))
        f.write(labels.tobytes())
        f.write(images.astype(np.uint8).tobytes())


if __name__ == "__main__":
    main(sys.argv[1])
