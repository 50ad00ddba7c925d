//! Evaluation during training (`train.eval_every`): the run's metric on the EMA weights at every
//! interval and at the end, logged to `eval.jsonl` (read back by the report and TensorBoard),
//! with the best checkpoint by that metric kept as `checkpoints/best.safetensors`; and the
//! run's TensorBoard events and report written along the way.

mod common;

use common::tiny_config;
use ddpm_run::{Checkpoint, RunDir};
use ddpm_train::eval_log::read_evals;
use ddpm_train::{LogProgress, Outcome, Trainer};
use std::sync::atomic::AtomicBool;
use tch::Device;

#[test]
fn digits_runs_are_measured_during_training_and_keep_their_best_checkpoint() {
    let runs = ddpm_testkit::temp_dir("eval-digits");
    let mut c = tiny_config();
    c.train.total_steps = 12;
    c.train.eval_every = 5;
    c.train.eval_samples = 40;
    c.train.eval_steps = 5;
    c.train.sample_every = 6;
    let mut t = Trainer::new(c, &runs, Device::Cpu).unwrap();
    let out = t.train(&AtomicBool::new(false), &mut LogProgress).unwrap();
    assert_eq!(out, Outcome::Finished { step: 12 });
    let run = RunDir::new(runs.join("tiny"));
    let lines = read_evals(&run.eval_log_path()).unwrap();
    // Steps 5 and 10, and the end.
    assert_eq!(lines.iter().map(|l| l.step).collect::<Vec<_>>(), vec![5, 10, 12]);
    for l in &lines {
        assert_eq!(l.metric, "digits_fd");
        assert_eq!(l.samples, Some(40));
        assert_eq!(l.sampler.as_deref(), Some("dpm-solver++"));
        assert!(l.value.is_finite() && l.value > 0.0, "{l:?}");
        // The data-vs-data distance at the same size is the baseline, far below a 12-step model.
        let base = l.baseline.unwrap();
        assert!(base > 0.0 && base < l.value, "{l:?}");
    }
    assert_eq!(t.evaluations(), &lines[..]);
    // The best checkpoint holds the state of the step with the lowest distance.
    let best = lines.iter().min_by(|a, b| a.value.total_cmp(&b.value)).unwrap();
    let file = Checkpoint::open(&run.best_checkpoint_path()).unwrap();
    assert_eq!(file.step(), best.step);
    // It is not mistaken for a resume point.
    assert!(run.list_checkpoints().iter().all(|(_, p)| !p.ends_with("best.safetensors")));
    // TensorBoard events and the report were written along the way.
    let events: Vec<_> = std::fs::read_dir(run.tensorboard_dir()).unwrap().flatten().collect();
    assert_eq!(events.len(), 1);
    let report = std::fs::read_to_string(run.report_path()).unwrap();
    assert!(report.contains("digits_fd"), "the report shows the metric");
}

#[test]
fn two_d_runs_are_measured_with_the_sliced_wasserstein_distance() {
    let runs = ddpm_testkit::temp_dir("eval-2d");
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/swissroll.toml");
    let mut c = ddpm_train::RunConfig::load(&path).unwrap();
    c.train.total_steps = 20;
    c.train.eval_every = 20;
    c.train.eval_samples = 300;
    c.train.sample_every = 0;
    let mut t = Trainer::new(c, &runs, Device::Cpu).unwrap();
    t.train(&AtomicBool::new(false), &mut LogProgress).unwrap();
    let lines = t.evaluations();
    assert_eq!(lines.len(), 1);
    assert_eq!((lines[0].metric.as_str(), lines[0].step), ("sliced_w2", 20));
    assert!(lines[0].baseline.unwrap() < lines[0].value);
}

#[test]
fn fid_during_training_without_inception_weights_is_refused_at_the_start() {
    let runs = ddpm_testkit::temp_dir("eval-fid");
    let dir = ddpm_testkit::temp_dir("eval-fid-images");
    for i in 0..4u8 {
        image::GrayImage::from_pixel(8, 8, image::Luma([i * 60]))
            .save(dir.join(format!("{i}.png")))
            .unwrap();
    }
    let mut c = tiny_config();
    c.data = ddpm_data::config_from_arg(dir.to_str().unwrap());
    c.data.image_size = Some(8);
    c.data.channels = Some(1);
    c.train.eval_every = 5;
    c.train.eval_inception = Some("/no/such/inception.safetensors".into());
    let e = Trainer::new(c, &runs, Device::Cpu).unwrap_err().to_string();
    assert!(e.contains("train.eval_every") && e.contains("convert-inception"), "{e}");
    assert!(!runs.join("tiny").exists(), "a failed start left a run directory");
}

/// The Fashion-MNIST job on the real files (Debian's dataset-fashion-mnist, which `cargo xtask
/// setup` installs) for a few steps: the 60,000 images load padded to 32x32, the
/// class-conditional UNet trains, the preview shows 10 images (one per class), and the
/// evaluation measures the EMA weights with the classifier distance and KID beside their
/// floor (training images vs test images).
#[test]
fn the_fashion_mnist_job_trains_previews_and_is_measured_against_its_floor() {
    let runs = ddpm_testkit::temp_dir("eval-fashion");
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/fashion-mnist.toml");
    let mut c = ddpm_train::RunConfig::load(&path).unwrap();
    assert_eq!((c.data.dataset.as_str(), c.model.num_classes()), ("fashion-mnist", Some(10)));
    c.optim.batch_size = 16;
    c.train.total_steps = 3;
    c.train.log_every = 1;
    c.train.checkpoint_every = 3;
    c.train.sample_every = 3;
    c.train.sample_count = 10;
    c.train.sample_steps = 3;
    c.train.eval_every = 3;
    c.train.eval_samples = 40;
    c.train.eval_steps = 3;
    let mut t = Trainer::new(c, &runs, Device::Cpu).unwrap();
    assert_eq!(
        t.train(&AtomicBool::new(false), &mut LogProgress).unwrap(),
        Outcome::Finished { step: 3 }
    );
    let run = RunDir::new(runs.join("fashion-mnist"));
    // 10 cells of 32x32 at scale 2, 4 to a row, with 11-pixel gutters.
    let grid = image::open(run.preview_path(3, "png")).unwrap();
    assert_eq!((grid.width(), grid.height()), (4 * 64 + 5 * 11, 3 * 64 + 4 * 11));
    let lines = read_evals(&run.eval_log_path()).unwrap();
    let metrics: Vec<&str> = lines.iter().map(|l| l.metric.as_str()).collect();
    assert_eq!(metrics, ["fashion_fd", "fashion_kid"], "{lines:?}");
    for l in &lines {
        assert_eq!((l.step, l.samples), (3, Some(40)));
        // A 3-step model is far from the data; the floor is the data against itself.
        let floor = l.baseline.unwrap();
        assert!(l.value.is_finite() && l.value > floor + 0.01, "{l:?}");
    }
    std::fs::remove_dir_all(&runs).unwrap();
}
