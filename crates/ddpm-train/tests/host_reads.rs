//! No collective and no host read in a data-parallel training step outside logging and
//! checkpoint steps, except the gradient all-reduce itself. Regression: the stop/timed-
//! checkpoint agreement was an all-reduce whose flags were read back to the host in every
//! step. Counted on a one-rank Gloo group in this process (the collectives really run), as the
//! difference between a run of 10 steps and one of 1 step: the 9 extra steps must issue exactly
//! the gradient buckets' all-reduces, and no host read that our code issues (top-level
//! `aten::item` / `aten::_local_scalar_dense`, counted by the shim's operator observer on the
//! training thread; PyTorch's CPU `_fused_adam_` reads inside itself are its own).

mod common;

use common::tiny_config;
use ddpm_dist::{Dist, DistEnv, DistOptions, GradReducer, Rendezvous};
use ddpm_train::{Outcome, Trainer};
use std::sync::atomic::AtomicBool;
use tch::Device;

/// Collectives and host reads issued by `train` for `steps` steps of the tiny run (logging and
/// checkpoints at the end only), and the gradient buckets of its network.
fn collectives_of(steps: u64) -> (u64, i64, usize) {
    let runs = ddpm_testkit::temp_dir("host-reads");
    let mut c = tiny_config();
    c.train.total_steps = steps;
    c.train.log_every = 1000;
    c.train.checkpoint_every = 1000;
    c.train.sample_every = 0;
    c.train.threads = 1;
    let port = ddpm_testkit::ranks::free_port();
    let env = DistEnv {
        rendezvous: Some(Rendezvous { addr: "127.0.0.1".into(), port, agent_store: false }),
        ..DistEnv::single()
    };
    let dist = Dist::init(&env, Device::Cpu, DistOptions::default()).unwrap();
    let mut t = Trainer::with_dist(c, &runs, dist).unwrap();
    assert!(t.dist().backend().is_some(), "a one-rank group");
    let buckets = GradReducer::new(&t.model.adam.params).unwrap().num_buckets();
    let before = t.dist().collectives();
    let (out, ops) = ddpm_shim::count_ops(|| {
        t.train(&AtomicBool::new(false), &mut ddpm_train::LogProgress).unwrap()
    })
    .unwrap();
    assert_eq!(out, Outcome::Finished { step: steps });
    let n = t.dist().collectives() - before;
    std::fs::remove_dir_all(&runs).unwrap();
    (n, ops.host_reads, buckets)
}

#[test]
fn steps_between_logging_steps_issue_only_the_gradient_all_reduce() {
    let (one, reads_one, buckets) = collectives_of(1);
    let (ten, reads_ten, _) = collectives_of(10);
    assert!(buckets >= 1);
    // The last step logs and checkpoints, so both runs read the host there.
    assert!(reads_one > 0, "the logging step's reads are counted: {reads_one}");
    assert_eq!(reads_ten, reads_one, "9 plain steps read the host {} times", reads_ten - reads_one);
    assert_eq!(
        ten - one,
        9 * buckets as u64,
        "9 plain steps issued {} collectives; the gradient buckets are {buckets} per step",
        ten - one
    );
}
