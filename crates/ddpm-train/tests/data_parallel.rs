//! Data-parallel training with the `ddpm-train` binary on the CPU (Gloo), two ranks of one
//! intra-op thread each, launched the way users launch it: with exactly the variables torchrun
//! gives its workers (`ddpm_testkit::ranks::spawn_ranks`, no venv needed, and the test knows
//! each rank's process id to signal or kill it), and through the venv's own torchrun for
//! `--max-restarts`.
//!
//! What they prove: 2 ranks with half batches take the steps of 1 process with the whole batch
//! (losses and weights within 1e-5; without the gradient all-reduce rank 0's weights would
//! follow its half alone); a run resumes under the other world size where it stopped; a
//! SIGTERM on one rank stops both at the same step with one checkpoint; a killed rank makes
//! the other exit non-zero within seconds naming it, leaving a loadable checkpoint; torchrun
//! `--max-restarts 1` restarts the job from that checkpoint and finishes it, bit for bit as an
//! uninterrupted run.

mod common;

use common::{tiny_config, weights};
use ddpm_nets::ModelConfig;
use ddpm_run::{Checkpoint, RunDir};
use ddpm_testkit::ranks::{Exit, rank_child, spawn_ranks, spawn_srun_tasks, torchrun_exe};
use ddpm_train::{RunConfig, TrainStep};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tch::{Device, Tensor};

const BIN: &str = env!("CARGO_BIN_EXE_ddpm-train");
const LIMIT: Duration = Duration::from_secs(120);

/// Each test runs two processes on a machine of two cores: one test at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The tiny job without dropout (each rank draws its own dropout masks, see ddpm-train's
/// `step` module), one thread, a metrics line per step, checkpoints every `ckpt_every` steps.
fn config(ckpt_every: u64) -> RunConfig {
    let mut c = tiny_config();
    if let ModelConfig::Unet(u) = &mut c.model {
        u.dropout = 0.0;
    }
    c.train.threads = 1;
    c.train.log_every = 1;
    c.train.checkpoint_every = ckpt_every;
    c.train.keep_checkpoints = 100;
    c
}

/// `ddpm-train train` arguments for `config` (written into `dir`) as run `name`.
fn args(config: &RunConfig, dir: &Path, name: &str, steps: u64) -> Vec<String> {
    let path = dir.join("config.toml");
    std::fs::write(&path, config.to_toml()).unwrap();
    let s = |p: &Path| p.display().to_string();
    let steps = steps.to_string();
    ["train", "--config", &s(&path), "--name", name, "--steps", &steps, "--runs-dir", &s(dir)]
        .map(String::from)
        .to_vec()
}

/// One process, no launcher.
fn train_one(config: &RunConfig, dir: &Path, name: &str, steps: u64) {
    let out = Command::new(BIN)
        .args(args(config, dir, name, steps))
        .env("OMP_NUM_THREADS", "1")
        .env_remove("RANK")
        .env_remove("WORLD_SIZE")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Two ranks; both must finish.
fn train_two(config: &RunConfig, dir: &Path, name: &str, steps: u64) -> Vec<Exit> {
    let exits =
        spawn_ranks(Path::new(BIN), &args(config, dir, name, steps), 2, dir, &[]).wait(LIMIT);
    for (r, e) in exits.iter().enumerate() {
        assert_eq!(e.code, Some(0), "rank {r}:\n{}", e.output);
    }
    exits
}

/// (step, loss) of every line of the run's metrics.jsonl.
fn losses(run: &RunDir) -> Vec<(u64, f64)> {
    let lines = ddpm_train::metrics::read_metrics(&run.metrics_path()).unwrap();
    lines.iter().map(|l| (l.step, l.loss)).collect()
}

/// The model's and the EMA's weights in checkpoint `path`.
fn checkpoint_weights(config: &RunConfig, path: &Path) -> Vec<(String, Tensor)> {
    let file = Checkpoint::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let step = TrainStep::new(config, Device::Cpu).unwrap();
    file.load_weights(&step.vs, false).unwrap();
    file.load_weights(&step.ema_vs, true).unwrap();
    let mut all = weights(&step.vs);
    all.extend(weights(&step.ema_vs).into_iter().map(|(n, t)| (format!("ema/{n}"), t)));
    all
}

fn newest(run: &RunDir) -> (u64, PathBuf) {
    run.list_checkpoints().pop().expect("a checkpoint")
}

/// How far two runs are apart.
#[derive(Debug)]
struct Gap {
    /// Largest relative difference of the losses at the steps compared.
    loss: f64,
    /// ||a - b|| / ||b|| over all the weights of the model, and of the EMA (the larger).
    weights_l2: f64,
    /// Largest |a - b| of any weight over the largest |b| of the model (or the EMA). Dominated by
    /// the attention key biases, whose gradient is zero in exact arithmetic (softmax ignores a
    /// shift common to a query's logits): Adam turns their round-off gradients (~1e-12) into
    /// steps of lr * g / eps, different in every summation order.
    weights_max: f64,
    identical: bool,
}

/// How run `a` differs from `b`: losses after `from_step`, and the newest checkpoints' weights.
fn compare(a: &RunDir, b: &RunDir, config: &RunConfig, from_step: u64) -> Gap {
    let (la, lb) = (losses(a), losses(b));
    let lb: std::collections::HashMap<u64, f64> = lb.into_iter().collect();
    let mut loss: f64 = 0.0;
    let mut compared = 0;
    for (step, x) in la.iter().filter(|(s, _)| *s > from_step) {
        let y = lb.get(step).unwrap_or_else(|| panic!("no loss at step {step}"));
        loss = loss.max((x - y).abs() / y.abs());
        compared += 1;
    }
    assert!(compared >= 10, "{compared} steps compared");
    let (wa, wb) =
        (checkpoint_weights(config, &newest(a).1), checkpoint_weights(config, &newest(b).1));
    assert_eq!(wa.len(), wb.len());
    let mut gap = Gap { loss, weights_l2: 0.0, weights_max: 0.0, identical: true };
    for ema in [false, true] {
        let (mut diff2, mut norm2, mut diff_max, mut scale): (f64, f64, f64, f64) =
            (0., 0., 0., 0.);
        for ((na, ta), (nb, tb)) in
            wa.iter().zip(&wb).filter(|((n, _), _)| n.starts_with("ema/") == ema)
        {
            assert_eq!(na, nb);
            let d = (ta - tb).to_kind(tch::Kind::Double);
            diff2 += d.square().sum(tch::Kind::Double).double_value(&[]);
            norm2 +=
                tb.to_kind(tch::Kind::Double).square().sum(tch::Kind::Double).double_value(&[]);
            diff_max = diff_max.max(d.abs().max().double_value(&[]));
            scale = scale.max(tb.abs().max().double_value(&[]));
            gap.identical &= ta.equal(tb);
        }
        gap.weights_l2 = gap.weights_l2.max((diff2 / norm2).sqrt());
        gap.weights_max = gap.weights_max.max(diff_max / scale);
    }
    gap
}

fn assert_close(what: &str, gap: &Gap) {
    println!(
        "{what}: losses within {:.1e}, weights (model and EMA) within {:.1e} (L2) and {:.1e} \
         (largest element); bit-identical: {}",
        gap.loss, gap.weights_l2, gap.weights_max, gap.identical
    );
    assert!(
        gap.loss <= 1e-5 && gap.weights_l2 <= 1e-5 && gap.weights_max <= 1e-5,
        "{what}: {gap:?}"
    );
}

#[test]
fn two_ranks_with_half_batches_take_the_steps_of_one_process_with_the_whole_batch() {
    let _one_at_a_time = serial();
    let dir = ddpm_testkit::temp_dir("ddp-equal");
    let mut c = config(1000);
    assert_eq!(c.optim.batch_size, 16);
    // Previews at steps 10 and 20, 5 images: 3 sampled by rank 0, 2 by rank 1.
    c.train.sample_every = 10;
    c.train.sample_count = 5;
    train_one(&c, &dir, "one", 20);
    let exits = train_two(&c, &dir, "two", 20);
    let (one, two) = (RunDir::new(dir.join("one")), RunDir::new(dir.join("two")));
    // Rank 0 alone writes: one metrics line per step, one final checkpoint, and rank 1 is quiet.
    assert_eq!(losses(&two).iter().map(|l| l.0).collect::<Vec<_>>(), (1..=20).collect::<Vec<_>>());
    assert_eq!(two.list_checkpoints().iter().map(|c| c.0).collect::<Vec<_>>(), vec![20]);
    assert!(exits[0].output.contains("(2 ranks, gloo)"), "{}", exits[0].output);
    assert!(!exits[1].output.contains("checkpoint"), "rank 1 wrote:\n{}", exits[1].output);
    assert_close("2 ranks x 8 vs 1 process x 16, 20 steps", &compare(&two, &one, &c, 0));
    // The runs trained: the loss fell.
    let l = losses(&two);
    assert!(l[19].1 < 0.8 * l[0].1, "{l:?}");
    // Each rank sampled its share of the preview; rank 0's gathered grid is one process's
    // (within one grey level: the network ran on batches of 3 and 2 rather than 5).
    for step in [10, 20] {
        let grid = |run: &RunDir| {
            image::open(run.preview_path(step, "png")).unwrap().to_luma8().into_raw()
        };
        let (a, b) = (grid(&one), grid(&two));
        assert_eq!(a.len(), b.len());
        let worst = a.iter().zip(&b).map(|(x, y)| x.abs_diff(*y)).max().unwrap();
        assert!(worst <= 1, "step {step}: previews differ by {worst} grey levels");
        assert!(a.iter().any(|&v| v != a[0]), "the preview is not blank");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Importance-sampled timesteps (improved-diffusion's loss-second-moment): every rank records
/// the losses of the whole global batch (gathered by an all-reduce each step), so the history,
/// and with it the timesteps drawn once it is full, follow one process's.
#[test]
fn importance_sampling_keeps_one_history_across_ranks() {
    let _one_at_a_time = serial();
    let dir = ddpm_testkit::temp_dir("ddp-importance");
    let mut c = config(1000);
    // T = 10 with 10 losses per t: the history is full after 7 steps of 16.
    c.diffusion.steps = 10;
    c.diffusion.timestep_sampler = ddpm_core::TimestepSamplerKind::LossSecondMoment;
    (c.train.sample_steps, c.train.eval_steps) = (5, 5);
    train_one(&c, &dir, "one", 20);
    train_two(&c, &dir, "two", 20);
    let (one, two) = (RunDir::new(dir.join("one")), RunDir::new(dir.join("two")));
    assert_close("importance sampling, 2 ranks vs 1 process", &compare(&two, &one, &c, 0));
    let history = |run: &RunDir| {
        let file = Checkpoint::open(&newest(run).1).unwrap();
        file.meta.timestep_sampler.expect("sampler state").loss_history
    };
    let (h1, h2) = (history(&one), history(&two));
    assert!(h1.iter().all(|h| h.len() == 10), "the history filled up: {h1:?}");
    for (t, (a, b)) in h1.iter().zip(&h2).enumerate() {
        assert_eq!(a.len(), b.len(), "t = {t}");
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= 1e-5 * y.abs(), "t = {t}: {x} vs {y}");
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `torchrun --nproc-per-node 1` (WORLD_SIZE=1 with a store address): a one-rank Gloo group
/// whose collectives really run, training exactly as a process without a launcher.
#[test]
fn one_rank_under_a_launcher_forms_a_group_and_trains_as_one_process() {
    let _one_at_a_time = serial();
    let dir = ddpm_testkit::temp_dir("ddp-one-rank");
    let c = config(1000);
    train_one(&c, &dir, "plain", 12);
    let exits = spawn_ranks(Path::new(BIN), &args(&c, &dir, "group", 12), 1, &dir, &[]).wait(LIMIT);
    assert_eq!(exits[0].code, Some(0), "{}", exits[0].output);
    assert!(exits[0].output.contains("(1 ranks, gloo)"), "{}", exits[0].output);
    let (plain, group) = (RunDir::new(dir.join("plain")), RunDir::new(dir.join("group")));
    let gap = compare(&group, &plain, &c, 2);
    assert!(gap.identical && gap.loss == 0.0, "{gap:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Regression: `srun --ntasks 2 ddpm-train train ...` without torchrun started two
/// independent trainers writing one run directory. srun's tasks now form one group of two
/// ranks and take the steps of one process with the whole batch.
#[test]
fn srun_tasks_without_torchrun_form_one_group() {
    let _one_at_a_time = serial();
    let dir = ddpm_testkit::temp_dir("ddp-srun");
    let c = config(1000);
    train_one(&c, &dir, "one", 12);
    let exits =
        spawn_srun_tasks(Path::new(BIN), &args(&c, &dir, "srun", 12), 2, &dir, &[]).wait(LIMIT);
    for (r, e) in exits.iter().enumerate() {
        assert_eq!(e.code, Some(0), "task {r}:\n{}", e.output);
    }
    assert!(exits[0].output.contains("(2 ranks, gloo)"), "{}", exits[0].output);
    assert!(!exits[1].output.contains("checkpoint"), "task 1 wrote:\n{}", exits[1].output);
    let (one, srun) = (RunDir::new(dir.join("one")), RunDir::new(dir.join("srun")));
    assert_eq!(losses(&srun).len(), 12, "one metrics line per step, from rank 0 alone");
    assert_close("2 srun tasks x 8 vs 1 process x 16, 12 steps", &compare(&srun, &one, &c, 0));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Regression: evaluation (and the preview) during data-parallel training ran on rank 0 alone
/// while the other ranks went on into the next step's collectives, so an evaluation or a
/// preview longer than the process group's timeout ended the job. Here the timeout is 75 % of
/// one rank's share of an evaluation (half of what one process took, measured first), so each
/// evaluation and each preview takes longer than the timeout even shared between two ranks,
/// and the ranks may still drift apart by 75 % of their share before a collective waits that
/// long (a fixed 3 s against shares of 9 s failed once on a loaded 2-core CI machine); the job
/// finishes, and the metric equals one process's.
#[test]
fn an_evaluation_longer_than_the_group_timeout_is_shared_and_the_job_goes_on() {
    let _one_at_a_time = serial();
    let dir = ddpm_testkit::temp_dir("ddp-eval-timeout");
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../configs/swissroll.toml");
    let mut c = RunConfig::load(&path).unwrap();
    c.train.threads = 1;
    c.train.log_every = 1;
    c.train.sample_every = 2;
    c.train.sample_count = 16_000;
    c.train.sample_sampler = ddpm_sample::SamplerKind::Ddpm;
    c.train.sample_steps = 100;
    c.train.eval_every = 2;
    c.train.eval_samples = 16_000;
    c.train.eval_sampler = ddpm_sample::SamplerKind::Ddpm;
    c.train.eval_steps = 100;
    c.train.eval_batch_size = 5000;
    let evals = |name: &str| {
        ddpm_train::eval_log::read_evals(&RunDir::new(dir.join(name)).eval_log_path()).unwrap()
    };
    train_one(&c, &dir, "one", 4);
    let one = evals("one");
    let alone = one.iter().map(|l| l.seconds.unwrap()).fold(f64::INFINITY, f64::min);
    let timeout = 0.75 * alone / 2.0;
    assert!(timeout >= 1.0, "one process evaluated in {alone:.1} s: too fast to test a timeout");
    c.train.dist_timeout_minutes = timeout / 60.0;
    let exits = train_two(&c, &dir, "two", 4);
    let two = evals("two");
    assert_eq!(two.iter().map(|l| l.step).collect::<Vec<_>>(), vec![2, 4], "{}", exits[0].output);
    for (a, b) in one.iter().zip(&two) {
        let seconds = b.seconds.unwrap();
        println!(
            "step {}: one process {:.1} s, shared {seconds:.1} s, timeout {timeout:.1} s",
            b.step,
            a.seconds.unwrap()
        );
        assert!(
            seconds > timeout,
            "the shared evaluation took {seconds:.1} s, not past the {timeout:.1} s timeout"
        );
        assert!((a.value - b.value).abs() <= 1e-4 * a.value.abs(), "{a:?} vs {b:?}");
    }
    // The previews: every rank's share gathered, so the plot holds one process's samples
    // (those inside the plot's limits, counted; the same count within 1 %).
    for step in [2, 4] {
        let drawn = |name: &str| {
            let run = RunDir::new(dir.join(name));
            let svg = std::fs::read_to_string(run.preview_path(step, "svg")).unwrap();
            svg.matches("fill=\"#d62728\"").count() as f64
        };
        let (a, b) = (drawn("one"), drawn("two"));
        assert!(a > 8_000.0 && (a - b).abs() <= 0.01 * a, "step {step}: {a} vs {b} samples drawn");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_run_resumes_under_the_other_world_size_where_it_stopped() {
    let _one_at_a_time = serial();
    let dir = ddpm_testkit::temp_dir("ddp-resume");
    let c = config(10);
    train_one(&c, &dir, "straight", 20);
    // Two ranks to step 10, then one process to 20; and the other way round.
    train_two(&c, &dir, "two-then-one", 10);
    let state = Checkpoint::open(&newest(&RunDir::new(dir.join("two-then-one"))).1).unwrap();
    assert_eq!((state.step(), state.meta.loader.position), (10, 10), "global batches");
    train_one(&c, &dir, "two-then-one", 20);
    train_one(&c, &dir, "one-then-two", 10);
    train_two(&c, &dir, "one-then-two", 20);
    let straight = RunDir::new(dir.join("straight"));
    for name in ["two-then-one", "one-then-two"] {
        let run = RunDir::new(dir.join(name));
        assert_eq!(newest(&run).0, 20);
        assert_close(
            &format!("{name} vs one process, steps 11-20"),
            &compare(&run, &straight, &c, 10),
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Starts two ranks on a long run and waits until its first checkpoint exists.
fn start_long_run(dir: &Path, name: &str) -> (ddpm_testkit::ranks::Ranks, RunDir) {
    let c = config(10);
    let ranks = spawn_ranks(Path::new(BIN), &args(&c, dir, name, 1_000_000), 2, dir, &[]);
    let run = RunDir::new(dir.join(name));
    let start = Instant::now();
    while run.list_checkpoints().is_empty() {
        assert!(
            start.elapsed() < LIMIT,
            "no checkpoint:\n{}\n{}",
            ranks.output(0),
            ranks.output(1)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (ranks, run)
}

#[test]
fn sigterm_on_one_rank_stops_both_at_one_step_with_one_checkpoint() {
    let _one_at_a_time = serial();
    let dir = ddpm_testkit::temp_dir("ddp-sigterm");
    let (ranks, run) = start_long_run(&dir, "term");
    ranks.signal(1, "TERM");
    let exits = ranks.wait(LIMIT);
    for (r, e) in exits.iter().enumerate() {
        assert_eq!(e.code, Some(0), "rank {r} after SIGTERM on rank 1:\n{}", e.output);
    }
    let (step, path) = newest(&run);
    let said = format!("interrupted at step {step}; checkpoint written");
    assert!(exits[0].output.contains(&said), "{}", exits[0].output);
    let written = exits[0].output.matches(&path.display().to_string()).count();
    assert_eq!(written, 1, "checkpoint {step} written {written} times");
    assert!(!exits[1].output.contains("checkpoint"), "{}", exits[1].output);
    Checkpoint::open(&path).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_killed_rank_makes_the_other_exit_naming_it_and_the_newest_checkpoint_loads() {
    let _one_at_a_time = serial();
    let dir = ddpm_testkit::temp_dir("ddp-kill");
    let (ranks, run) = start_long_run(&dir, "kill");
    let killed_at = Instant::now();
    ranks.signal(1, "KILL");
    let exits = ranks.wait(LIMIT);
    let e = &exits[0];
    let took = e.at - killed_at;
    println!("rank 0 exited {took:?} after rank 1 was killed: {}", last_line(&e.output));
    assert!(e.code.is_some_and(|c| c != 0), "rank 0 exited {:?}:\n{}", e.code, e.output);
    assert!(e.output.contains("rank 1 did not report"), "{}", e.output);
    // The failure is seen at once; the survivors then wait 5 s (failure_grace) for each other.
    assert!(took < Duration::from_secs(30), "rank 0 took {took:?} to exit");
    let (step, path) = newest(&run);
    assert!(step >= 10 && step.is_multiple_of(10), "{step}");
    let w = checkpoint_weights(&config(10), &path);
    assert!(w.iter().all(|(_, t)| t.isfinite().all().int64_value(&[]) == 1));
    std::fs::remove_dir_all(&dir).unwrap();
}

fn last_line(s: &str) -> &str {
    s.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("")
}

/// torchrun restarts both ranks after one is killed (`--max-restarts 1`): they resume from the
/// newest checkpoint in a fresh store namespace and finish, with the weights an uninterrupted
/// two-rank run reaches.
#[test]
#[ignore = "needs the Python venv: run `cargo xtask test`"]
fn torchrun_max_restarts_resumes_from_the_newest_checkpoint_after_a_rank_is_killed() {
    let _one_at_a_time = serial();
    let dir = ddpm_testkit::temp_dir("ddp-torchrun");
    let c = config(10);
    let steps = 60;
    let log = dir.join("torchrun.log");
    let mut torchrun = Command::new(torchrun_exe())
        .args(["--standalone", "--nproc-per-node", "2", "--max-restarts", "1", "--no-python", BIN])
        .args(args(&c, &dir, "restarted", steps))
        .env("OMP_NUM_THREADS", "1")
        .env("RUST_LOG", "info")
        .env_remove("RANK")
        .env_remove("WORLD_SIZE")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(dir.join("torchrun.err")).unwrap())
        .spawn()
        .unwrap();
    let run = RunDir::new(dir.join("restarted"));
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap_or_default();
    let start = Instant::now();
    let victim = loop {
        assert!(start.elapsed() < LIMIT, "no checkpoint:\n{}", read("torchrun.err"));
        if !run.list_checkpoints().is_empty()
            && let Some(pid) = rank_child(torchrun.id(), 1)
        {
            break pid;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let killed_after = newest(&run).0;
    assert!(killed_after < steps, "the run finished before the kill");
    assert!(Command::new("kill").args(["-KILL", &victim.to_string()]).status().unwrap().success());
    let code = loop {
        if let Some(status) = torchrun.try_wait().unwrap() {
            break status.code();
        }
        if start.elapsed() > 2 * LIMIT {
            let _ = torchrun.kill();
            panic!("torchrun still running:\n{}", read("torchrun.err"));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let err = read("torchrun.err");
    assert_eq!(code, Some(0), "{err}");
    let resumed = err
        .lines()
        .find_map(|l| l.split("from step ").nth(1)?.trim().parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no resume after the restart:\n{err}"));
    assert!(resumed >= killed_after && resumed < steps, "resumed from {resumed}");
    assert_eq!(newest(&run).0, steps);
    // The same run without the failure.
    train_two(&c, &dir, "uninterrupted", steps);
    let gap = compare(&run, &RunDir::new(dir.join("uninterrupted")), &c, 0);
    println!(
        "killed rank 1 after checkpoint {killed_after}, restarted from {resumed}: losses within \
         {:.1e}, weights bit-identical to an uninterrupted run: {}",
        gap.loss, gap.identical
    );
    assert!(gap.identical && gap.loss == 0.0, "{gap:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}
