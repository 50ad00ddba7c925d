//! Criterion benchmarks of the training hot path on the CPU: one training step of a small UNet
//! through the trainer's own [`TrainStep`] (the same shapes as `scripts/bench_reference.py`'s
//! train_small, timed side by side by `cargo xtask bench`), and the optimiser step alone,
//! per-tensor against fused.

use criterion::{Criterion, criterion_group, criterion_main};
use ddpm_nets::{Denoiser, ModelConfig, UNetConfig};
use ddpm_train::optim::Adam;
use ddpm_train::{RunConfig, StepInput, TrainStep};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

fn small() -> ModelConfig {
    ModelConfig::Unet(UNetConfig {
        ch: 64,
        ch_mult: vec![1, 2, 2],
        attention_resolutions: vec![16],
        ..UNetConfig::default()
    })
}

/// The trainer's step (`TrainStep::run`), on a batch already on the device.
fn train_step(c: &mut Criterion) {
    tch::set_num_threads(2);
    let mut config = RunConfig { model: small(), ..RunConfig::default() };
    config.optim.fused = true;
    let mut step = TrainStep::new(&config, Device::Cpu).unwrap();
    let x0 = Tensor::randn([32, 3, 32, 32], (Kind::Float, Device::Cpu));
    let t = Tensor::randint(1000, [32], (Kind::Int64, Device::Cpu));
    let mut g = c.benchmark_group("train");
    g.sample_size(10);
    let mut n = 0;
    g.bench_function("small_unet_batch32_2threads", |b| {
        b.iter(|| {
            let input = StepInput { x0: &x0, t: &t, weights: None, y: None };
            let _ = step.run(&input, n, 2e-4);
            n += 1;
        })
    });
    g.finish();
}

fn optimiser_step(c: &mut Criterion) {
    tch::set_num_threads(2);
    let mut g = c.benchmark_group("optimiser");
    for fused in [false, true] {
        let vs = VarStore::new(Device::Cpu);
        let net = Denoiser::new(&vs.root(), &ModelConfig::Unet(UNetConfig::ddpm_cifar10()), false)
            .unwrap();
        let mut adam = Adam::new(&vs, (0.9, 0.999), 1e-8, 0.0, fused);
        let x = Tensor::randn([1, 3, 32, 32], (Kind::Float, Device::Cpu));
        net.forward_t(&x, &Tensor::zeros([1], (Kind::Float, Device::Cpu)), None, true)
            .sum(Kind::Float)
            .backward();
        let name = if fused { "cifar10_adam_clip_fused" } else { "cifar10_adam_clip_per_tensor" };
        g.bench_function(name, |b| {
            b.iter(|| {
                let _ = adam.clip_grad_norm(1.0);
                adam.step(1e-12);
            })
        });
    }
    g.finish();
}

criterion_group!(benches, train_step, optimiser_step);
criterion_main!(benches);
