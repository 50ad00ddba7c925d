"""Convert pytorch-fid's Inception weights to safetensors, once, so that ddpm-rs never unpickles.

Usage: convert_inception.py pt_inception-2015-12-05-6726825d.pth OUT.safetensors

The .pth is a plain state dict in PyTorch's legacy serialisation; it is read with
torch.load(weights_only=True), which refuses anything but tensors. Keys and shapes are checked
against pytorch-fid's FID Inception architecture (built without loading weights), and the
BatchNorm counters (num_batches_tracked), which inference never reads, are dropped.
"""
import sys

import torch
from safetensors.torch import save_file


def architecture_shapes():
    import pytorch_fid.inception as inc

    # Build the architecture without fetching weights: pytorch-fid would download them.
    inc.load_state_dict_from_url = lambda *a, **k: None
    orig = torch.nn.Module.load_state_dict
    torch.nn.Module.load_state_dict = lambda self, sd, *a, **k: None
    try:
        net = inc.fid_inception_v3()
    finally:
        torch.nn.Module.load_state_dict = orig
    return {k: tuple(v.shape) for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}


def main():
    src, dst = sys.argv[1], sys.argv[2]
    sd = torch.load(src, map_location="cpu", weights_only=True)
    if not isinstance(sd, dict):
        raise SystemExit(f"{src}: expected a state dict, got {type(sd).__name__}")
    sd = {k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    want = architecture_shapes()
    missing = sorted(set(want) - set(sd))
    extra = sorted(set(sd) - set(want))
    if missing or extra:
        raise SystemExit(f"{src}: not pytorch-fid's Inception (missing {missing[:3]}, unexpected {extra[:3]})")
    for k, shape in want.items():
        if tuple(sd[k].shape) != shape:
            raise SystemExit(f"{src}: {k} has shape {tuple(sd[k].shape)}, expected {shape}")
    save_file({k: v.float().contiguous() for k, v in sd.items()}, dst)
    print(f"{dst}: {len(sd)} tensors")


if __name__ == "__main__":
    main()
