//! The UNet's building blocks (Ho et al. 2020, Appendix B; the official `diffusion_tf/models/unet.py`),
//! with parameter names as diffusers spells them so that its checkpoints load key for key.

use crate::init;
use tch::Tensor;
use tch::nn::{self, Module};

/// What every res block of one UNet shares.
#[derive(Debug, Clone, Copy)]
pub struct ResnetOptions {
    /// Width of the time (and class) embedding.
    pub temb: i64,
    pub groups: i64,
    pub eps: f64,
    pub dropout: f64,
    /// Condition on the embedding by scale and shift after the second norm (see
    /// [`ResnetBlock`]) instead of adding it before that norm.
    pub time_scale_shift: bool,
}

/// Res block: GroupNorm, SiLU, 3x3 conv, + dense(SiLU(temb)), GroupNorm, SiLU, dropout,
/// 3x3 conv (zero-init), plus a 1x1 shortcut when the width changes.
///
/// With `time_scale_shift` the dense layer gives 2 C_out values (scale, shift), and the middle
/// becomes GroupNorm(h) (1 + scale) + shift before the SiLU: improved-diffusion's
/// `use_scale_shift_norm` (Nichol & Dhariwal 2021, Sec. 3 and their `ResBlock`) and diffusers'
/// `resnet_time_scale_shift = "scale_shift"`.
#[derive(Debug)]
pub struct ResnetBlock {
    norm1: nn::GroupNorm,
    conv1: nn::Conv2D,
    time_emb_proj: nn::Linear,
    norm2: nn::GroupNorm,
    conv2: nn::Conv2D,
    conv_shortcut: Option<nn::Conv2D>,
    dropout: f64,
    time_scale_shift: bool,
}

impl ResnetBlock {
    pub fn new(vs: nn::Path, c_in: i64, c_out: i64, o: &ResnetOptions) -> Self {
        let temb_out = if o.time_scale_shift { 2 * c_out } else { c_out };
        Self {
            norm1: init::group_norm(&vs / "norm1", o.groups, c_in, o.eps),
            conv1: init::conv2d(&vs / "conv1", c_in, c_out, 3, 1, 1, 1.0),
            time_emb_proj: init::linear(&vs / "time_emb_proj", o.temb, temb_out, 1.0),
            norm2: init::group_norm(&vs / "norm2", o.groups, c_out, o.eps),
            conv2: init::conv2d(&vs / "conv2", c_out, c_out, 3, 1, 1, 0.0),
            conv_shortcut: (c_in != c_out)
                .then(|| init::conv2d(&vs / "conv_shortcut", c_in, c_out, 1, 1, 0, 1.0)),
            dropout: o.dropout,
            time_scale_shift: o.time_scale_shift,
        }
    }

    /// # Shapes
    /// - `x`: [B, C_in, H, W], `temb_act`: [B, temb] (already passed through SiLU)
    /// - returns [B, C_out, H, W]
    pub fn forward_t(&self, x: &Tensor, temb_act: &Tensor, train: bool) -> Tensor {
        let h = self.conv1.forward(&self.norm1.forward(x).silu());
        let t = self.time_emb_proj.forward(temb_act).unsqueeze(-1).unsqueeze(-1);
        let h = if self.time_scale_shift {
            let [scale, shift] = <[Tensor; 2]>::try_from(t.chunk(2, 1)).expect("two halves");
            self.norm2.forward(&h) * (scale + 1.0) + shift
        } else {
            self.norm2.forward(&(h + t))
        };
        let h = self.conv2.forward(&h.silu().dropout(self.dropout, train));
        match &self.conv_shortcut {
            Some(s) => s.forward(x) + h,
            None => x + h,
        }
    }
}

/// Self-attention over all positions (single head in the paper), scaled by d^-1/2,
/// with a residual connection; the output projection is zero-initialised.
#[derive(Debug)]
pub struct AttentionBlock {
    group_norm: nn::GroupNorm,
    to_q: nn::Linear,
    to_k: nn::Linear,
    to_v: nn::Linear,
    to_out: nn::Linear,
    heads: i64,
}

impl AttentionBlock {
    pub fn new(vs: nn::Path, channels: i64, heads: i64, groups: i64, eps: f64) -> Self {
        Self {
            group_norm: init::group_norm(&vs / "group_norm", groups, channels, eps),
            to_q: init::linear(&vs / "to_q", channels, channels, 1.0),
            to_k: init::linear(&vs / "to_k", channels, channels, 1.0),
            to_v: init::linear(&vs / "to_v", channels, channels, 1.0),
            to_out: init::linear(&vs / "to_out" / 0, channels, channels, 0.0),
            heads,
        }
    }

    /// # Shapes
    /// - `x`: [B, C, H, W] -> [B, C, H, W]
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let (b, c, h, w) = x.size4().expect("attention input is 4-D");
        let hd = c / self.heads;
        // [B, C, HW] -> [B, HW, C]
        let tokens = self.group_norm.forward(&x.view([b, c, h * w])).transpose(1, 2);
        let split = |t: Tensor| t.view([b, h * w, self.heads, hd]).transpose(1, 2);
        let q = split(self.to_q.forward(&tokens));
        let k = split(self.to_k.forward(&tokens));
        let v = split(self.to_v.forward(&tokens));
        let scale = (hd as f64).powf(-0.5);
        let a = Tensor::scaled_dot_product_attention(
            &q,
            &k,
            &v,
            None::<Tensor>,
            0.0,
            false,
            scale,
            false,
        );
        let a = a.transpose(1, 2).reshape([b, h * w, c]);
        let out = self.to_out.forward(&a).transpose(1, 2).reshape([b, c, h, w]);
        out + x
    }
}

/// x2 downsampling: a stride-2 3x3 conv (padding right/bottom by one, or one on all sides),
/// or 2x2 average pooling.
#[derive(Debug)]
pub struct Downsample {
    conv: Option<nn::Conv2D>,
    pad_right_bottom: bool,
}

impl Downsample {
    pub fn new(vs: nn::Path, channels: i64, with_conv: bool, padding: i64) -> Self {
        Self {
            conv: with_conv
                .then(|| init::conv2d(&vs / "conv", channels, channels, 3, 2, padding, 1.0)),
            pad_right_bottom: padding == 0,
        }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        match &self.conv {
            Some(conv) if self.pad_right_bottom => conv.forward(&x.constant_pad_nd([0, 1, 0, 1])),
            Some(conv) => conv.forward(x),
            None => x.avg_pool2d([2, 2], [2, 2], [0, 0], false, true, None::<i64>),
        }
    }
}

/// x2 nearest-neighbour upsampling, optionally followed by a 3x3 conv.
#[derive(Debug)]
pub struct Upsample {
    conv: Option<nn::Conv2D>,
}

impl Upsample {
    pub fn new(vs: nn::Path, channels: i64, with_conv: bool) -> Self {
        Self {
            conv: with_conv.then(|| init::conv2d(&vs / "conv", channels, channels, 3, 1, 1, 1.0)),
        }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        let (_, _, h, w) = x.size4().expect("upsample input is 4-D");
        let up = x.upsample_nearest2d([2 * h, 2 * w], 2.0, 2.0);
        match &self.conv {
            Some(conv) => conv.forward(&up),
            None => up,
        }
    }
}
