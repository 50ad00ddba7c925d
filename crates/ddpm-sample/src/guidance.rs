//! The network call samplers make, with classifier-free guidance (Ho & Salimans 2022,
//! arXiv:2207.12598) in diffusers' convention: eps~ = eps(x, null) + w (eps(x, y) - eps(x, null)),
//! so w = 1 is unguided (Ho & Salimans write the same as (1 + w') eps(x, y) - w' eps(x, null)
//! with w' = w - 1). One batched call for both branches; variance channels (learned variances)
//! come from the conditional branch.

use ddpm_nets::Denoiser;
use tch::{Kind, Tensor};

/// The network as samplers call it: labels, guidance scale, and bf16 autocast on CUDA.
#[derive(Debug, Clone, Copy)]
pub struct GuidedModel<'a> {
    pub net: &'a Denoiser,
    /// Guidance scale w (diffusers' `guidance_scale`); 1 = none.
    pub scale: f64,
    /// bf16 autocast for the network on CUDA.
    pub bf16: bool,
    /// Channels of the data (the rest of the output are variance channels).
    pub channels: i64,
}

impl<'a> GuidedModel<'a> {
    pub fn new(net: &'a Denoiser, scale: f64, bf16: bool) -> Self {
        Self { net, scale, bf16, channels: net.sample_shape()[0] }
    }

    /// The raw (guided) network output for x at times t (float, original process) with class
    /// labels y (conditional models; None: the null class, unguided).
    pub fn output(&self, x: &Tensor, t: &Tensor, y: Option<&Tensor>) -> Tensor {
        let _autocast = (self.bf16 && x.device().is_cuda()).then(|| {
            ddpm_shim::AutocastGuard::new(x.device(), Kind::BFloat16).expect("bf16 autocast")
        });
        let (Some(y), Some(null_class)) = (y, self.net.num_classes()) else {
            return self.net.forward_t(x, t, y, false).to_kind(Kind::Float);
        };
        if self.scale == 1.0 {
            return self.net.forward_t(x, t, Some(y), false).to_kind(Kind::Float);
        }
        let null = Tensor::full_like(y, null_class as i64);
        let out = self
            .net
            .forward_t(
                &Tensor::cat(&[x, x], 0),
                &Tensor::cat(&[t, t], 0),
                Some(&Tensor::cat(&[y, &null], 0)),
                false,
            )
            .to_kind(Kind::Float);
        let mut parts = out.chunk(2, 0).into_iter();
        let (cond, uncond) = (parts.next().unwrap(), parts.next().unwrap());
        let c = self.channels;
        let guided =
            uncond.narrow(1, 0, c) + (cond.narrow(1, 0, c) - uncond.narrow(1, 0, c)) * self.scale;
        if out.size()[1] > c {
            Tensor::cat(&[guided, cond.narrow(1, c, out.size()[1] - c)], 1)
        } else {
            guided
        }
    }
}
