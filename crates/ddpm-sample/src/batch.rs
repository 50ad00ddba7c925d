//! Sampling a batch of images given their global indices: the core that sampling jobs, the
//! trainer's previews and its evaluations share. Image i's noise and (random) class come from
//! (seed, i) alone, so the same images come out whatever the batching, sharding or caller.

use crate::error::Result;
use crate::graph::{GraphMode, GraphedModel};
use crate::guidance::GuidedModel;
use crate::noise::ImageNoise;
use crate::request::Labels;
use crate::samplers::{self, SamplerOptions};
use ddpm_core::tensor::TensorDiffusion;
use ddpm_nets::Denoiser;
use ddpm_nets::placement::debug_check_placement;
use tch::{Device, Kind, Tensor};

/// A network, its diffusion and a sampler, ready to draw batches.
pub struct BatchSampler<'a> {
    net: &'a Denoiser,
    diffusion: &'a TensorDiffusion,
    pub options: SamplerOptions,
    pub seed: u64,
    pub labels: Labels,
    guided: GuidedModel<'a>,
    graph: Option<GraphedModel<'a>>,
}

impl std::fmt::Debug for BatchSampler<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchSampler").field("options", &self.options).finish()
    }
}

impl<'a> BatchSampler<'a> {
    /// `graph`: replay the network call from captured graphs ([`GraphMode`]).
    pub fn new(
        net: &'a Denoiser,
        diffusion: &'a TensorDiffusion,
        options: SamplerOptions,
        seed: u64,
        labels: Labels,
        bf16: bool,
        graph: Option<GraphMode>,
    ) -> Result<Self> {
        options.validate(diffusion.num_timesteps())?;
        debug_check_placement(diffusion, "sampler schedule", diffusion.device);
        let guided = GuidedModel::new(net, options.guidance_scale, bf16);
        // One network call for the whole job: per batch only its inputs change.
        let graph = match graph {
            Some(mode) => {
                Some(GraphedModel::new(mode, Box::new(move |x, t, y| guided.output(x, t, y)))?)
            }
            None => None,
        };
        Ok(Self { net, diffusion, options, seed, labels, guided, graph })
    }

    pub fn device(&self) -> Device {
        self.diffusion.device
    }

    /// The class labels of images `indices` (None for unconditional models or no labels).
    pub fn labels_for(&self, indices: &[u64]) -> Option<Tensor> {
        let device = self.device();
        let k = self.net.num_classes()?;
        let ys = self.labels.classes(self.seed, indices, k)?;
        Some(Tensor::from_slice(&ys).to_device(device))
    }

    /// x_0 of images `indices` in [-1, 1] on the device, from their own noise (or from the
    /// given x_T).
    pub fn sample(&mut self, indices: &[u64], x_t: Option<Tensor>) -> Result<Tensor> {
        let device = self.device();
        let shape = self.net.sample_shape();
        let mut noise = ImageNoise::new(self.seed, indices, &shape, device);
        debug_check_placement(&noise, "sampler noise", device);
        // The first draw is x_T even when x_T is given, so later draws stay the same.
        let first_draw = noise.draw();
        let x_t = x_t.map(|x| x.to_device(device)).unwrap_or(first_draw);
        let labels = self.labels_for(indices);
        let (guided, graph) = (&self.guided, &mut self.graph);
        let mut net = |x: &Tensor, t: &Tensor| match graph.as_mut() {
            Some(g) => g.call(x, t, labels.as_ref()).expect("graph replay"),
            None => guided.output(x, t, labels.as_ref()),
        };
        let x0 = samplers::sample(
            &self.options,
            self.diffusion,
            &mut net,
            x_t,
            &mut noise,
            &mut |_| {},
        )?;
        if let Some(g) = &self.graph {
            debug_check_placement(g, "graph inputs", device);
        }
        Ok(x0.clamp(-1.0, 1.0))
    }

    /// `n` images (indices 0..n) in batches of `batch`, gathered on the CPU as f32;
    /// `progress(done)` after each batch.
    pub fn sample_n(
        &mut self,
        n: usize,
        batch: usize,
        progress: &mut dyn FnMut(usize),
    ) -> Result<Tensor> {
        self.sample_range(0..n, batch, progress)
    }

    /// Images `range` (e.g. this rank's [`ddpm_dist::Dist::shard`] of n) in batches of
    /// `batch`, gathered on the CPU as f32; `progress(done)` counts this range's images.
    pub fn sample_range(
        &mut self,
        range: std::ops::Range<usize>,
        batch: usize,
        progress: &mut dyn FnMut(usize),
    ) -> Result<Tensor> {
        let mut parts = Vec::new();
        let shape = self.net.sample_shape();
        for first in range.clone().step_by(batch.max(1)) {
            let count = batch.max(1).min(range.end - first);
            let indices: Vec<u64> = (first as u64..(first + count) as u64).collect();
            parts.push(self.sample(&indices, None)?.to_device(Device::Cpu).to_kind(Kind::Float));
            progress(first + count - range.start);
        }
        if parts.is_empty() {
            let mut empty = vec![0i64];
            empty.extend(&shape);
            return Ok(Tensor::zeros(empty.as_slice(), (Kind::Float, Device::Cpu)));
        }
        Ok(Tensor::cat(&parts, 0))
    }
}
