//! The rule every captured graph lives by — each input is a static buffer that every call copies
//! into, and the captured function reads nothing else that changes — checked on the CPU through
//! the code path `--cuda-graph` uses ([`GraphMode::Emulated`] captures the function at first use
//! and replays it on the buffers, as a CUDA graph replays its kernels).
//!
//! Regression: the captured call used to keep the class labels of the first batch (a closure
//! over one batch's `GuidedModel`), so later batches of a conditional job read the first
//! batch's labels — on a GPU, freed memory.

use ddpm_core::DiffusionConfig;
use ddpm_core::tensor::TensorDiffusion;
use ddpm_io::npy;
use ddpm_nets::placement::misplaced;
use ddpm_nets::{Denoiser, ModelConfig, UNetConfig};
use ddpm_run::LoadedModel;
use ddpm_sample::graph::{GraphMode, GraphedModel};
use ddpm_sample::guidance::GuidedModel;
use ddpm_sample::job::{self, JobOptions, Labels, Manifest};
use ddpm_sample::{SamplerKind, SamplerOptions};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

/// A class-conditional 8x8 UNet with random weights (no training needed to test plumbing).
fn conditional_model() -> LoadedModel {
    let model = ModelConfig::Unet(UNetConfig {
        image_size: 8,
        in_channels: 1,
        ch: 16,
        ch_mult: vec![1, 2],
        attention_resolutions: vec![4],
        num_groups: 8,
        dropout: 0.0,
        num_classes: Some(10),
        ..UNetConfig::default()
    });
    let diffusion = DiffusionConfig { steps: 100, ..DiffusionConfig::default() };
    let _rng = ddpm_nets::torch_rng_lock();
    tch::manual_seed(11);
    let vs = VarStore::new(Device::Cpu);
    let net = Denoiser::new(&vs.root(), &model, false).unwrap();
    // The zero-initialised output convolution would make every output 0: give it weights.
    tch::no_grad(|| {
        for (_, mut v) in vs.variables() {
            let _ = v.normal_(0.0, 0.05);
        }
    });
    LoadedModel { net, vs, model, diffusion, step: 0, ema: true, checkpoint: "random".into() }
}

fn manifest(model: &LoadedModel, labels: Labels) -> Manifest {
    let mut sampler = SamplerOptions::new(SamplerKind::Ddim, 100);
    sampler.steps = 4;
    sampler.guidance_scale = 2.0;
    Manifest {
        checkpoint: "random".into(),
        checkpoint_step: 0,
        ema: true,
        sampler,
        seed: 5,
        start: 0,
        n: 6,
        batch_size: 2,
        labels,
        noise_file: None,
        sample_shape: model.net.sample_shape(),
        bf16: false,
    }
}

fn samples(model: &LoadedModel, m: &Manifest, graph: Option<GraphMode>, dir: &str) -> Vec<f32> {
    let out = ddpm_testkit::temp_dir(dir);
    let opts = JobOptions { out: out.clone(), pngs: false, graph };
    let npz = job::run(model, m, &opts, None, &mut |_| {}).unwrap();
    npy::read_array(&npz, "samples").unwrap().1
}

#[test]
fn new_labels_and_noise_of_every_batch_reach_the_captured_network() {
    let model = conditional_model();
    // Three batches of two images, each image with its own random class and noise.
    let m = manifest(&model, Labels::Random);
    let eager = samples(&model, &m, None, "graph-eager");
    let replayed = samples(&model, &m, Some(GraphMode::Emulated), "graph-emulated");
    assert_eq!(eager, replayed, "the replayed network saw other inputs than the eager one");
    // The labels matter: the same job with one class for every image gives other images.
    let one_class = samples(&model, &manifest(&model, Labels::Class(3)), None, "graph-class3");
    assert_ne!(eager, one_class);
}

#[test]
fn the_replay_runs_the_function_captured_first_on_the_static_buffers() {
    let model = conditional_model();
    let guided = GuidedModel::new(&model.net, 2.0, false);
    let x1 = Tensor::randn([2, 1, 8, 8], (Kind::Float, Device::Cpu));
    let x2 = Tensor::randn([2, 1, 8, 8], (Kind::Float, Device::Cpu));
    let t = Tensor::from_slice(&[50.0f32, 50.0]);
    let (y1, y2) = (Tensor::from_slice(&[1i64, 2]), Tensor::from_slice(&[7i64, 8]));

    let mut graph =
        GraphedModel::new(GraphMode::Emulated, Box::new(|x, t, y| guided.output(x, t, y))).unwrap();
    for (x, y) in [(&x1, &y1), (&x2, &y2), (&x1, &y2)] {
        let got = graph.call(x, &t, Some(y)).unwrap();
        assert!(got.equal(&guided.output(x, &t, Some(y))), "replay differs from the eager call");
    }
    // Every static buffer sits on the job's device.
    assert_eq!(ddpm_nets::placement::Placed::placed_tensors(&graph).len(), 4);
    assert!(misplaced(&graph, Device::Cpu, None).is_empty());

    // The bug class this guards against: a captured function that closes over one batch's
    // labels ignores the labels of later calls, and the replay shows it.
    let mut stale =
        GraphedModel::new(GraphMode::Emulated, Box::new(|x, t, _y| guided.output(x, t, Some(&y1))))
            .unwrap();
    let _ = stale.call(&x1, &t, Some(&y1)).unwrap();
    let wrong = stale.call(&x2, &t, Some(&y2)).unwrap();
    assert!(!wrong.equal(&guided.output(&x2, &t, Some(&y2))));
}

#[test]
fn sampler_state_is_made_on_the_device_it_serves() {
    let model = conditional_model();
    let process = TensorDiffusion::from_config(&model.diffusion, Device::Cpu).unwrap();
    assert_eq!(misplaced(&process, Device::Cpu, None).len(), 0);
    assert_eq!(misplaced(&process, Device::Cuda(0), None).len(), 16, "every schedule array");
    let noise = ddpm_sample::noise::ImageNoise::new(0, &[0, 1], &[1, 8, 8], Device::Cpu);
    assert!(misplaced(&noise, Device::Cpu, Some(Kind::Int64)).is_empty());
}
