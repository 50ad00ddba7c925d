//! `ddpm-sample` end to end on a tiny trained model: outputs, bit-identical reruns, sharding,
//! resume after an interruption, and one-line errors with exit code 2 that touch nothing.

use ddpm_io::npy;
use ddpm_run::{RunDir, load_model};
use ddpm_sample::job::{self, JobOptions, Labels, Manifest};
use ddpm_sample::{SamplerKind, SamplerOptions};
use ddpm_testkit::temp_dir;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;

/// A tiny model trained for a few steps; returns the runs directory (run "tiny").
fn trained() -> PathBuf {
    trained_as("tiny", |_| {})
}

/// `configs/<config>.toml` changed by `edit`, trained for 3 steps as run `config` (its name).
fn trained_as(config: &str, edit: impl FnOnce(&mut ddpm_train::RunConfig)) -> PathBuf {
    let runs = temp_dir("sample-cli-runs");
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../../configs/{config}.toml"));
    let mut c = ddpm_train::RunConfig::load(&path).unwrap();
    c.train.total_steps = 3;
    c.train.sample_every = 0;
    c.name = config.into();
    edit(&mut c);
    let mut t = ddpm_train::Trainer::new(c, &runs, tch::Device::Cpu).unwrap();
    t.train(&AtomicBool::new(false), &mut ddpm_train::LogProgress).unwrap();
    runs
}

fn sample(runs: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let checkpoint: &[&str] =
        if extra.contains(&"--checkpoint") { &[] } else { &["--checkpoint", "tiny"] };
    Command::new(env!("CARGO_BIN_EXE_ddpm-sample"))
        .arg("sample")
        .args(checkpoint)
        .args(["--device", "cpu", "--runs-dir"])
        .arg(runs)
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .unwrap()
}

fn ok(o: std::process::Output) {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

fn samples(out: &Path) -> (Vec<usize>, Vec<f32>) {
    npy::read_array(&out.join("samples.npz"), "samples").unwrap()
}

#[test]
fn writes_grid_pngs_and_npz() {
    let runs = trained();
    let out = temp_dir("sample-out").join("s");
    ok(sample(&runs, &out, &["--sampler", "ddim", "--steps", "5", "-n", "5", "--batch-size", "2"]));
    let (shape, v) = samples(&out);
    assert_eq!(shape, vec![5, 1, 8, 8]);
    assert!(v.iter().all(|x| (-1.0..=1.0).contains(x)));
    assert!(out.join("grid.png").exists() && out.join("images/000004.png").exists());
    assert!(out.join("manifest.json").exists() && !out.join("parts").exists());
}

#[test]
fn reruns_are_bit_identical_and_shards_reproduce_the_whole() {
    let runs = trained();
    let dir = temp_dir("sample-det");
    for sampler in ["ddpm", "ddim", "dpm-solver++", "heun"] {
        let steps =
            ["--sampler", sampler, "--steps", "4", "--batch-size", "3", "--seed", "7", "--no-png"];
        let (a, b) = (dir.join(format!("{sampler}-a")), dir.join(format!("{sampler}-b")));
        ok(sample(&runs, &a, &[&steps[..], &["-n", "6"]].concat()));
        ok(sample(&runs, &b, &[&steps[..], &["-n", "6"]].concat()));
        assert_eq!(
            std::fs::read(a.join("samples.npz")).unwrap(),
            std::fs::read(b.join("samples.npz")).unwrap(),
            "{sampler}"
        );
        let (s1, s2) = (dir.join(format!("{sampler}-s1")), dir.join(format!("{sampler}-s2")));
        ok(sample(&runs, &s1, &[&steps[..], &["-n", "3", "--start", "0"]].concat()));
        ok(sample(&runs, &s2, &[&steps[..], &["-n", "3", "--start", "3"]].concat()));
        let whole = samples(&a).1;
        let parts = [samples(&s1).1, samples(&s2).1].concat();
        assert_eq!(whole, parts, "{sampler}: shards differ from the whole job");
    }
}

#[test]
fn an_interrupted_job_resumes_where_it_stopped() {
    let runs = trained();
    let model =
        load_model(&RunDir::resolve("tiny", &runs).unwrap(), tch::Device::Cpu, true).unwrap();
    let mut opts = SamplerOptions::new(SamplerKind::Ddpm, 100);
    opts.steps = 5;
    let manifest = Manifest {
        checkpoint: "tiny".into(),
        checkpoint_step: model.step,
        ema: true,
        sampler: opts,
        seed: 1,
        start: 0,
        n: 6,
        batch_size: 2,
        labels: Labels::None,
        noise_file: None,
        sample_shape: model.net.sample_shape(),
        bf16: false,
    };
    let dir = temp_dir("sample-resume");
    let whole = JobOptions { out: dir.join("whole"), pngs: false, graph: None };
    job::run(&model, &manifest, &whole, None, &mut |_| {}).unwrap();
    let cut = JobOptions { out: dir.join("cut"), pngs: false, graph: None };
    // Stop after the first batch, as a kill would.
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        job::run(&model, &manifest, &cut, None, &mut |done| {
            if done >= 2 {
                panic!("interrupted")
            }
        })
    }));
    assert!(r.is_err());
    assert!(cut.out.join("parts/part-000000000.npy").exists());
    assert!(!cut.out.join("samples.npz").exists());
    // The resumed job samples only the two batches that were missing: images 2..6. Its
    // progress starts at the 2 images already done (a part found is reported, not sampled).
    let mut reports = Vec::new();
    job::run(&model, &manifest, &cut, None, &mut |done| reports.push(done)).unwrap();
    assert_eq!(reports, vec![2, 4, 6], "the finished batch was not skipped: {reports:?}");
    assert_eq!(samples(&whole.out), samples(&cut.out));
    // A different job into the same folder is refused.
    let mut other = manifest.clone();
    other.seed = 2;
    let e = job::run(&model, &other, &cut, None, &mut |_| {}).unwrap_err().to_string();
    assert!(e.contains("different job"), "{e}");
}

/// Regressions of the job's manifest and of finished jobs, through the one call every caller
/// uses (`job::sample_checkpoint`): the manifest omitted `--bf16`, so a resumed job could mix
/// precisions; it recorded the auto-probed batch size, so a rerun whose probe chose another
/// was refused; and a finished job sampled everything again on rerun.
#[test]
fn a_finished_job_is_not_resampled_and_precision_but_not_the_probe_defines_a_job() {
    let runs = trained();
    let model =
        load_model(&RunDir::resolve("tiny", &runs).unwrap(), tch::Device::Cpu, true).unwrap();
    let mut sampler = SamplerOptions::new(SamplerKind::Ddpm, 100);
    sampler.steps = 5;
    let req = ddpm_sample::SampleRequest {
        sampler,
        seed: 4,
        start: 0,
        n: 6,
        labels: Labels::None,
        noise_file: None,
        bf16: false,
    };
    let dir = temp_dir("sample-job-manifest");
    let job = JobOptions { out: dir.join("job"), pngs: true, graph: None };
    let single = ddpm_dist::Dist::single(tch::Device::Cpu);
    let run = |req: &ddpm_sample::SampleRequest, batch: Option<usize>| {
        let mut reports = Vec::new();
        job::sample_checkpoint(&model, req, batch, &job, None, &single, &mut |d, of| {
            reports.push((d, of))
        })
        .map(|(npz, m)| (npz, m, reports))
    };
    let (npz, m, _) = run(&req, Some(3)).unwrap();
    assert_eq!(m.batch_size, 3);
    let first = std::fs::read(&npz).unwrap();
    // Rerun of the finished job, batch size left to the probe (64 on the CPU): nothing is
    // sampled (no image is written again), the batches it was begun with are kept, and
    // samples.npz is untouched.
    std::fs::remove_dir_all(job.out.join("images")).unwrap();
    let (npz, m, reports) = run(&req, None).unwrap();
    assert_eq!(m.batch_size, 3, "the job's own batch size, not a new probe");
    assert_eq!(reports, vec![(6, 6)]);
    assert!(!job.out.join("images").exists(), "a finished job was sampled again");
    assert_eq!(std::fs::read(&npz).unwrap(), first);
    // The same job in bf16 is another job.
    let bf16 = ddpm_sample::SampleRequest { bf16: true, ..req.clone() };
    let e = run(&bf16, None).unwrap_err().to_string();
    assert!(e.contains("different job"), "{e}");
    // An interrupted job resumed with the probe's batch size keeps its own.
    std::fs::remove_file(&npz).unwrap();
    let (_, m, _) = run(&req, None).unwrap();
    assert_eq!(m.batch_size, 3);
    assert_eq!(std::fs::read(&npz).unwrap(), first);
}

fn fails(runs: &Path, args: &[&str], needle: &str) {
    let out = temp_dir("sample-bad").join("never");
    refused(&sample(runs, &out, args), &out, args, needle);
}

/// A refusal: exit code 2, one line on stderr containing `needle`, nothing written to `out`.
fn refused(o: &std::process::Output, out: &Path, args: &[&str], needle: &str) {
    assert_eq!(o.status.code(), Some(2), "{args:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
    assert!(err.contains(needle), "{args:?}: {err}");
    assert!(!out.exists(), "{args:?} wrote into --out despite failing");
}

#[test]
fn bad_input_is_one_line_exit_2_and_writes_nothing() {
    let runs = trained();
    fails(&runs, &["--sampler", "no-such-sampler"], "--sampler");
    fails(&runs, &["--steps", "2000"], "--steps must be in 1..=T = 100, got 2000");
    fails(&runs, &["--guidance", "3"], "unconditional");
    fails(&runs, &["--sampler", "ddpm", "--eta", "0.5"], "--eta");
    let noise = temp_dir("sample-noise").join("n.npy");
    npy::write_npy(&noise, &[2, 1, 4, 4], &[0.0; 32]).unwrap();
    fails(&runs, &["-n", "2", "--noise", noise.to_str().unwrap()], "expected [2, 1, 8, 8]");
    // A truncated checkpoint, named.
    let run = RunDir::new(runs.join("tiny"));
    let (_, ckpt) = run.list_checkpoints().pop().unwrap();
    let bytes = std::fs::read(&ckpt).unwrap();
    std::fs::write(&ckpt, &bytes[..bytes.len() - 1000]).unwrap();
    fails(&runs, &[], "truncated");
    std::fs::write(&ckpt, &bytes).unwrap();
    // A config describing another architecture than the checkpoint's weights.
    let cfg = std::fs::read_to_string(run.config_path()).unwrap();
    std::fs::write(run.config_path(), cfg.replace("ch = 16", "ch = 24")).unwrap();
    fails(&runs, &[], "shape");
    fails(&runs, &["--checkpoint", "nosuchrun"], "nosuchrun");
}

/// Every count or size argument of `ddpm-sample` given 0 is a one-line error naming it, with
/// exit code 2, and nothing is written. Regression: `figures -n 0` drew an empty grid and
/// `--points 0` was silently widened to 2 columns.
#[test]
fn every_count_or_size_argument_of_0_is_refused() {
    let runs = trained();
    let points = trained_as("swissroll", |_| {});
    for (runs, args, needle) in [
        (&runs, &["sample", "-n", "0"][..], "-n must be at least 1"),
        (&runs, &["sample", "--batch-size", "0"][..], "--batch-size must be at least 1"),
        (&runs, &["sample", "--steps", "0"][..], "--steps must be in 1..=T = 100, got 0"),
        (&runs, &["figures", "progressive", "-n", "0"][..], "-n must be at least 1"),
        (&runs, &["figures", "progressive", "--steps", "0"][..], "--steps must be in 1..=T"),
        (&runs, &["figures", "progressive", "--points", "0"][..], "--points must be at least 2"),
        (&runs, &["figures", "interpolate", "--points", "0"][..], "--points must be at least 2"),
        (&points, &["figures", "trajectories", "-n", "0"][..], "-n must be at least 1"),
        (&points, &["figures", "trajectories", "--points", "0"][..], "--points must be at least 2"),
    ] {
        let out = temp_dir("sample-zero").join("never");
        let checkpoint = if runs == &points { "swissroll" } else { "tiny" };
        let o = Command::new(env!("CARGO_BIN_EXE_ddpm-sample"))
            .args(args)
            .args(["--checkpoint", checkpoint, "--device", "cpu", "--runs-dir"])
            .arg(runs)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap();
        refused(&o, &out, args, needle);
    }
}

/// `--guidance` on a conditional model without labels to guide towards is refused (it used to
/// sample unguided while the manifest recorded the scale); with `--class` it runs.
#[test]
fn guidance_without_labels_is_refused_on_a_conditional_model() {
    let runs = trained_as("tiny", |c| {
        if let ddpm_nets::ModelConfig::Unet(u) = &mut c.model {
            u.num_classes = Some(10);
        }
    });
    fails(&runs, &["--guidance", "3", "-n", "2"], "pass --class K or --random-classes");
    let out = temp_dir("sample-guided").join("s");
    ok(sample(&runs, &out, &["--guidance", "3", "--class", "4", "-n", "2", "--steps", "3"]));
    let manifest = std::fs::read_to_string(out.join("manifest.json")).unwrap();
    assert!(manifest.contains("\"guidance_scale\": 3.0") && manifest.contains("4"), "{manifest}");
    let help = Command::new(env!("CARGO_BIN_EXE_ddpm-sample"))
        .args(["sample", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("diffusers' convention") && help.contains("Ho & Salimans"), "{help}");
}

/// `--noise` takes an .npz's array `noise`, or its only array whatever its name (the help said
/// so while the code required the name); the images equal those from the same x_T as `.npy`.
#[test]
fn noise_npz_takes_the_array_named_noise_or_the_only_array() {
    let runs = trained();
    let dir = temp_dir("sample-noise-npz");
    let n = 2;
    let x_t: Vec<f32> = (0..n * 64).map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0).collect();
    let shape = [n, 1, 8, 8];
    let npy_file = dir.join("x.npy");
    npy::write_npy(&npy_file, &shape, &x_t).unwrap();
    let only = dir.join("only.npz");
    npy::write_npz(&only, &[("x_T", &shape[..], &x_t[..])], false).unwrap();
    let named = dir.join("named.npz");
    let other = vec![0.0f32; x_t.len()];
    npy::write_npz(&named, &[("a", &shape[..], &other[..]), ("noise", &shape[..], &x_t[..])], true)
        .unwrap();
    let two = dir.join("two.npz");
    npy::write_npz(&two, &[("a", &shape[..], &other[..]), ("b", &shape[..], &x_t[..])], false)
        .unwrap();
    let mut results = Vec::new();
    for file in [&npy_file, &only, &named] {
        let out = dir.join(file.file_name().unwrap()).with_extension("out");
        let args = ["--sampler", "ddim", "--steps", "3", "-n", "2", "--no-png", "--noise"];
        ok(sample(&runs, &out, &[&args[..], &[file.to_str().unwrap()]].concat()));
        results.push(samples(&out).1);
    }
    assert_eq!(results[0], results[1], "the only array of an .npz");
    assert_eq!(results[0], results[2], "the array named noise");
    // Several arrays and none named noise: the error names the file and what it holds.
    fails(&runs, &["-n", "2", "--noise", two.to_str().unwrap()], "two.npz");
}

/// Output folders use the names the command line uses: `step<step>-dpm-solver++-<steps>-seed<seed>`
/// (they were `dpmsolverpp-...`), after the weights sampled (the run's 3 steps, EMA).
#[test]
fn default_output_folders_are_named_as_the_command_line_names_samplers() {
    let runs = trained();
    for (sampler, folder) in
        [("dpm-solver++", "step3-dpm-solver++-2-seed5"), ("ddim", "step3-ddim-2-seed5")]
    {
        let o = Command::new(env!("CARGO_BIN_EXE_ddpm-sample"))
            .args(["sample", "--checkpoint", "tiny", "--device", "cpu", "--runs-dir"])
            .arg(&runs)
            .args(["--sampler", sampler, "--steps", "2", "--seed", "5", "-n", "1", "--no-png"])
            .output()
            .unwrap();
        ok(o.clone());
        let dir = runs.join("tiny/samples").join(folder);
        assert!(dir.join("samples.npz").exists(), "{sampler}: no {}", dir.display());
        assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), dir.display().to_string());
    }
}

/// A run's `[sampling]` table gives DDIM's defaults (an imported diffusers model's: diffusers'
/// clipping convention, its final alpha and step offset) and the command line overrides them;
/// the manifest records what was used. `--clip-convention` with a sampler that uses x0 alone is
/// refused.
#[test]
fn the_runs_sampling_table_sets_defaults_that_flags_override() {
    let runs = trained();
    let config = runs.join("tiny/config.toml");
    let mut table: toml::Table =
        toml::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    let sampling = "clip_convention = \"diffusers\"\nfinal_abar_one = false\nsteps_offset = 1\n";
    table.insert("sampling".into(), toml::Value::Table(toml::from_str(sampling).unwrap()));
    std::fs::write(&config, toml::to_string(&table).unwrap()).unwrap();
    let manifest = |out: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap()
    };
    let dir = temp_dir("sample-sampling-table");
    let args = ["--sampler", "ddim", "--steps", "4", "-n", "1", "--no-png"];
    let (a, b) = (dir.join("defaults"), dir.join("flags"));
    ok(sample(&runs, &a, &args));
    let m = manifest(&a)["sampler"].clone();
    assert_eq!(
        (&m["clip_convention"], &m["final_abar_one"], &m["steps_offset"], &m["clip_x0"]),
        (&"diffusers".into(), &false.into(), &1.into(), &true.into()),
        "{m}"
    );
    ok(sample(&runs, &b, &[&args[..], &["--clip-convention", "improved-diffusion"]].concat()));
    assert_eq!(manifest(&b)["sampler"]["clip_convention"], "improved-diffusion");
    // The other samplers have settings of their own, which the table's DDIM keys do not reach.
    let c = dir.join("heun");
    ok(sample(&runs, &c, &["--sampler", "heun", "--steps", "2", "-n", "1", "--no-png"]));
    let m = manifest(&c)["sampler"].clone();
    assert_eq!((&m["kind"], &m["sigmas"]), (&"heun".into(), &"karras".into()), "{m}");
    assert!(m.get("steps_offset").is_none() && m.get("clip_convention").is_none(), "{m}");
    fails(
        &runs,
        &["--sampler", "heun", "--clip-convention", "diffusers"],
        "--clip-convention diffusers applies to ddim only",
    );
}

/// The samplers added beside the first four run from the command line with their own flags,
/// which the manifest records; a flag of another sampler, or two placements at once, is a
/// one-line error naming the flag and the samplers it applies to.
#[test]
fn every_sampler_runs_from_the_command_line_with_its_own_flags() {
    let runs = trained();
    let dir = temp_dir("sample-every-sampler");
    let manifest = |out: &Path| -> serde_json::Value {
        let m: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap())
                .unwrap();
        m["sampler"].clone()
    };
    for (i, (flags, key, want)) in [
        (
            &["--sampler", "unipc", "--order", "3", "--steps", "3"][..],
            "order",
            serde_json::json!(3),
        ),
        (
            &["--sampler", "unipc", "--sigmas", "karras", "--steps", "3"],
            "time_steps",
            "karras".into(),
        ),
        (&["--sampler", "dpm-solver++-sde", "--steps", "3"], "sigmas", "karras".into()),
        (
            &["--sampler", "dpm-solver++-3m-sde", "--sigmas", "exponential", "--steps", "3"],
            "sigmas",
            "exponential".into(),
        ),
        (
            &["--sampler", "dpm-solver++", "--time-steps", "karras", "--steps", "3"],
            "time_steps",
            "karras".into(),
        ),
        (
            &["--sampler", "ddpm", "--timestep-spacing", "trailing", "--steps", "3"],
            "skip",
            "trailing".into(),
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let out = dir.join(i.to_string());
        ok(sample(&runs, &out, &[flags, &["-n", "2", "--no-png"]].concat()));
        let m = manifest(&out);
        assert_eq!(m[key], want, "{flags:?}: {m}");
        assert_eq!(m["clip_x0"], true, "{flags:?}: clipping is on by default: {m}");
    }
    for (flags, needle) in [
        (&["--sampler", "ddim", "--order", "3"][..], "--order 3 applies to unipc only, not ddim"),
        (&["--sampler", "heun", "--eta", "0.5"], "--eta 0.5 applies to ddim only, not heun"),
        (&["--sampler", "ddim", "--sigmas", "karras"], "--sigmas karras applies to dpm-solver++"),
        (
            &["--sampler", "euler", "--skip", "leading"],
            "--skip leading applies to ddim, ddpm only, not euler",
        ),
        (&["--sampler", "unipc", "--order", "4"], "--order must be 1, 2 or 3 for unipc, got 4"),
        (
            &["--sampler", "unipc", "--time-steps", "uniform", "--sigmas", "karras"],
            "--time-steps uniform and --sigmas karras both place unipc's steps",
        ),
    ] {
        fails(&runs, flags, needle);
    }
}
