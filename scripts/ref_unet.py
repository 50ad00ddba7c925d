"""diffusers' UNet2DModel as the oracle for ddpm-nets' UNet.

  ref_unet.py make DIR [--preset small|cifar10] [--classes N] [--head-dim D] [--old-keys] [--seed S]
                      [--out-scale K] [--scale-shift]
      builds a UNet2DModel with random weights (PyTorch's init, then every tensor perturbed so
      norms and biases are exercised; --out-scale multiplies conv_out by K, an off-scale model
      whose x0 predictions leave [-1, 1]; --scale-shift sets resnet_time_scale_shift =
      "scale_shift", attn_norm_num_groups with it), saves it with save_pretrained (config.json +
      diffusion_pytorch_model.safetensors) and a DDPM scheduler config beside it, and writes
      DIR/io.safetensors with inputs x, t (and y) and diffusers' output `out`.
  ref_unet.py keys [--preset cifar10]
      prints {name: shape} of the state dict and the parameter count, without weights.
"""
import argparse
import json
import os

import torch
from diffusers import DDPMScheduler, UNet2DModel
from safetensors.torch import save_file


def config(preset, classes, head_dim, scale_shift=False):
    if preset == "cifar10":
        c = dict(sample_size=32, block_out_channels=(128, 256, 256, 256), dropout=0.1)
    else:
        c = dict(sample_size=16, block_out_channels=(32, 64, 64, 64), norm_num_groups=8)
    c.update(
        in_channels=3,
        out_channels=3,
        layers_per_block=2,
        down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
        downsample_padding=0,
        flip_sin_to_cos=False,
        freq_shift=1,
        norm_eps=1e-6,
        attention_head_dim=head_dim,
        act_fn="silu",
    )
    if classes:
        c["num_class_embeds"] = classes
    if scale_shift:
        # attn_norm_num_groups keeps the mid block's attention GroupNorm, which diffusers drops
        # under scale_shift otherwise (ours, like improved-diffusion's, always has it).
        c["resnet_time_scale_shift"] = "scale_shift"
        c["attn_norm_num_groups"] = c.get("norm_num_groups", 32)
    return c


def main():
    p = argparse.ArgumentParser()
    p.add_argument("cmd", choices=["make", "keys"])
    p.add_argument("dir", nargs="?")
    p.add_argument("--preset", default="small")
    p.add_argument("--classes", type=int, default=0)
    p.add_argument("--head-dim", type=int, default=None)
    p.add_argument("--old-keys", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=3)
    p.add_argument("--timesteps", type=int, default=1000)
    p.add_argument("--out-scale", type=float, default=1.0)
    p.add_argument("--scale-shift", action="store_true")
    a = p.parse_args()
    torch.manual_seed(a.seed)
    model = UNet2DModel(**config(a.preset, a.classes, a.head_dim, a.scale_shift)).eval()
    if a.cmd == "keys":
        sd = model.state_dict()
        print(json.dumps({"keys": {k: list(v.shape) for k, v in sd.items()},
                          "num_params": sum(p.numel() for p in model.parameters())}))
        return
    with torch.no_grad():
        for prm in model.parameters():
            prm.add_(0.05 * torch.randn_like(prm))
        model.conv_out.weight.mul_(a.out_scale)
        model.conv_out.bias.mul_(a.out_scale)
    model.save_pretrained(a.dir, safe_serialization=True)
    DDPMScheduler(num_train_timesteps=a.timesteps, beta_schedule="linear", variance_type="fixed_large").save_pretrained(
        os.path.join(a.dir, "scheduler"))
    if a.old_keys:
        # Rewrite attention names the way diffusers < 0.15 (the google/ddpm-* uploads) stored them.
        from safetensors.torch import load_file
        path = os.path.join(a.dir, "diffusion_pytorch_model.safetensors")
        sd = load_file(path)
        ren = {".to_q.": ".query.", ".to_k.": ".key.", ".to_v.": ".value.", ".to_out.0.": ".proj_attn."}
        out = {}
        for k, v in sd.items():
            for new, old in ren.items():
                if ".attentions." in k and new in k:
                    k = k.replace(new, old)
            out[k] = v
        save_file(out, path)
    s = model.config.sample_size
    x = torch.randn(a.batch, 3, s, s)
    t = torch.tensor([0.0, 17.0, 999.0][: a.batch] + [500.0] * max(0, a.batch - 3))
    io = {"x": x, "t": t}
    kwargs = {}
    if a.classes:
        y = torch.arange(a.batch) % a.classes
        io["y"] = y
        kwargs["class_labels"] = y
    with torch.no_grad():
        io["out"] = model(x, t, **kwargs).sample
    save_file({k: v.contiguous() for k, v in io.items()}, os.path.join(a.dir, "io.safetensors"))


if __name__ == "__main__":
    main()
