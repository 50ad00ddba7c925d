//! Fault injection into training, through the `ddpm-train` binary:
//!
//! - `kill -9` at 20 random points of a run on the tiny config (checkpoints every 2 steps, so
//!   that kills land in writes): startup and resume, mid-step, and mid-checkpoint-write (the
//!   kill sent the moment the writer's temporary file appears). After every kill each
//!   checkpoint file opens and verifies, the listing resume uses holds no temporary debris,
//!   and the next start resumes from the newest checkpoint; in the end the weights, EMA and
//!   Adam moments equal an uninterrupted run's bit for bit (CPU).
//! - A checkpoint write that fails: tests run as root, where a read-only directory stops no
//!   one, so the failure is injected by what sits at the writer's temporary path
//!   (`.ckpt-<step>.safetensors.tmp-<pid>`): a symbolic link to `/dev/full` (every write fails
//!   with ENOSPC, a full disk) in the binary's run, a directory (EISDIR) in the library's.
//!   Training stops with a one-line error naming the file, the previous checkpoint stays
//!   intact, and once the fault is gone the same command resumes from it.
//! - Corrupted data files given to `--data` (CIFAR-10, MNIST): exit code 2 and one line naming
//!   the file, never a panic, and no run directory (the library-level sweep over 20 offsets is
//!   in ddpm-data's `tests/faults.rs`).

#![cfg(unix)]

mod common;

use common::tiny_config;
use ddpm_core::rng::SplitMix64;
use ddpm_run::{Checkpoint, RunDir};
use ddpm_train::RunConfig;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ddpm-train"));
    c.env("RUST_LOG", "info");
    c
}

/// Writes `config` as the TOML file `path`.
fn config_file(path: PathBuf, config: &RunConfig) -> PathBuf {
    std::fs::write(&path, config.to_toml()).unwrap();
    path
}

/// Starts `ddpm-train train` on `config` under `runs`, its stderr into `log`.
fn start(config: &Path, runs: &Path, log: &Path) -> Child {
    bin()
        .args(["train", "--config"])
        .arg(config)
        .arg("--runs-dir")
        .arg(runs)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

fn kill9(child: &mut Child) {
    // SIGKILL: no handler runs, nothing is flushed or cleaned up.
    let _ = child.kill();
    let _ = child.wait();
}

/// The temporary files in `dir` that the process `pid` was writing.
fn temporaries_of(dir: &Path, pid: u32) -> Vec<String> {
    let suffix = format!(".tmp-{pid}");
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(&suffix))
                .collect()
        })
        .unwrap_or_default()
}

/// Where process `pid` writes `path` before renaming it (`ddpm_io::atomic::temp_path`'s name).
fn temp_of(path: &Path, pid: u32) -> PathBuf {
    path.with_file_name(format!(".{}.tmp-{pid}", path.file_name().unwrap().to_string_lossy()))
}

/// The step of the "resumed <dir> from step N" line of a log, if the process got that far.
fn resumed_from(log: &str) -> Option<u64> {
    let line = log.lines().find(|l| l.contains("resumed "))?;
    let at = line.find("from step ")? + "from step ".len();
    line[at..].split_whitespace().next()?.parse().ok()
}

/// Every tensor and the step and data position of two checkpoints agree exactly.
fn assert_same_checkpoint(a: &Path, b: &Path) {
    let (fa, fb) = (Checkpoint::open(a).unwrap(), Checkpoint::open(b).unwrap());
    assert_eq!((fa.meta.step, fa.meta.loader), (fb.meta.step, fb.meta.loader));
    let (ta, tb) = (
        ddpm_nets::tensorfile::TensorFile::open(a).unwrap(),
        ddpm_nets::tensorfile::TensorFile::open(b).unwrap(),
    );
    assert_eq!(ta.tensors.keys().collect::<Vec<_>>(), tb.tensors.keys().collect::<Vec<_>>());
    for name in ta.tensors.keys() {
        assert_eq!(ta.raw(name), tb.raw(name), "{name} differs from the uninterrupted run's");
    }
}

/// Regression guard for the promise "a kill never costs more than the steps since the last
/// checkpoint, and never a wrong resume".
#[test]
fn kill_9_at_random_points_resumes_from_the_newest_checkpoint_and_ends_bit_identical() {
    let dir = ddpm_testkit::temp_dir("faults-kill");
    let mut config = tiny_config();
    config.name = "killed".into();
    config.train.total_steps = 60;
    config.train.checkpoint_every = 2;
    config.train.keep_checkpoints = 2;
    config.train.log_every = 10;
    // One thread: on two shared cores, libtorch's spinning worker threads make steps erratic.
    config.train.threads = 1;
    let cfg = config_file(dir.join("run.toml"), &config);

    // The uninterrupted run (checkpoints change nothing but the files: one at the end).
    let reference = dir.join("reference");
    let mut once = config.clone();
    once.train.checkpoint_every = 60;
    let reference_cfg = config_file(dir.join("reference.toml"), &once);
    let status = start(&reference_cfg, &reference, &dir.join("reference.log")).wait().unwrap();
    assert!(status.success(), "{}", std::fs::read_to_string(dir.join("reference.log")).unwrap());

    let runs = dir.join("runs");
    let run = RunDir::new(runs.join("killed"));
    let newest = || run.list_checkpoints().last().map(|(s, _)| *s);
    let mut rng = SplitMix64::new(2024);
    let mut mid_write = 0;
    for i in 0..20 {
        let before = newest();
        let log = dir.join(format!("kill-{i}.log"));
        let mut child = start(&cfg, &runs, &log);
        let pid = child.id();
        let started = Instant::now();
        let deadline = Duration::from_secs(60);
        match i % 4 {
            // The moment a checkpoint write has begun (the first or second of this process).
            0 | 3 => {
                let k = if i % 4 == 0 { 1 + rng.below(2) } else { 1 };
                let mut seen = 0;
                let mut last: Vec<String> = vec![];
                loop {
                    let now = temporaries_of(&run.checkpoints_dir(), pid);
                    if !now.is_empty() && now != last {
                        seen += 1;
                        if seen == k {
                            break;
                        }
                    }
                    last = now;
                    assert!(started.elapsed() < deadline, "kill {i}: no checkpoint write seen");
                    assert!(child.try_wait().unwrap().is_none(), "kill {i}: the run ended");
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
            // Anywhere in the first 450 ms: start-up, loading, resuming, first steps.
            1 => std::thread::sleep(Duration::from_millis(rng.below(450))),
            // Mid-training: between steps after this process's first new checkpoint.
            _ => {
                let target = before.unwrap_or(0) + 2;
                while newest().unwrap_or(0) < target {
                    assert!(started.elapsed() < deadline, "kill {i}: no progress");
                    std::thread::sleep(Duration::from_millis(1));
                }
                std::thread::sleep(Duration::from_millis(rng.below(40)));
            }
        }
        assert!(child.try_wait().unwrap().is_none(), "kill {i}: the run ended before the kill");
        kill9(&mut child);
        eprintln!(
            "TIMING kill {i} mode {} after {:?}, newest {:?}",
            i % 4,
            started.elapsed(),
            newest()
        );
        if !temporaries_of(&run.checkpoints_dir(), pid).is_empty() {
            mid_write += 1;
        }
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(!text.contains("passing over"), "kill {i}: a damaged checkpoint: {text}");
        // The restart that was killed resumed from what was newest when it started.
        if let Some(step) = resumed_from(&text) {
            assert_eq!(Some(step), before, "kill {i}: resumed from {step}, newest was {before:?}");
        } else if before.is_some() {
            assert_eq!(newest(), before, "kill {i}: trained on without saying where it resumed");
        }
        // Whatever the kill interrupted: every checkpoint file is whole, and what resume
        // lists is checkpoint files only.
        for (step, path) in run.list_checkpoints() {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            assert_eq!(name, format!("ckpt-{step:09}.safetensors"), "kill {i}");
            let f = Checkpoint::open(&path)
                .unwrap_or_else(|e| panic!("kill {i}: {name} is damaged: {e}"));
            assert_eq!(f.step(), step);
        }
    }
    assert!(mid_write >= 5, "only {mid_write} of 20 kills landed in a checkpoint write");

    // The same command once more runs to the end from the newest checkpoint.
    let before = newest();
    let log = dir.join("final.log");
    let status = start(&cfg, &runs, &log).wait().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{text}");
    assert_eq!(resumed_from(&text), before, "{text}");
    assert!(before.unwrap() < 60, "the kills left nothing to resume: {before:?}");
    let reference_run = RunDir::new(reference.join("killed"));
    assert_same_checkpoint(&run.checkpoint_path(60), &reference_run.checkpoint_path(60));
    // The debris of the killed writers is gone once a checkpoint was written again.
    let left: Vec<_> = std::fs::read_dir(run.checkpoints_dir())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-"))
        .collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
}

/// A full disk at a checkpoint write: `.ckpt-<step>.safetensors.tmp-<pid>` is a symbolic link
/// to `/dev/full`, so the write fails with ENOSPC as on a full disk.
#[test]
fn a_full_disk_at_a_checkpoint_stops_training_with_one_line_and_keeps_the_last_checkpoint() {
    let dir = ddpm_testkit::temp_dir("faults-full");
    let mut config = tiny_config();
    config.name = "full".into();
    config.train.threads = 1;
    config.train.total_steps = 20;
    config.train.checkpoint_every = 2;
    config.train.keep_checkpoints = 5;
    let cfg = config_file(dir.join("run.toml"), &config);
    let runs = dir.join("runs");
    let run = RunDir::new(runs.join("full"));
    std::fs::create_dir_all(run.checkpoints_dir()).unwrap();
    let log = dir.join("full.log");
    let mut child = start(&cfg, &runs, &log);
    // Every write from step 4 on meets a full disk (the links exist before the first step).
    for step in (4..=20).step_by(2) {
        std::os::unix::fs::symlink("/dev/full", temp_of(&run.checkpoint_path(step), child.id()))
            .unwrap();
    }
    let status = child.wait().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(status.code(), Some(2), "{text}");
    let last = text.lines().last().unwrap();
    assert!(
        last.starts_with("error:")
            && last.contains("ckpt-000000004.safetensors")
            && last.contains("No space left on device"),
        "{text}"
    );
    assert!(!text.contains("panicked"), "{text}");
    // The checkpoint before the failure is intact, and nothing of step 4 was kept.
    let steps: Vec<u64> = run.list_checkpoints().into_iter().map(|(s, _)| s).collect();
    assert_eq!(steps, vec![2]);
    assert_eq!(Checkpoint::open(&run.checkpoint_path(2)).unwrap().step(), 2);
    // With space again, the same command resumes from step 2 and finishes.
    for e in std::fs::read_dir(run.checkpoints_dir()).unwrap().flatten() {
        if e.file_type().unwrap().is_symlink() {
            std::fs::remove_file(e.path()).unwrap();
        }
    }
    let log = dir.join("again.log");
    let status = start(&cfg, &runs, &log).wait().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{text}");
    assert_eq!(resumed_from(&text), Some(2), "{text}");
    assert_eq!(run.list_checkpoints().last().unwrap().0, 20);
}

/// A write that fails in the library: a directory where the temporary file of step 4 goes.
/// `Trainer::train` returns the error naming the file; the step-2 checkpoint keeps its bytes.
#[test]
fn a_failed_checkpoint_write_is_an_error_naming_the_file_and_the_previous_one_stays() {
    let runs = ddpm_testkit::temp_dir("faults-eisdir");
    let mut config = tiny_config();
    config.name = "eisdir".into();
    config.train.threads = 1;
    config.train.total_steps = 6;
    config.train.checkpoint_every = 2;
    let run = RunDir::new(runs.join("eisdir"));
    let mut t = ddpm_train::Trainer::new(config, &runs, tch::Device::Cpu).unwrap();
    let blocked = temp_of(&run.checkpoint_path(4), std::process::id());
    std::fs::create_dir_all(blocked.join("inside")).unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let e = t.train(&stop, &mut ddpm_train::LogProgress).unwrap_err().to_string();
    assert!(e.contains("ckpt-000000004.safetensors") && !e.contains('\n'), "{e}");
    let (steps, path): (Vec<u64>, Vec<PathBuf>) = run.list_checkpoints().into_iter().unzip();
    assert_eq!(steps, vec![2]);
    let before = std::fs::read(&path[0]).unwrap();
    assert_eq!(Checkpoint::open(&path[0]).unwrap().step(), 2);
    drop(t);
    assert_eq!(std::fs::read(&path[0]).unwrap(), before);
}

/// A CIFAR-10 batch and an MNIST IDX file, damaged, given to `--data`: exit code 2, one line
/// naming the file, no panic, and no run directory.
#[test]
fn corrupted_data_files_are_one_line_errors_naming_the_file() {
    let dir = ddpm_testkit::temp_dir("faults-data");
    // CIFAR-10: six files of 4 records; data_batch_2.bin damaged three ways.
    let cifar = dir.join("cifar");
    std::fs::create_dir_all(&cifar).unwrap();
    let mut rng = SplitMix64::new(5);
    let record = |rng: &mut SplitMix64| -> Vec<u8> {
        let mut r = vec![rng.below(10) as u8];
        r.extend((0..3072).map(|_| rng.next_u64() as u8));
        r
    };
    for name in ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5"] {
        let bytes: Vec<u8> = (0..4).flat_map(|_| record(&mut rng)).collect();
        std::fs::write(cifar.join(format!("{name}.bin")), bytes).unwrap();
    }
    let victim = cifar.join("data_batch_2.bin");
    let good = std::fs::read(&victim).unwrap();
    let mut bad_label = good.clone();
    bad_label[3073] = 200;
    // MNIST: 3 images with their labels; the images file damaged.
    let mnist = dir.join("mnist");
    std::fs::create_dir_all(&mnist).unwrap();
    let idx = |magic: u32, dims: &[u32], data: &[u8]| -> Vec<u8> {
        let mut v = magic.to_be_bytes().to_vec();
        dims.iter().for_each(|d| v.extend(d.to_be_bytes()));
        v.extend_from_slice(data);
        v
    };
    let images = idx(2051, &[3, 28, 28], &vec![7u8; 3 * 784]);
    std::fs::write(mnist.join("train-labels-idx1-ubyte"), idx(2049, &[3], &[1, 2, 3])).unwrap();
    let images_path = mnist.join("train-images-idx3-ubyte");
    let mut rows = images.clone();
    rows[11] = 12; // 28 rows -> 12: a shape that is no longer MNIST's
    let cases: Vec<(&Path, &PathBuf, Vec<u8>, &str)> = vec![
        (&cifar, &victim, good[..good.len() - 100].to_vec(), "truncated"),
        (&cifar, &victim, bad_label, "label byte 200"),
        (&mnist, &images_path, images[..images.len() - 1].to_vec(), "truncated"),
        (&mnist, &images_path, images[..10].to_vec(), "too short"),
        (&mnist, &images_path, rows, "12x28"),
    ];
    for (data, file, bytes, needle) in cases {
        std::fs::write(file, &bytes).unwrap();
        let runs = dir.join("runs");
        let out = bin()
            .args(["train", "--config"])
            .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../configs/tiny.toml"))
            .arg("--data")
            .arg(data)
            .arg("--runs-dir")
            .arg(&runs)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{needle}: {err}");
        let last = err.lines().last().unwrap();
        let name = file.file_name().unwrap().to_string_lossy();
        assert!(last.starts_with("error:") && last.contains(&*name), "{needle}: {err}");
        assert!(last.contains(needle), "{needle}: {err}");
        assert!(!runs.exists(), "{needle}: a failed start wrote a run");
    }
    // Whole again, both load.
    std::fs::write(&victim, &good).unwrap();
    std::fs::write(&images_path, &images).unwrap();
    assert_eq!(ddpm_data::cifar::load(&cifar, "train").unwrap().n, 20);
    assert_eq!(ddpm_data::mnist::load(&mnist, "train", None).unwrap().n, 3);
}
