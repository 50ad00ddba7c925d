//! Negative log-likelihood bounds in bits/dim: the full variational bound of Ho et al. 2020
//! (eq. 5; Table 1's NLL column) over a data set, batched, with every term reported:
//! L_0 (the discretized decoder), L_1 .. L_{T-1} (Gaussian KLs), and the prior L_T.
//! The bound assumes 8-bit data scaled to [-1, 1]; x0 predictions are clipped, as the
//! reference evaluation does.

use ddpm_core::tensor::TensorDiffusion;
use ddpm_run::LoadedModel;
use ddpm_sample::noise::ImageNoise;
use serde::Serialize;
use tch::{Kind, Tensor};

#[derive(Debug, Clone, Serialize)]
pub struct NllResult {
    /// Mean total bound, bits/dim.
    pub bpd: f64,
    /// Standard error of that mean over the images: their sample standard deviation over
    /// sqrt(n) (0 for one image).
    pub bpd_sem: f64,
    /// Mean prior term L_T.
    pub prior_bpd: f64,
    /// Mean L_t for t = 0 .. T-1.
    pub terms_bpd: Vec<f64>,
    pub n: usize,
}

impl NllResult {
    /// The one line a person reads: the total and its parts.
    pub fn summary(&self, n: usize) -> String {
        let t = self.terms_bpd.len();
        format!(
            "NLL <= {:.4} +- {:.4} (standard error) bits/dim over {n} images (prior L_T {:.2e}, decoder L_0 {:.4}, L_1..L_{} sum {:.4})",
            self.bpd,
            self.bpd_sem,
            self.prior_bpd,
            self.terms_bpd[0],
            t - 1,
            self.terms_bpd[1..].iter().sum::<f64>()
        )
    }
}

/// The bound over `data` ([N, C, H, W] in [-1, 1]), `batch` images at a time; the noise of
/// image i comes from its own stream under `seed`. `progress(images_done)` after each batch.
pub fn nll(
    model: &LoadedModel,
    data: &Tensor,
    batch: usize,
    seed: u64,
    progress: &mut dyn FnMut(usize),
) -> crate::Result<NllResult> {
    let device = model.vs.device();
    let process = TensorDiffusion::from_config(&model.diffusion, device)?;
    let n = data.size()[0] as usize;
    let shape = model.net.sample_shape();
    let t = process.num_timesteps();
    let (mut total, mut total_sq, mut prior) = (0.0, 0.0, 0.0);
    let mut terms = vec![0.0; t];
    let mut done = 0;
    for start in (0..n).step_by(batch.max(1)) {
        let b = batch.min(n - start);
        let x0 = data.narrow(0, start as i64, b as i64).to_device(device).to_kind(Kind::Float);
        let indices: Vec<u64> = (start as u64..(start + b) as u64).collect();
        let mut noise = ImageNoise::new(seed, &indices, &shape, device);
        let net = &model.net;
        let mut f =
            |x: &Tensor, tm: &Tensor| net.forward_t(x, tm, None, false).to_kind(Kind::Float);
        let out = process.calc_bpd_loop(&mut f, &x0, &mut |_| noise.draw(), true);
        total += out.total.sum(Kind::Double).double_value(&[]);
        total_sq += out.total.to_kind(Kind::Double).square().sum(Kind::Double).double_value(&[]);
        prior += out.prior.sum(Kind::Double).double_value(&[]);
        let per_t = Vec::<f64>::try_from(
            out.vb
                .sum_dim_intlist([0i64].as_slice(), false, Kind::Double)
                .to_device(tch::Device::Cpu),
        )
        .unwrap();
        for (acc, v) in terms.iter_mut().zip(per_t) {
            *acc += v;
        }
        done += b;
        progress(done);
    }
    let nf = n as f64;
    let mean = total / nf;
    // Sample variance over images, from the two sums (f64; bits/dim are O(1)).
    let var = if n > 1 { ((total_sq - nf * mean * mean) / (nf - 1.0)).max(0.0) } else { 0.0 };
    Ok(NllResult {
        bpd: mean,
        bpd_sem: (var / nf).sqrt(),
        prior_bpd: prior / nf,
        terms_bpd: terms.into_iter().map(|v| v / nf).collect(),
        n,
    })
}
