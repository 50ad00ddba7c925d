//! Resume is exact: on the CPU, N steps + stop + resume + N steps gives bit-identical weights
//! (model, EMA) to 2N uninterrupted steps, with dropout on and the per-tensor and fused
//! optimisers alike. The resumed run starts at the checkpoint's step (not from scratch, which
//! would also end at 2N with the same weights) and its first batch is the one after the
//! checkpoint's.

mod common;

use common::{tiny_config, weights};
use ddpm_data::LoaderState;
use ddpm_run::{Checkpoint, RunDir};
use ddpm_train::{Outcome, Trainer};
use std::sync::atomic::AtomicBool;
use tch::Device;

fn train_to(config: &ddpm_train::RunConfig, runs: &std::path::Path, steps: u64) -> Trainer {
    let mut c = config.clone();
    c.train.total_steps = steps;
    let mut t = Trainer::new(c, runs, Device::Cpu).unwrap();
    let out = t.train(&AtomicBool::new(false), &mut ddpm_train::LogProgress).unwrap();
    assert_eq!(out, Outcome::Finished { step: steps });
    t
}

fn check(fused: bool) {
    let mut config = tiny_config();
    config.optim.fused = fused;
    config.train.checkpoint_every = 1000;
    let (n, runs_a, runs_b) =
        (6, ddpm_testkit::temp_dir("resume-a"), ddpm_testkit::temp_dir("resume-b"));

    let straight = train_to(&config, &runs_a, 2 * n);
    let _first_half = train_to(&config, &runs_b, n);
    // The checkpoint records where the data stream stands: n batches into the first epoch.
    let run = RunDir::new(runs_b.join(&config.name));
    let at_n = Checkpoint::open(&run.checkpoint_path(n)).unwrap();
    assert_eq!(at_n.meta.loader, LoaderState { epoch: 0, position: n });
    // Resuming starts at the checkpoint's step...
    let mut one_more = config.clone();
    one_more.train.total_steps = n + 1;
    let mut t = Trainer::new(one_more, &runs_b, Device::Cpu).unwrap();
    assert_eq!(t.step, n, "resumed at step {}, not at the checkpoint's step {n}", t.step);
    let out = t.train(&AtomicBool::new(false), &mut ddpm_train::LogProgress).unwrap();
    assert_eq!(out, Outcome::Finished { step: n + 1 });
    drop(t);
    // ...and its first batch is the one after the checkpoint's: one batch further, not the
    // stream's first batch again.
    let at_n1 = Checkpoint::open(&run.checkpoint_path(n + 1)).unwrap();
    assert_eq!(at_n1.meta.loader, LoaderState { epoch: 0, position: n + 1 });
    let resumed = train_to(&config, &runs_b, 2 * n);
    assert_eq!(resumed.step, 2 * n);

    let (sa, ea) = straight.var_stores();
    let (sb, eb) = resumed.var_stores();
    for ((na, a), (nb, b)) in
        weights(sa).iter().zip(weights(sb).iter()).chain(weights(ea).iter().zip(weights(eb).iter()))
    {
        assert_eq!(na, nb);
        assert!(a.equal(b), "{na} differs after resume (fused = {fused})");
    }
    // And training did move the weights.
    let fresh =
        Trainer::new(config.clone(), &ddpm_testkit::temp_dir("resume-c"), Device::Cpu).unwrap();
    let moved = weights(fresh.var_stores().0)
        .iter()
        .zip(weights(sa).iter())
        .any(|((_, x), (_, y))| !x.equal(y));
    assert!(moved);
}

#[test]
fn resume_is_bit_identical_with_the_per_tensor_optimiser() {
    check(false);
}

#[test]
fn resume_is_bit_identical_with_the_fused_optimiser() {
    check(true);
}
