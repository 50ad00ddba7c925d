//! Layers with the official DDPM initialisation (hojonathanho/diffusion `nn.py`):
//! `variance_scaling(scale, mode="fan_avg", distribution="uniform")` for weights, zero biases,
//! and scale 0 (exactly zero) for the last conv of each res block, the attention output
//! projection and the output conv, so that every residual branch starts as the identity.

use tch::nn::{self, Init};

/// U(-b, b) with b = sqrt(3 scale / fan_avg), fan_avg = (fan_in + fan_out) / 2.
pub fn variance_scaling(scale: f64, fan_in: i64, fan_out: i64) -> Init {
    if scale == 0.0 {
        return Init::Const(0.0);
    }
    let fan_avg = (fan_in + fan_out) as f64 / 2.0;
    let bound = (3.0 * scale / fan_avg).sqrt();
    Init::Uniform { lo: -bound, up: bound }
}

/// A k x k convolution with DDPM initialisation (`init_scale` 1 normally, 0 for zero-init).
pub fn conv2d(
    vs: nn::Path,
    c_in: i64,
    c_out: i64,
    k: i64,
    stride: i64,
    padding: i64,
    init_scale: f64,
) -> nn::Conv2D {
    let cfg = nn::ConvConfig {
        stride,
        padding,
        ws_init: variance_scaling(init_scale, c_in * k * k, c_out * k * k),
        bs_init: Init::Const(0.0),
        ..Default::default()
    };
    nn::conv2d(vs, c_in, c_out, k, cfg)
}

/// A dense layer with DDPM initialisation.
pub fn linear(vs: nn::Path, d_in: i64, d_out: i64, init_scale: f64) -> nn::Linear {
    let cfg = nn::LinearConfig {
        ws_init: variance_scaling(init_scale, d_in, d_out),
        bs_init: Some(Init::Const(0.0)),
        bias: true,
    };
    nn::linear(vs, d_in, d_out, cfg)
}

/// GroupNorm with unit scale and zero shift.
pub fn group_norm(vs: nn::Path, groups: i64, channels: i64, eps: f64) -> nn::GroupNorm {
    nn::group_norm(vs, groups, channels, nn::GroupNormConfig { eps, ..Default::default() })
}
