//! Sampling quality on the 2-D swiss roll (the Sohl-Dickstein figure): a small MLP trained for
//! a few thousand steps, sampled with every sampler at its usual step counts, lands close to
//! the data in sliced 2-Wasserstein distance, compared with the distance between two
//! independent draws of the data. The numbers are printed for BENCHMARKS.md.

use ddpm_data::{DataConfig, Dataset};
use ddpm_eval::distance2d::sliced_wasserstein;
use ddpm_io::npy;
use ddpm_run::{RunDir, load_model};
use ddpm_sample::job::{self, JobOptions, Labels, Manifest};
use ddpm_sample::{SamplerKind, SamplerOptions};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

#[test]
fn every_sampler_lands_on_the_swiss_roll() {
    let runs = ddpm_testkit::temp_dir("swissroll");
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../configs/swissroll.toml");
    let mut c = ddpm_train::RunConfig::load(&path).unwrap();
    c.train.sample_every = 0;
    ddpm_train::Trainer::new(c, &runs, tch::Device::Cpu)
        .unwrap()
        .train(&AtomicBool::new(false), &mut ddpm_train::LogProgress)
        .unwrap();
    let model =
        load_model(&RunDir::resolve("swissroll", &runs).unwrap(), tch::Device::Cpu, true).unwrap();
    let n = 2000;
    let Dataset::Points(data) = ddpm_data::load(&DataConfig {
        dataset: "swissroll".into(),
        num_points: 2 * n,
        seed: 99,
        ..Default::default()
    })
    .unwrap()
    .0
    else {
        unreachable!()
    };
    let pts: Vec<[f32; 2]> = data.points.chunks(2).map(|c| [c[0], c[1]]).collect();
    let baseline = sliced_wasserstein(&pts[..n], &pts[n..], 200, 0);
    eprintln!("swiss roll, sliced W2 between two independent data draws of {n}: {baseline:.4}");
    let t = model.diffusion.steps;
    let mut worst: f64 = 0.0;
    for (kind, steps) in [
        (SamplerKind::Ddpm, t),
        (SamplerKind::Ddpm, 20),
        (SamplerKind::Ddim, 20),
        (SamplerKind::Ddim, 50),
        (SamplerKind::DpmSolverPp, 10),
        (SamplerKind::DpmSolverPp, 20),
        (SamplerKind::Heun, 10),
    ] {
        let mut opts = SamplerOptions::new(kind, t);
        opts.steps = steps;
        opts.clip_x0 = false;
        let manifest = Manifest {
            checkpoint: "swissroll".into(),
            checkpoint_step: model.step,
            ema: true,
            sampler: opts,
            seed: 0,
            start: 0,
            n,
            batch_size: n,
            labels: Labels::None,
            noise_file: None,
            sample_shape: vec![2],
            bf16: false,
        };
        let out = runs.join(format!("s-{kind:?}-{steps}"));
        let npz = job::run(
            &model,
            &manifest,
            &JobOptions { out, pngs: false, graph: None },
            None,
            &mut |_| {},
        )
        .unwrap();
        let (_, v) = npy::read_array(&npz, "samples").unwrap();
        let samples: Vec<[f32; 2]> = v.chunks(2).map(|c| [c[0], c[1]]).collect();
        let sw = sliced_wasserstein(&samples, &pts[..n], 200, 0);
        eprintln!(
            "  {kind:?} {steps:>4} steps: sliced W2 to the data {sw:.4} ({:.1}x the data-vs-data distance)",
            sw / baseline
        );
        assert!(sw < 3.0 * baseline + 0.01, "{kind:?} {steps}: {sw} vs baseline {baseline}");
        worst = worst.max(sw);
    }
    // The distance discriminates: a Gaussian blob with the data's mean and spread is far away.
    let mut rng = ddpm_core::rng::SplitMix64::new(3);
    let (mx, my) = (
        pts.iter().map(|p| p[0] as f64).sum::<f64>() / pts.len() as f64,
        pts.iter().map(|p| p[1] as f64).sum::<f64>() / pts.len() as f64,
    );
    let sd =
        (pts.iter().map(|p| (p[0] as f64 - mx).powi(2) + (p[1] as f64 - my).powi(2)).sum::<f64>()
            / (2 * pts.len()) as f64)
            .sqrt();
    let blob: Vec<[f32; 2]> = (0..n)
        .map(|_| [(mx + sd * rng.next_normal()) as f32, (my + sd * rng.next_normal()) as f32])
        .collect();
    let blob_sw = sliced_wasserstein(&blob, &pts[..n], 200, 0);
    eprintln!("  a Gaussian blob of the data's mean and spread: {blob_sw:.4}");
    assert!(blob_sw > 2.0 * worst, "blob {blob_sw} vs worst sampler {worst}");
}
