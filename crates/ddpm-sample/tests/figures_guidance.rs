//! The paper's figures from the command line (sizes and contents of the pictures), and
//! classifier-free guidance on a class-conditional model: the guided output against the
//! formula from two separate network calls, and conditional sampling end to end.

use ddpm_run::{RunDir, load_model};
use ddpm_sample::guidance::GuidedModel;
use ddpm_testkit::temp_dir;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;
use tch::{Device, Kind, Tensor};

/// Trains `config` (under configs/) for 3 steps as run `name`, with `edit` applied; returns
/// the runs directory.
fn trained(config: &str, name: &str, edit: impl FnOnce(&mut ddpm_train::RunConfig)) -> PathBuf {
    let runs = temp_dir(&format!("figures-{name}"));
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../configs").join(config);
    let mut c = ddpm_train::RunConfig::load(&path).unwrap();
    c.name = name.into();
    c.train.total_steps = 3;
    c.train.sample_every = 0;
    edit(&mut c);
    let mut t = ddpm_train::Trainer::new(c, &runs, Device::Cpu).unwrap();
    t.train(&AtomicBool::new(false), &mut ddpm_train::LogProgress).unwrap();
    runs
}

fn cli(runs: &Path, name: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ddpm-sample"))
        .args(args)
        .args(["--checkpoint", name, "--device", "cpu", "--runs-dir"])
        .arg(runs)
        .output()
        .unwrap()
}

fn ok(o: &std::process::Output) {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// Width and height of a grid of `rows` x `cols` 8x8 cells scaled 8x, with the 11-pixel
/// gutters of 64-pixel cells (`ddpm_viz::gutter`).
fn grid_size(rows: u32, cols: u32) -> (u32, u32) {
    (cols * 64 + (cols + 1) * 11, rows * 64 + (rows + 1) * 11)
}

#[test]
fn progressive_and_interpolation_grids_have_one_cell_per_sample_and_column() {
    let runs = trained("tiny.toml", "tiny", |_| {});
    let out = temp_dir("figures-out");
    let run = |fig: &str, extra: &[&str]| {
        let mut args = vec!["figures", fig, "--out", out.to_str().unwrap()];
        args.extend_from_slice(extra);
        let o = cli(&runs, "tiny", &args);
        ok(&o);
        PathBuf::from(String::from_utf8_lossy(&o.stdout).trim())
    };
    let p = run("progressive", &["-n", "3", "--steps", "20", "--points", "5"]);
    assert_eq!(p, out.join("progressive.png"));
    let img = image::open(&p).unwrap();
    assert_eq!((img.width(), img.height()), grid_size(3, 5));
    // The last column is the finished sample, the first the prediction from pure noise: they
    // differ, and the picture is not blank.
    let luma = img.to_luma8();
    let cell = |r: u32, c: u32| -> Vec<u8> {
        let (x0, y0) = (11 + c * 75, 11 + r * 75);
        (0..64)
            .flat_map(|y| (0..64).map(move |x| (x0 + x, y0 + y)))
            .map(|(x, y)| luma.get_pixel(x, y)[0])
            .collect()
    };
    assert_ne!(cell(0, 0), cell(0, 4));
    // (Within the cell: the grey gutter alone would not be blank.)
    assert!(cell(0, 4).iter().any(|&p| p > 0), "the finished sample is blank");

    let p = run("interpolate", &["--points", "4", "--pair", "0", "1", "--t", "30"]);
    assert_eq!(p, out.join("interpolation.png"));
    let img = image::open(&p).unwrap().to_luma8();
    // The two sources at the ends and 4 decoded mixtures between them.
    assert_eq!((img.width(), img.height()), grid_size(1, 6));
    let digits = ddpm_data::load(&ddpm_data::config_from_arg("digits")).unwrap().0;
    let first = digits.sample_f32(0);
    // The first cell is data image 0 itself, quantised to 8 bits.
    for y in 0..8u32 {
        for x in 0..8u32 {
            let v = first[(y * 8 + x) as usize];
            let want = ((v.clamp(-1.0, 1.0) + 1.0) * 127.5).round();
            let got = img.get_pixel(11 + x * 8 + 3, 11 + y * 8 + 3)[0] as f32;
            assert!((got - want).abs() <= 1.0, "pixel ({x},{y}): {got} vs {want}");
        }
    }

    let bad = cli(&runs, "tiny", &["figures", "trajectories", "--out", out.to_str().unwrap()]);
    assert_eq!(bad.status.code(), Some(2));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("trajectories needs a 2-D model"), "{err}");
    let bad = cli(
        &runs,
        "tiny",
        &["figures", "interpolate", "--pair", "0", "999999", "--out", out.to_str().unwrap()],
    );
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--pair"));
}

#[test]
fn swiss_roll_trajectories_are_an_svg_with_forward_and_reverse_panels() {
    let runs = trained("swissroll.toml", "roll", |_| {});
    let out = temp_dir("figures-roll");
    let o = cli(
        &runs,
        "roll",
        &["figures", "trajectories", "-n", "300", "--points", "4", "--out", out.to_str().unwrap()],
    );
    ok(&o);
    let svg = std::fs::read_to_string(out.join("trajectories.svg")).unwrap();
    assert!(svg.starts_with("<svg") || svg.starts_with("<?xml"), "not an SVG");
    // Two rows (forward, reverse) of 4 panels each.
    assert_eq!(svg.matches("<g class=\"panel\" data-row=\"0\"").count(), 4);
    assert_eq!(svg.matches("<g class=\"panel\" data-row=\"1\"").count(), 4);
    assert!(svg.contains(">forward<") && svg.contains(">reverse<"), "row labels");
    assert!(
        svg.contains("forward q(x_t | x_0)") && svg.contains("reverse p\u{3b8}(x_t)"),
        "legend"
    );
    // The forward row's captions: t = 0 (the data), two panels evenly spaced in log-SNR
    // where the roll dissolves, t = T = 100 (noise); t strictly increasing.
    let captions: Vec<&str> = svg
        .split("<g class=\"panel\" data-row=\"0\"")
        .skip(1)
        .map(|p| {
            let t = &p[p.find("<text").unwrap()..];
            &t[t.find('>').unwrap() + 1..t.find("</text>").unwrap()]
        })
        .collect();
    assert_eq!(captions[0], "t = 0 (data)");
    assert_eq!(captions[3], "t = 100 (noise)");
    let ts: Vec<u64> = captions
        .iter()
        .map(|c| c[4..].split([' ', ',']).next().unwrap().parse().unwrap())
        .collect();
    assert!(ts.windows(2).all(|w| w[0] < w[1]), "{captions:?}");
    let lambdas: Vec<f64> =
        captions[1..3].iter().map(|c| c.rsplit(' ').next().unwrap().parse().unwrap()).collect();
    // SNR Var(x0) from 100 down to 1 with Var(x0) ~ 0.2 of the roll: lambda ~ 6.2 and 1.6
    // (on the grid of integer t: lambda_1 = 6.9, lambda_2 = 5.8).
    assert!((lambdas[0] - 6.2).abs() < 0.6 && (lambdas[1] - 1.6).abs() < 0.6, "{captions:?}");
    // Drift arrows in the reverse row (not on the samples panel).
    let arrows = svg.matches("<g class=\"arrow\"").count();
    assert!((300..=3 * 15 * 15).contains(&arrows), "{arrows} arrows");
    // Every panel draws its point cloud (all but the 1% beyond each column's axis limit).
    for color in ["#7f7f7f", "#d62728"] {
        let drawn = svg.matches(&format!("r=\"1\" fill=\"{color}\"")).count();
        assert!((4 * 300 * 95 / 100..=4 * 300).contains(&drawn), "{color}: {drawn} points drawn");
    }
}

#[test]
fn guided_output_is_the_classifier_free_formula_and_conditional_sampling_runs() {
    let runs = trained("tiny.toml", "cond", |c| {
        if let ddpm_nets::ModelConfig::Unet(u) = &mut c.model {
            u.num_classes = Some(10);
        }
    });
    let model = load_model(&RunDir::resolve("cond", &runs).unwrap(), Device::Cpu, true).unwrap();
    let _g = tch::no_grad_guard();
    tch::manual_seed(3);
    let x = Tensor::randn([4, 1, 8, 8], (Kind::Float, Device::Cpu));
    let t = Tensor::from_slice(&[0i64, 10, 50, 99]);
    let y = Tensor::from_slice(&[0i64, 3, 7, 9]);
    let null = Tensor::full([4], 10, (Kind::Int64, Device::Cpu));
    let cond = model.net.forward_t(&x, &t, Some(&y), false);
    let uncond = model.net.forward_t(&x, &t, Some(&null), false);
    assert!(f64::try_from((&cond - &uncond).abs().max()).unwrap() > 1e-6, "labels are ignored");
    for w in [0.0, 1.0, 3.0] {
        let g = GuidedModel::new(&model.net, w, false).output(&x, &t, Some(&y));
        let want = &uncond + (&cond - &uncond) * w;
        let d = f64::try_from((g - want).abs().max()).unwrap();
        assert!(d < 1e-5, "w = {w}: guided output off by {d}");
    }

    let out = temp_dir("figures-cond");
    let sample = |dir: &str, extra: &[&str]| {
        let mut args = vec!["sample", "--sampler", "ddim", "--steps", "5", "-n", "4", "--no-png"];
        args.extend_from_slice(extra);
        let dest = out.join(dir);
        args.extend_from_slice(&["--out", dest.to_str().unwrap()]);
        let o = cli(&runs, "cond", &args);
        ok(&o);
        std::fs::read(dest.join("samples.npz")).unwrap()
    };
    let c3 = sample("c3", &["--class", "3", "--guidance", "2"]);
    assert_eq!(c3, sample("c3-again", &["--class", "3", "--guidance", "2"]));
    assert_ne!(c3, sample("c4", &["--class", "4", "--guidance", "2"]));
    assert_ne!(c3, sample("c3-w1", &["--class", "3"]));
    sample("random", &["--random-classes", "--guidance", "1.5"]);
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("c3/manifest.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["sampler"]["guidance_scale"], 2.0, "{manifest}");
    assert!(manifest["labels"].to_string().contains('3'), "{manifest}");

    let bad = cli(
        &runs,
        "cond",
        &["sample", "--class", "10", "--out", out.join("bad").to_str().unwrap()],
    );
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--class must be in 0..10"));
    assert!(!out.join("bad").exists());
}
