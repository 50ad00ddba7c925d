//! A model trained with improved-diffusion's `rescale_timesteps` sees t * 1000 / T in training;
//! every sampler must give it the same scale. Regression: DDIM, DPM-Solver++ and Heun passed
//! the raw step (up to 3999 for T = 4000) while training and the DDPM sampler passed the
//! rescaled one (below 1000).

use ddpm_core::tensor::TensorDiffusion;
use ddpm_core::{DiffusionConfig, ScheduleName};
use ddpm_sample::noise::ImageNoise;
use ddpm_sample::samplers::{self, SamplerKind, SamplerOptions};
use tch::{Device, Kind, Tensor};

/// The time values each network call received, for T = 4000 (cosine, rescaled).
fn times_seen(kind: SamplerKind, steps: usize) -> (Vec<f64>, TensorDiffusion) {
    let config = DiffusionConfig {
        steps: 4000,
        schedule: ScheduleName::Cosine,
        rescale_timesteps: true,
        ..DiffusionConfig::default()
    };
    let process = TensorDiffusion::from_config(&config, Device::Cpu).unwrap();
    let mut opts = SamplerOptions::new(kind, 4000);
    opts.steps = steps;
    let mut seen = Vec::new();
    let mut model = |x: &Tensor, t: &Tensor| {
        assert_eq!(t.size(), vec![x.size()[0]]);
        seen.push(t.double_value(&[0]));
        x.zeros_like()
    };
    let mut noise = ImageNoise::new(0, &[0, 1], &[2], Device::Cpu);
    let x_t = noise.draw();
    let _ = samplers::sample(&opts, &process, &mut model, x_t, &mut noise, &mut |_| {}).unwrap();
    (seen, process)
}

#[test]
fn every_sampler_feeds_the_network_the_training_time_scale() {
    for (kind, steps) in [
        (SamplerKind::Ddpm, 10),
        (SamplerKind::Ddim, 10),
        (SamplerKind::DpmSolverPp, 10),
        (SamplerKind::Heun, 5),
    ] {
        let (seen, process) = times_seen(kind, steps);
        let evaluations =
            SamplerOptions { steps, ..SamplerOptions::new(kind, 4000) }.network_evaluations();
        assert_eq!(seen.len(), evaluations, "{kind:?}");
        // Training's inputs: model_timesteps of every step, all below 1000.
        let train_max = process
            .model_timesteps(&Tensor::from_slice(&[3999i64]))
            .to_kind(Kind::Double)
            .double_value(&[0]);
        assert!((train_max - 3999.0 * 0.25).abs() < 1e-3, "training sees {train_max}");
        for &t in &seen {
            assert!((0.0..1000.0).contains(&t), "{kind:?} gave the network t = {t}");
        }
        // The first call is at the noisiest step the sampler uses, which is near T for all.
        assert!(seen[0] > 700.0, "{kind:?} starts at t = {}", seen[0]);
    }
    // DDIM's uniform skip from T = 4000 in 10 steps: 3600, 3200, ..., 0, fed as 900, 800, ...
    let (seen, _) = times_seen(SamplerKind::Ddim, 10);
    let want: Vec<f64> = (0..10).rev().map(|i| i as f64 * 400.0 * 0.25).collect();
    assert_eq!(seen, want);
}
