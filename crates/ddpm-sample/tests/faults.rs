//! Fault injection into sampling, through the `ddpm-sample` binary:
//!
//! - `kill -9` at random points of a sharded job (`--start 16 -n 16`, batches of 2): after
//!   every kill each part written so far is whole, and the job run again to the end gives
//!   samples equal to an uninterrupted job's, byte for byte.
//! - A damaged checkpoint (a flipped data byte, a flipped header byte, a cut): exit code 2 and
//!   one line naming the file, never a panic (the library-level sweep over 20 offsets is in
//!   ddpm-run's `tests/faults.rs`).

#![cfg(unix)]

use ddpm_core::rng::SplitMix64;
use ddpm_io::npy;
use ddpm_testkit::temp_dir;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

/// The tiny model trained for 3 steps: the runs directory (run "tiny").
fn trained() -> PathBuf {
    let runs = temp_dir("faults-sample-runs");
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../configs/tiny.toml");
    let mut c = ddpm_train::RunConfig::load(&path).unwrap();
    c.train.total_steps = 3;
    c.train.threads = 1;
    let mut t = ddpm_train::Trainer::new(c, &runs, tch::Device::Cpu).unwrap();
    t.train(&AtomicBool::new(false), &mut ddpm_train::LogProgress).unwrap();
    runs
}

fn sample(runs: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ddpm-sample"));
    c.args(["sample", "--device", "cpu", "--no-png", "--runs-dir"])
        .arg(runs)
        .arg("--out")
        .arg(out)
        .args(extra)
        // One intra-op thread: on two shared cores spinning workers make timings erratic.
        .env("OMP_NUM_THREADS", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

fn parts(out: &Path) -> Vec<String> {
    std::fs::read_dir(out.join("parts"))
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}

#[test]
fn kill_9_during_a_sharded_job_then_resuming_gives_the_uninterrupted_samples() {
    let runs = trained();
    let dir = temp_dir("faults-sample");
    let job = [
        "--checkpoint",
        "tiny",
        "--sampler",
        "ddpm",
        "--steps",
        "100",
        "--seed",
        "3",
        "--start",
        "16",
        "-n",
        "16",
        "--batch-size",
        "2",
    ];
    let whole = dir.join("whole");
    let o = sample(&runs, &whole, &job).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let cut = dir.join("cut");
    let mut rng = SplitMix64::new(99);
    let mut kills = 0;
    for i in 0..6 {
        let mut child: Child = sample(&runs, &cut, &job).spawn().unwrap();
        let started = Instant::now();
        if i % 2 == 0 {
            // Right after this process's k-th new part.
            let have = parts(&cut).len();
            let k = 1 + rng.below(3) as usize;
            while parts(&cut).iter().filter(|p| p.ends_with(".npy")).count() < have + k {
                assert!(started.elapsed() < Duration::from_secs(60), "no part written");
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            std::thread::sleep(Duration::from_millis(rng.below(30)));
        } else {
            std::thread::sleep(Duration::from_millis(rng.below(700)));
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        let _ = child.kill();
        let _ = child.wait();
        kills += 1;
        // Every part on disk is whole: 2 images of 1 x 8 x 8.
        for name in parts(&cut).iter().filter(|n| n.starts_with("part-")) {
            let a = npy::read::<f32>(&cut.join("parts").join(name), None)
                .unwrap_or_else(|e| panic!("kill {i}: {name}: {e}"));
            assert_eq!(a.shape, vec![2, 1, 8, 8], "kill {i}: {name}");
        }
        assert!(!cut.join("samples.npz").exists() || parts(&cut).is_empty());
    }
    assert!(kills >= 4, "only {kills} kills landed before the job finished");
    let o = sample(&runs, &cut, &job).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        std::fs::read(cut.join("samples.npz")).unwrap(),
        std::fs::read(whole.join("samples.npz")).unwrap(),
        "the resumed job's samples differ from the uninterrupted job's"
    );
    assert!(!cut.join("parts").exists());
}

#[test]
fn damaged_checkpoints_are_one_line_errors_naming_the_file() {
    let runs = trained();
    let ckpt = runs.join("tiny/checkpoints/ckpt-000000003.safetensors");
    let good = std::fs::read(&ckpt).unwrap();
    let header = 8 + u64::from_le_bytes(good[..8].try_into().unwrap()) as usize;
    let dir = temp_dir("faults-sample-ckpt");
    let flip = |i: usize| {
        let mut b = good.clone();
        b[i] ^= 0x40;
        b
    };
    for (what, bytes, needle) in [
        ("data byte", flip(header + (good.len() - header) / 2), "damaged: checksum"),
        ("header byte", flip(header / 2), ""),
        ("cut", good[..good.len() - 7].to_vec(), "truncated"),
    ] {
        let file = dir.join("damaged.safetensors");
        std::fs::write(&file, &bytes).unwrap();
        // The damaged file given by path, beside the run's config.
        let pinned = runs.join("tiny/checkpoints/damaged.safetensors");
        std::fs::copy(&file, &pinned).unwrap();
        let out = dir.join("never");
        let o = sample(&runs, &out, &["--checkpoint", pinned.to_str().unwrap(), "-n", "1"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{what}: {err}");
        let last = err.lines().last().unwrap();
        assert!(
            last.starts_with("error:") && last.contains("damaged.safetensors"),
            "{what}: {err}"
        );
        assert!(last.contains(needle), "{what}: {err}");
        assert!(!err.contains("panicked"), "{what}: {err}");
        std::fs::remove_file(&pinned).unwrap();
    }
}
