//! The network call samplers make, with classifier-free guidance (Ho & Salimans 2022,
//! arXiv:2207.12598): eps~ = eps(x, null) + w (eps(x, y) - eps(x, null)), one batched call for
//! both branches. Variance channels (learned variances) come from the conditional branch.

use crate::error::{Result, SampleError};
use ddpm_nets::Denoiser;
use tch::{Device, Kind, Tensor};

/// Calls the network with class labels and guidance, optionally under bf16 autocast on CUDA.
#[derive(Debug)]
pub struct GuidedModel<'a> {
    pub net: &'a Denoiser,
    /// Class labels of the batch being sampled (conditional models).
    pub labels: Option<Tensor>,
    pub scale: f64,
    pub bf16: bool,
    pub device: Device,
    /// Channels of the data (the rest of the output are variance channels).
    pub channels: i64,
}

impl<'a> GuidedModel<'a> {
    /// Checks that guidance and labels fit the network.
    pub fn new(
        net: &'a Denoiser,
        labels: Option<Tensor>,
        scale: f64,
        bf16: bool,
        device: Device,
    ) -> Result<Self> {
        match (net.num_classes(), &labels) {
            (None, Some(_)) => {
                return Err(SampleError::Arg(
                    "--class given but the model is unconditional".into(),
                ));
            }
            (None, None) if scale != 1.0 => {
                return Err(SampleError::Arg(format!(
                    "--guidance {scale} needs a class-conditional model; this one is unconditional"
                )));
            }
            _ => {}
        }
        let channels = net.sample_shape()[0];
        Ok(Self { net, labels, scale, bf16, device, channels })
    }

    /// The raw (guided) network output for x at times t (float, original process).
    pub fn output(&self, x: &Tensor, t: &Tensor) -> Tensor {
        let _autocast = (self.bf16 && self.device.is_cuda()).then(|| {
            ddpm_shim::AutocastGuard::new(self.device, Kind::BFloat16).expect("bf16 autocast")
        });
        let y = self.labels.as_ref();
        if self.scale == 1.0 || y.is_none() {
            return self.net.forward_t(x, t, y, false).to_kind(Kind::Float);
        }
        let y = y.unwrap();
        let null = Tensor::full_like(y, self.net.num_classes().unwrap() as i64);
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
