//! Network configurations. `UNetConfig::default()` is the paper's CIFAR-10 model
//! (Ho et al. 2020, Appendix B): ch = 128, ch_mult = (1, 2, 2, 2), two res blocks per level,
//! attention at 16x16, dropout 0.1, conv resampling; 35,746,307 parameters.

use crate::error::{NetError, Result};
use serde::{Deserialize, Serialize};

/// The DDPM UNet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UNetConfig {
    /// Side of the (square) input images.
    pub image_size: usize,
    pub in_channels: usize,
    /// Output channels; default: `in_channels`, doubled for a learned variance.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub out_channels: Option<usize>,
    /// Base width `ch`.
    pub ch: usize,
    /// Width multiplier per resolution level.
    pub ch_mult: Vec<usize>,
    pub num_res_blocks: usize,
    /// Resolutions (in pixels) whose blocks get self-attention.
    pub attention_resolutions: Vec<usize>,
    pub dropout: f64,
    /// Strided 3x3 conv down and nearest+3x3 conv up (true), or average pooling and plain nearest (false).
    pub resample_with_conv: bool,
    pub num_groups: usize,
    pub norm_eps: f64,
    /// Channels per attention head; none for one head over all channels (the paper's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attention_head_dim: Option<usize>,
    /// Class-conditional model with this many classes; an extra "null" class makes classifier-free guidance possible.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_classes: Option<usize>,
    /// 0: pad right/bottom by one before the stride-2 conv (TF "SAME", the official model); 1: pad 1 on all sides.
    pub downsample_padding: usize,
    /// Time embedding as [cos, sin] instead of [sin, cos].
    pub flip_sin_to_cos: bool,
    /// Frequencies exp(-ln(10000) i / (half - freq_shift)); the paper's is 1.
    pub freq_shift: f64,
    /// Res blocks take the time (and class) embedding as a scale and shift of their second
    /// GroupNorm, GroupNorm(h) (1 + scale) + shift (improved-diffusion's `use_scale_shift_norm`,
    /// diffusers' `resnet_time_scale_shift = "scale_shift"`), instead of adding it before that
    /// norm (false: the paper's).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub time_scale_shift: bool,
}

impl Default for UNetConfig {
    fn default() -> Self {
        Self {
            image_size: 32,
            in_channels: 3,
            out_channels: None,
            ch: 128,
            ch_mult: vec![1, 2, 2, 2],
            num_res_blocks: 2,
            attention_resolutions: vec![16],
            dropout: 0.1,
            resample_with_conv: true,
            num_groups: 32,
            norm_eps: 1e-6,
            attention_head_dim: None,
            num_classes: None,
            downsample_padding: 0,
            flip_sin_to_cos: false,
            freq_shift: 1.0,
            time_scale_shift: false,
        }
    }
}

impl UNetConfig {
    /// The paper's CIFAR-10 model.
    pub fn ddpm_cifar10() -> Self {
        Self::default()
    }

    /// The paper's 256x256 model (CelebA-HQ, LSUN): ch_mult (1,1,2,2,4,4), attention at 16, no dropout.
    pub fn ddpm_256() -> Self {
        Self { image_size: 256, ch_mult: vec![1, 1, 2, 2, 4, 4], dropout: 0.0, ..Self::default() }
    }

    /// Output channels for a model with or without a learned variance.
    pub fn resolved_out_channels(&self, learned_variance: bool) -> usize {
        self.out_channels.unwrap_or(self.in_channels * if learned_variance { 2 } else { 1 })
    }

    /// The resolution of each level, from `image_size` down.
    pub fn level_resolutions(&self) -> Vec<usize> {
        (0..self.ch_mult.len()).map(|i| self.image_size >> i).collect()
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |field, reason: String| Err(NetError::Config { field, reason });
        if self.ch_mult.is_empty() {
            return bad("ch_mult", "needs at least one level".into());
        }
        let levels = self.ch_mult.len();
        if self.image_size == 0 || !self.image_size.is_multiple_of(1 << (levels - 1)) {
            return bad(
                "image_size",
                format!(
                    "{} is not divisible by 2^{} for {levels} levels",
                    self.image_size,
                    levels - 1
                ),
            );
        }
        if self.in_channels == 0 || self.ch == 0 || self.ch_mult.contains(&0) {
            return bad("ch", "channels and multipliers must be positive".into());
        }
        for &m in &self.ch_mult {
            let c = self.ch * m;
            if self.num_groups == 0 || !c.is_multiple_of(self.num_groups) {
                return bad(
                    "num_groups",
                    format!("{} does not divide a level width {c}", self.num_groups),
                );
            }
            if let Some(hd) = self.attention_head_dim
                && (hd == 0 || !c.is_multiple_of(hd))
            {
                return bad(
                    "attention_head_dim",
                    format!("{hd} does not divide a level width {c}"),
                );
            }
        }
        let reached = self.level_resolutions();
        for r in &self.attention_resolutions {
            if !reached.contains(r) {
                return bad(
                    "attention_resolutions",
                    format!("{r} is never reached; the levels have resolutions {reached:?}"),
                );
            }
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad("dropout", format!("must be in [0, 1), got {}", self.dropout));
        }
        if self.downsample_padding > 1 {
            return bad(
                "downsample_padding",
                format!("must be 0 or 1, got {}", self.downsample_padding),
            );
        }
        if self.num_classes == Some(0) {
            return bad("num_classes", "must be positive when given".into());
        }
        Ok(())
    }
}

/// The MLP denoiser for 2-D data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MlpConfig {
    /// Dimension of the data points.
    pub dim: usize,
    /// Output dimension; default: `dim`, doubled for a learned variance.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub out_dim: Option<usize>,
    pub hidden: usize,
    pub layers: usize,
    /// Width of the sinusoidal time embedding.
    pub time_embed_dim: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_classes: Option<usize>,
}

impl Default for MlpConfig {
    fn default() -> Self {
        Self {
            dim: 2,
            out_dim: None,
            hidden: 128,
            layers: 4,
            time_embed_dim: 64,
            num_classes: None,
        }
    }
}

/// `[model]` of a run config: which network, with its settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ModelConfig {
    Unet(UNetConfig),
    Mlp(MlpConfig),
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self::Unet(UNetConfig::default())
    }
}

impl ModelConfig {
    pub fn validate(&self) -> Result<()> {
        match self {
            Self::Unet(c) => c.validate(),
            Self::Mlp(c) => {
                if c.dim == 0 || c.hidden == 0 || c.layers == 0 || c.time_embed_dim < 4 {
                    return Err(NetError::Config {
                        field: "hidden",
                        reason: "dim, hidden and layers must be positive, time_embed_dim >= 4"
                            .into(),
                    });
                }
                Ok(())
            }
        }
    }

    pub fn num_classes(&self) -> Option<usize> {
        match self {
            Self::Unet(c) => c.num_classes,
            Self::Mlp(c) => c.num_classes,
        }
    }
}
