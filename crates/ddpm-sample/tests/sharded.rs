//! `ddpm-sample sample` on two CPU ranks (Gloo, one thread each), launched with the variables
//! torchrun gives its workers: each rank samples its share of the batches into the same
//! folder and rank 0 assembles `samples.npz`; the result is one process's, byte for byte, the
//! PNGs included. The same job rerun into that folder under another world size changes nothing.

use ddpm_testkit::ranks::spawn_ranks;
use ddpm_testkit::temp_dir;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_ddpm-sample");

/// A tiny model trained for a few steps; returns the runs directory (run "tiny").
fn trained(dir: &Path) -> PathBuf {
    let runs = dir.join("runs");
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../configs/tiny.toml");
    let mut c = ddpm_train::RunConfig::load(&path).unwrap();
    c.train.total_steps = 3;
    c.train.sample_every = 0;
    let mut t = ddpm_train::Trainer::new(c, &runs, tch::Device::Cpu).unwrap();
    t.train(&AtomicBool::new(false), &mut ddpm_train::LogProgress).unwrap();
    runs
}

/// Every file under `dir` (relative path, bytes), sorted.
fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p.strip_prefix(dir).unwrap().to_path_buf(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn two_ranks_write_what_one_process_writes() {
    let dir = temp_dir("sample-sharded");
    let runs = trained(&dir);
    // 11 images in batches of 3: 4 batches, the last one short; 2 per rank.
    let args = |out: &str| -> Vec<String> {
        let (runs, out) = (runs.display().to_string(), dir.join(out).display().to_string());
        #[rustfmt::skip]
        let a = [
            "sample", "--checkpoint", "tiny", "--runs-dir", &runs, "--device", "cpu",
            "--sampler", "ddpm", "--steps", "10", "-n", "11", "--batch-size", "3", "--seed", "5",
            "--out", &out,
        ];
        a.map(String::from).to_vec()
    };
    let one = Command::new(BIN)
        .args(args("one"))
        .env("OMP_NUM_THREADS", "1")
        .env_remove("RANK")
        .env_remove("WORLD_SIZE")
        .output()
        .unwrap();
    assert!(one.status.success(), "{}", String::from_utf8_lossy(&one.stderr));
    let limit = Duration::from_secs(120);
    let exits = spawn_ranks(Path::new(BIN), &args("two"), 2, &dir, &[]).wait(limit);
    for (r, e) in exits.iter().enumerate() {
        assert_eq!(e.code, Some(0), "rank {r}:\n{}", e.output);
    }
    assert!(exits[0].output.contains("2 ranks over gloo"), "{}", exits[0].output);
    let (a, b) = (files(&dir.join("one")), files(&dir.join("two")));
    let names: Vec<_> = a.iter().map(|(p, _)| p.display().to_string()).collect();
    assert_eq!(names.len(), 14, "manifest, samples.npz, grid.png and 11 PNGs: {names:?}");
    assert_eq!(
        names,
        b.iter().map(|(p, _)| p.display().to_string()).collect::<Vec<_>>(),
        "the same files"
    );
    for ((p, x), (_, y)) in a.iter().zip(&b) {
        assert!(x == y, "{} differs between 1 process and 2 ranks", p.display());
    }
    // The same job again into the one-process folder, as two ranks: its manifest is accepted
    // and the output comes out unchanged.
    let again = spawn_ranks(Path::new(BIN), &args("one"), 2, &dir, &[]).wait(limit);
    assert!(again.iter().all(|e| e.code == Some(0)), "{}", again[0].output);
    assert_eq!(files(&dir.join("one")), a);
    std::fs::remove_dir_all(&dir).unwrap();
}
