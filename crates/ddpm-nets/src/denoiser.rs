//! One type for "the network": the UNet for images or the MLP for points.

use crate::config::ModelConfig;
use crate::error::Result;
use crate::mlp::Mlp;
use crate::unet::UNet;
use tch::{Tensor, nn};

// One network per process: the size difference between variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Denoiser {
    UNet(UNet),
    Mlp(Mlp),
}

impl Denoiser {
    /// Builds the configured network under `vs`; a learned variance doubles the outputs.
    pub fn new(vs: &nn::Path, config: &ModelConfig, learned_variance: bool) -> Result<Self> {
        config.validate()?;
        Ok(match config {
            ModelConfig::Unet(c) => {
                Self::UNet(UNet::new(vs, c, c.resolved_out_channels(learned_variance))?)
            }
            ModelConfig::Mlp(c) => {
                let out = c.out_dim.unwrap_or(c.dim * if learned_variance { 2 } else { 1 });
                Self::Mlp(Mlp::new(vs, c, out))
            }
        })
    }

    /// The network output for a batch (see [`UNet::forward_t`] for the conventions).
    pub fn forward_t(&self, x_t: &Tensor, t: &Tensor, y: Option<&Tensor>, train: bool) -> Tensor {
        match self {
            Self::UNet(m) => m.forward_t(x_t, t, y, train),
            Self::Mlp(m) => m.forward_t(x_t, t, y, train),
        }
    }

    /// Shape of one data sample: [C, H, W] or [dim].
    pub fn sample_shape(&self) -> Vec<i64> {
        match self {
            Self::UNet(m) => {
                let s = m.config.image_size as i64;
                vec![m.config.in_channels as i64, s, s]
            }
            Self::Mlp(m) => vec![m.config.dim as i64],
        }
    }

    pub fn num_classes(&self) -> Option<usize> {
        match self {
            Self::UNet(m) => m.config.num_classes,
            Self::Mlp(m) => m.config.num_classes,
        }
    }
}
