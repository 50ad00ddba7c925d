//! Criterion benchmark of sampling on the CPU: DDIM steps of a small UNet (network forward and
//! update), and the per-image noise generator.

use criterion::{Criterion, criterion_group, criterion_main};
use ddpm_core::DiffusionConfig;
use ddpm_core::tensor::TensorDiffusion;
use ddpm_nets::{Denoiser, ModelConfig, UNetConfig};
use ddpm_sample::noise::ImageNoise;
use ddpm_sample::samplers::{self, SamplerKind, SamplerOptions};
use tch::nn::VarStore;
use tch::{Device, Tensor};

fn sampler_step(c: &mut Criterion) {
    tch::set_num_threads(2);
    let vs = VarStore::new(Device::Cpu);
    let cfg = ModelConfig::Unet(UNetConfig {
        ch: 64,
        ch_mult: vec![1, 2, 2],
        attention_resolutions: vec![16],
        ..UNetConfig::default()
    });
    let net = Denoiser::new(&vs.root(), &cfg, false).unwrap();
    let process = TensorDiffusion::from_config(&DiffusionConfig::default(), Device::Cpu).unwrap();
    let mut opts = SamplerOptions::new(SamplerKind::Ddim, 1000);
    opts.steps = 5;
    let indices: Vec<u64> = (0..16).collect();
    let mut g = c.benchmark_group("sample");
    g.sample_size(10);
    g.bench_function("ddim_5_steps_small_unet_batch16", |b| {
        b.iter(|| {
            let mut noise = ImageNoise::new(0, &indices, &[3, 32, 32], Device::Cpu);
            let x = noise.draw();
            let mut f = |x: &Tensor, t: &Tensor| net.forward_t(x, t, None, false);
            samplers::sample(&opts, &process, &mut f, x, &mut noise, &mut |_| {}).unwrap()
        })
    });
    g.bench_function("image_noise_64x3x32x32", |b| {
        let idx: Vec<u64> = (0..64).collect();
        let mut noise = ImageNoise::new(0, &idx, &[3, 32, 32], Device::Cpu);
        b.iter(|| noise.draw())
    });
    g.finish();
}

criterion_group!(benches, sampler_step);
criterion_main!(benches);
