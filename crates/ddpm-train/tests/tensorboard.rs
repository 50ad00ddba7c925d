//! TensorBoard event files read back by TensorBoard's own reader (EventAccumulator, in the
//! venv; scripts/read_tfevents.py prints what it loads): exact tags, steps and float32 values,
//! images decoded to the very pixels written, a crash-truncated file read up to its last whole
//! record, and a resumed run's orphaned points dropped.

use ddpm_testkit::run_json;
use ddpm_train::metrics::MetricsLine;
use ddpm_train::{EvalLine, TbWriter};
use serde_json::Value;
use std::collections::BTreeMap;

fn line(step: u64, loss: f64, q2: f64) -> MetricsLine {
    MetricsLine {
        step,
        loss,
        loss_by_t_quartile: [3.0 * loss, q2, 0.5 * loss, 0.1 * loss],
        grad_norm: 1.0 / step as f64,
        lr: 2e-4 * step as f64 / 300.0,
        images_per_s: 1000.0 + step as f64,
        elapsed_s: step as f64,
    }
}

/// (tag -> [(step, value)]) from the reader's output.
fn scalars(v: &Value) -> BTreeMap<String, Vec<(u64, f64)>> {
    v["scalars"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, pts)| {
            let pts = pts
                .as_array()
                .unwrap()
                .iter()
                .map(|p| (p[0].as_u64().unwrap(), p[1].as_f64().unwrap()))
                .collect();
            (k.clone(), pts)
        })
        .collect()
}

fn read(path: &std::path::Path) -> Value {
    run_json("read_tfevents.py", &[path.to_str().unwrap()])
}

/// A 2-image grid (1 x 3 x 4 each, scale 2, pad 2: 22 x 10 pixels) whose pixels depend on `seed`.
fn grid(seed: f32) -> ddpm_viz::Picture {
    let imgs: Vec<f32> = (0..24).map(|i| (i as f32 * 0.37 + seed).sin()).collect();
    ddpm_viz::image_grid(&imgs, [2, 1, 3, 4], 2, 2, 2)
}

#[test]
#[ignore = "needs the Python venv: run `cargo xtask test`"]
fn tensorboard_reads_back_exact_scalars_and_images() {
    let dir = ddpm_testkit::temp_dir("tb-read");
    let mut w = TbWriter::create(&dir, 0).unwrap();
    let lines = [line(100, 0.9, 2.0), line(200, 0.3, f64::NAN), line(300, 0.1234567, 0.7)];
    for l in &lines {
        w.add_metrics(l).unwrap();
    }
    let mut e = EvalLine::new(300, "digits_fd", 4.52);
    e.baseline = Some(3.18);
    w.add_eval(&e).unwrap();
    let (g1, g2) = (grid(0.0), grid(1.0));
    w.add_image_png("samples", 100, &g1.to_png().unwrap()).unwrap();
    w.add_image_png("samples", 300, &g2.to_png().unwrap()).unwrap();
    let file = w.path().to_path_buf();
    drop(w);

    let got = read(&dir);
    let s = scalars(&got);
    let f32v = |v: f64| v as f32 as f64;
    let want: BTreeMap<String, Vec<(u64, f64)>> = [
        ("loss/mean", lines.iter().map(|l| (l.step, f32v(l.loss))).collect::<Vec<_>>()),
        ("loss/t_q1", lines.iter().map(|l| (l.step, f32v(l.loss_by_t_quartile[0]))).collect()),
        // The empty quartile (NaN) at step 200 is left out.
        ("loss/t_q2", vec![(100, 2.0), (300, f32v(0.7))]),
        ("loss/t_q3", lines.iter().map(|l| (l.step, f32v(l.loss_by_t_quartile[2]))).collect()),
        ("loss/t_q4", lines.iter().map(|l| (l.step, f32v(l.loss_by_t_quartile[3]))).collect()),
        ("train/grad_norm", lines.iter().map(|l| (l.step, f32v(l.grad_norm))).collect()),
        ("train/lr", lines.iter().map(|l| (l.step, f32v(l.lr))).collect()),
        ("train/images_per_s", lines.iter().map(|l| (l.step, f32v(l.images_per_s))).collect()),
        ("eval/digits_fd", vec![(300, f32v(4.52))]),
        ("eval/digits_fd_baseline", vec![(300, f32v(3.18))]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(s, want);

    let images = got["images"]["samples"].as_array().unwrap();
    assert_eq!(images.len(), 2);
    for (img, (step, g)) in images.iter().zip([(100u64, &g1), (300, &g2)]) {
        assert_eq!(img["step"].as_u64(), Some(step));
        assert_eq!((img["width"].as_u64(), img["height"].as_u64()), (Some(22), Some(10)));
        assert_eq!((g.width, g.height), (22, 10));
        assert_eq!(img["mode"], "L");
        let px: Vec<u8> =
            img["pixels"].as_array().unwrap().iter().map(|p| p.as_u64().unwrap() as u8).collect();
        assert_eq!(px, g.pixels, "pixels of the grid at step {step}");
    }
    assert_ne!(g1.pixels, g2.pixels);

    // A crash in the middle of the last record (the second image): the reader loads all the
    // rest of the file.
    let bytes = std::fs::read(&file).unwrap();
    let cut_dir = ddpm_testkit::temp_dir("tb-cut");
    std::fs::write(cut_dir.join(file.file_name().unwrap()), &bytes[..bytes.len() - 40]).unwrap();
    let cut = read(&cut_dir);
    assert_eq!(scalars(&cut), want);
    let images = cut["images"]["samples"].as_array().unwrap();
    assert_eq!(images.len(), 1);
    assert_eq!(images[0]["step"].as_u64(), Some(100));
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_dir_all(&cut_dir).unwrap();
}

#[test]
#[ignore = "needs the Python venv: run `cargo xtask test`"]
fn a_resumed_run_replaces_what_the_interrupted_run_logged_after_its_checkpoint() {
    let dir = ddpm_testkit::temp_dir("tb-resume-read");
    let mut first = TbWriter::create(&dir, 0).unwrap();
    for (step, v) in [(100, 1.0), (200, 0.5), (300, 0.25)] {
        first.add_scalars(step, &[("loss/mean", v)]).unwrap();
    }
    drop(first);
    // The run crashed after logging step 300; its last checkpoint was at step 200.
    let mut second = TbWriter::create(&dir, 200).unwrap();
    second.add_scalars(300, &[("loss/mean", 0.3)]).unwrap();
    second.add_scalars(400, &[("loss/mean", 0.2)]).unwrap();
    drop(second);
    let s = scalars(&read(&dir));
    let f = |v: f64| v as f32 as f64;
    assert_eq!(s["loss/mean"], vec![(100, 1.0), (200, 0.5), (300, f(0.3)), (400, f(0.2))]);
    std::fs::remove_dir_all(&dir).unwrap();
}
