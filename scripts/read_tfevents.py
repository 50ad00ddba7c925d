"""Reads TensorBoard event files with TensorBoard's own reader and prints what it found as JSON.

Usage: read_tfevents.py PATH   (an event file or a directory of them)

Oracle for crates/ddpm-train/tests/tensorboard.rs: EventAccumulator is what `tensorboard
--logdir` loads runs with (file discovery, record framing and checksums, purging of orphaned
steps on SessionLog START). Every scalar and image is kept (size guidance 0 = no sampling).
Images are decoded with Pillow so the test can compare pixels.
"""

import io
import json
import sys

from PIL import Image
from tensorboard.backend.event_processing import event_accumulator


def main():
    acc = event_accumulator.EventAccumulator(
        sys.argv[1],
        size_guidance={event_accumulator.SCALARS: 0, event_accumulator.IMAGES: 0},
    )
    acc.Reload()
    tags = acc.Tags()
    out = {"scalars": {}, "images": {}}
    for tag in tags[event_accumulator.SCALARS]:
        out["scalars"][tag] = [[e.step, e.value] for e in acc.Scalars(tag)]
    for tag in tags[event_accumulator.IMAGES]:
        images = []
        for e in acc.Images(tag):
            img = Image.open(io.BytesIO(e.encoded_image_string))
            img.load()
            images.append(
                {
                    "step": e.step,
                    "width": e.width,
                    "height": e.height,
                    "mode": img.mode,
                    "size": list(img.size),
                    "pixels": list(img.tobytes()),
                }
            )
        out["images"][tag] = images
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
