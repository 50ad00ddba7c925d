//! `ddpm-train export` against diffusers itself. A run of ours (a small UNet with perturbed
//! weights, EMA and trained weights apart, its output layer scaled so that its x0 predictions
//! leave [-1, 1]) is exported, and:
//! - `DDPMPipeline.from_pretrained(OUT)` loads it with no code of ours (`scripts/ref_export.py`),
//!   its UNet2DModel gives our network's output on the same inputs, unconditional and
//!   class-conditional, its scheduler's betas are ours, and the pipeline runs;
//! - `DDIMPipeline` with the exported scheduler, from the same initial noise, gives our DDIM
//!   samples in each clipping mode (`scripts/ref_pipeline.py`, as the import's end-to-end test);
//! - importing the export gives back the run's weights bit for bit, with the same `[model]`,
//!   `[diffusion]` and `[sampling]`;
//! - what diffusers cannot express is refused by name, and a failed export leaves nothing.
//!
//! Here rather than in ddpm-train because the DDIM comparison runs the `ddpm-sample` binary.

use ddpm_io::npy;
use ddpm_nets::tensorfile::{TensorFile, write_tensors};
use ddpm_nets::{ModelConfig, UNet, UNetConfig};
use ddpm_run::{Checkpoint, CheckpointMeta, RunDir, load_model};
use ddpm_testkit::{run_json, run_script, temp_dir};
use ddpm_train::RunConfig;
use ddpm_train::export::export_diffusers;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

fn unet(num_classes: Option<usize>) -> UNetConfig {
    UNetConfig {
        image_size: 16,
        in_channels: 3,
        ch: 16,
        ch_mult: vec![1, 2],
        num_res_blocks: 1,
        attention_resolutions: vec![8],
        dropout: 0.0,
        num_groups: 8,
        attention_head_dim: Some(8),
        num_classes,
        ..UNetConfig::default()
    }
}

/// Adds seeded noise of scale 0.05 to every variable and scales the output layer by 4.
fn perturb(vs: &VarStore, seed: i64) {
    tch::manual_seed(seed);
    tch::no_grad(|| {
        for (name, mut v) in vs.variables() {
            let _ = v.g_add_(&(v.randn_like() * 0.05));
            if name.starts_with("conv_out.") {
                let _ = v.g_mul_scalar_(4.0);
            }
        }
    });
}

/// A run `runs/<name>` of ours with a step-10 checkpoint whose EMA and trained weights differ,
/// and one evaluation line at that step.
fn make_run(runs: &Path, name: &str, config: RunConfig) -> RunDir {
    let run = RunDir::new(runs.join(name));
    std::fs::create_dir_all(run.checkpoints_dir()).unwrap();
    let ModelConfig::Unet(u) = &config.model else { panic!("a UNet run") };
    let (vs, ema) = (VarStore::new(Device::Cpu), VarStore::new(Device::Cpu));
    let _a = UNet::new(&vs.root(), u, u.in_channels).unwrap();
    let _b = UNet::new(&ema.root(), u, u.in_channels).unwrap();
    perturb(&vs, 1);
    perturb(&ema, 2);
    let meta = CheckpointMeta {
        step: 10,
        config: Some(config.to_toml()),
        source: None,
        ..CheckpointMeta::imported(String::new())
    };
    Checkpoint::write(&run.checkpoint_path(10), &vs, &ema, None, &meta).unwrap();
    std::fs::write(
        run.eval_log_path(),
        "{\"step\":10,\"metric\":\"fashion_fd\",\"value\":1.25,\"baseline\":0.36,\"samples\":500,\"sampler\":\"ddim\",\"sampler_steps\":50}\n",
    )
    .unwrap();
    run.write_config(&config.to_toml()).unwrap();
    run
}

fn config(name: &str, num_classes: Option<usize>) -> RunConfig {
    RunConfig {
        name: name.into(),
        model: ModelConfig::Unet(unet(num_classes)),
        ..RunConfig::default()
    }
}

fn our_output(runs: &Path, name: &str, x: &Tensor, t: &Tensor, y: Option<&Tensor>) -> Tensor {
    let model = load_model(&RunDir::resolve(name, runs).unwrap(), Device::Cpu, true).unwrap();
    tch::no_grad(|| model.net.forward_t(x, t, y, false))
}

#[test]
#[ignore = "needs the Python venv: run `cargo xtask test`"]
fn the_export_loads_in_diffusers_and_its_unet_gives_our_output() {
    for classes in [None, Some(4)] {
        let dir = temp_dir("export-forward");
        let runs = dir.join("runs");
        make_run(&runs, "ours", config("ours", classes));
        let out = dir.join("exported");
        let e = export_diffusers("ours", &runs, &out, false, None).unwrap();
        assert!(e.ema && e.step == 10);
        tch::manual_seed(7);
        let x = Tensor::randn([3, 3, 16, 16], (Kind::Float, Device::Cpu));
        let t = Tensor::from_slice(&[0i64, 417, 999]);
        let y = classes.map(|_| Tensor::from_slice(&[0i64, 3, 1]));
        let mut io = vec![("x".to_owned(), x.shallow_clone()), ("t".to_owned(), t.shallow_clone())];
        if let Some(y) = &y {
            io.push(("y".to_owned(), y.shallow_clone()));
        }
        write_tensors(dir.join("io.safetensors"), &io, &HashMap::new()).unwrap();
        let d = dir.to_str().unwrap();
        let report = run_json(
            "ref_export.py",
            &[out.to_str().unwrap(), &format!("{d}/io.safetensors"), &format!("{d}/theirs.npy")],
        );
        assert_eq!(report["unet"], "UNet2DModel");
        assert_eq!(report["scheduler"], "DDPMScheduler");
        let (shape, theirs) = npy::read_array(&dir.join("theirs.npy"), "x").unwrap();
        assert_eq!(shape, vec![3, 3, 16, 16]);
        let ours = our_output(&runs, "ours", &x, &t, y.as_ref());
        let ours: Vec<f32> = Vec::try_from(ours.flatten(0, -1)).unwrap();
        let diff = ours.iter().zip(&theirs).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        let scale = theirs.iter().fold(0f32, |m, v| m.max(v.abs()));
        eprintln!(
            "classes {classes:?}: UNet2DModel against ours, max abs difference {diff:e} (scale {scale})"
        );
        assert!(diff <= 1e-5, "classes {classes:?}: max abs difference {diff:e} (scale {scale})");
        assert!(scale > 0.1, "the output is not trivially small: {scale}");
        // The scheduler's betas are the run's, to float32 (diffusers' linspace is float32:
        // 1.4e-9 of beta_T = 0.02 measured).
        let ours_betas = ddpm_core::BetaSchedule::paper_linear().betas(1000).unwrap();
        let theirs_betas = ddpm_testkit::f64s(&report["betas"]);
        let d =
            ours_betas.iter().zip(&theirs_betas).map(|(a, b)| (a - b).abs()).fold(0f64, f64::max);
        assert!(theirs_betas.len() == 1000 && d < 5e-9, "betas differ by {d}");
        assert_eq!(report["config"]["variance_type"], "fixed_large");
        assert_eq!(report["config"]["prediction_type"], "epsilon");
        if classes.is_none() {
            assert_eq!(report["images_finite"], true);
            assert_eq!(report["image_shape"], serde_json::json!([2, 16, 16, 3]));
        }
        let card = std::fs::read_to_string(out.join("README.md")).unwrap();
        for needle in [
            "EMA weights of step 10",
            "fashion_fd | 1.2500 | 0.3600 | 500 | ddim, 50 steps",
            "DDPMPipeline.from_pretrained",
        ] {
            assert!(card.contains(needle), "model card lacks {needle:?}:\n{card}");
        }
        if classes.is_some() {
            assert!(card.contains("class-conditional, 4 classes"), "{card}");
        }
    }
}

fn sample(dir: &Path, runs: &Path, tag: &str, args: &[&str]) -> Vec<f32> {
    let out = dir.join(format!("ours-{tag}"));
    let o = Command::new(env!("CARGO_BIN_EXE_ddpm-sample"))
        .args(["sample", "--checkpoint", "ours", "--sampler", "ddim", "--steps", "20"])
        .args(["--eta", "0", "-n", "3", "--device", "cpu", "--no-png", "--noise"])
        .arg(dir.join("noise.npy"))
        .arg("--runs-dir")
        .arg(runs)
        .arg("--out")
        .arg(&out)
        .args(args)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    npy::read_array(&out.join("samples.npz"), "samples").unwrap().1
}

#[test]
#[ignore = "needs the Python venv: run `cargo xtask test`"]
fn ddim_pipeline_on_the_export_gives_our_ddim_samples_in_each_clipping_mode() {
    let dir = temp_dir("export-pipeline");
    let runs = dir.join("runs");
    make_run(&runs, "ours", config("ours", None));
    let out = dir.join("exported");
    export_diffusers("ours", &runs, &out, false, None).unwrap();
    let mut noise = Vec::new();
    let mut rng = ddpm_core::rng::SplitMix64::new(5);
    for _ in 0..3 * 3 * 16 * 16 {
        noise.push(rng.next_normal() as f32);
    }
    npy::write_npy(&dir.join("noise.npy"), &[3, 3, 16, 16], &noise).unwrap();
    let d = dir.to_str().unwrap();
    let printed =
        run_script("ref_pipeline.py", &[out.to_str().unwrap(), &format!("{d}/noise.npy"), "20", d]);
    let report: serde_json::Value = serde_json::from_str(printed.trim()).unwrap();
    let x0_max = ddpm_testkit::f64s(&report["default"]["x0_max"]);
    assert!(
        x0_max.iter().filter(|&&m| m > 1.0).count() >= 10,
        "clipping hardly triggered: {x0_max:?}"
    );
    let max_diff =
        |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    let mut ours_by = std::collections::HashMap::new();
    // diffusers' own convention keeps the model's eps beside the clipped x0, a state that is
    // not consistent with x_t, and float32 rounding grows along it through this deliberately
    // off-scale network: measured 6.6e-4 to 2.2e-3 over runs (the bound was 1e-3, and a CI run
    // failed at 2.2e-3), where the consistent states stay within 4e-5 (eps re-derived) and
    // 1.1e-4 (no clip).
    for (variant, flags, bound) in [
        ("default", &["--clip-convention", "diffusers"][..], 5e-3),
        ("noclip", &["--clip", "false"][..], 1e-3),
        ("clip-id", &[][..], 1e-3),
    ] {
        let theirs = npy::read_array(&dir.join(format!("theirs-{variant}.npy")), "x").unwrap().1;
        let ours = sample(&dir, &runs, variant, flags);
        let diff = max_diff(&ours, &theirs);
        eprintln!("{variant}: DDIMPipeline against ours, max abs difference {diff:e}");
        assert!(diff <= bound, "{variant}: max abs difference {diff}");
        assert!(theirs.iter().any(|v| v.abs() > 0.1), "images are not trivially flat");
        ours_by.insert(variant, ours);
    }
    // The bound still tells the conventions apart: ours in the other convention is far from
    // diffusers' default.
    let theirs = npy::read_array(&dir.join("theirs-default.npy"), "x").unwrap().1;
    let apart = max_diff(&ours_by["clip-id"], &theirs);
    eprintln!("improved-diffusion's convention against DDIMPipeline's default: {apart:e}");
    assert!(apart > 20.0 * 5e-3, "the conventions differ by {apart} only");
}

fn weights(path: &Path, prefix: &str) -> Vec<(String, Vec<u8>)> {
    let f = TensorFile::open(path).unwrap();
    let mut names: Vec<&str> = f.names_under(prefix).collect();
    names.sort();
    names
        .iter()
        .map(|n| (n.to_string(), f.raw(&format!("{prefix}{n}")).unwrap().to_vec()))
        .collect()
}

#[test]
fn importing_an_export_gives_back_the_weights_bit_for_bit_and_the_same_defaults() {
    let dir = temp_dir("export-round-trip");
    let runs = dir.join("runs");
    let mut cfg = config("ours", Some(4));
    cfg.sampling.clip = Some(true);
    cfg.sampling.final_abar_one = false;
    cfg.sampling.steps_offset = 1;
    cfg.diffusion.schedule = ddpm_core::ScheduleName::Cosine;
    let run = make_run(&runs, "ours", cfg.clone());
    let ckpt = run.checkpoint_path(10);
    for (raw, prefix) in [(false, "ema/"), (true, "model/")] {
        let out = dir.join(format!("exported-raw{raw}"));
        export_diffusers("ours", &runs, &out, raw, Some(10)).unwrap();
        let name = format!("back-raw{raw}");
        ddpm_train::import::import_diffusers(&out, &name, &runs).unwrap();
        let back = RunDir::resolve(&name, &runs).unwrap();
        let back_ckpt = back.checkpoint_path(0);
        let original = weights(&ckpt, prefix);
        assert!(original.len() > 20);
        assert_eq!(weights(&back_ckpt, "model/"), original, "raw {raw}: model weights");
        assert_eq!(weights(&back_ckpt, "ema/"), original, "raw {raw}: EMA weights");
        let imported = RunConfig::load(&back.config_path()).unwrap();
        assert_eq!(imported.sampling, cfg.sampling);
        assert_eq!(imported.diffusion, cfg.diffusion);
        let ModelConfig::Unet(u) = imported.model else { panic!() };
        assert_eq!(u, UNetConfig { out_channels: Some(3), ..unet(Some(4)) });
    }
}

#[test]
fn what_diffusers_cannot_express_is_refused_by_name_and_a_failed_export_leaves_nothing() {
    let dir = temp_dir("export-refusals");
    let runs = dir.join("runs");
    let mut learned = config("learned", None);
    learned.diffusion = ddpm_core::DiffusionConfig::improved_ddpm(1000);
    if let ModelConfig::Unet(u) = &mut learned.model {
        u.out_channels = Some(6);
    }
    // The learned variance is refused from the config alone, before any weights are read.
    let r = RunDir::new(runs.join("learned"));
    std::fs::create_dir_all(&r.root).unwrap();
    r.write_config(&learned.to_toml()).unwrap();
    let out = dir.join("out");
    let e = export_diffusers("learned", &runs, &out, false, None).unwrap_err().to_string();
    assert!(e.contains("model_var") && e.contains("config.toml"), "{e}");
    assert_eq!(e.lines().count(), 1, "{e}");

    let run = make_run(&runs, "ours", config("ours", None));
    let e = export_diffusers("ours", &runs, &out, false, Some(7)).unwrap_err().to_string();
    assert!(e.contains("no checkpoint of step 7") && e.contains("steps 10"), "{e}");
    // A damaged checkpoint: refused by name, and nothing at OUT or beside it.
    let ckpt = run.checkpoint_path(10);
    let mut bytes = std::fs::read(&ckpt).unwrap();
    let n = bytes.len();
    bytes[n - 100] ^= 0xff;
    std::fs::write(&ckpt, &bytes).unwrap();
    let e = export_diffusers("ours", &runs, &out, false, None).unwrap_err().to_string();
    assert!(e.contains("ckpt-"), "{e}");
    let left: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(left, vec![runs.clone()], "a failed export left {left:?}");
    // An existing folder is never written into.
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("keep.txt"), "mine").unwrap();
    let e = export_diffusers("ours", &runs, &out, false, None).unwrap_err().to_string();
    assert!(e.contains("exists"), "{e}");
    assert_eq!(std::fs::read_to_string(out.join("keep.txt")).unwrap(), "mine");
}
