//! Resume is exact: on the CPU, N steps + stop + resume + N steps gives bit-identical weights
//! (model, EMA) to 2N uninterrupted steps, with dropout on and the per-tensor and fused
//! optimisers alike.

mod common;

use common::{tiny_config, weights};
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
