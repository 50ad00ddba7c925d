//! Shared helpers for the training tests: the tiny config and a trainer on a temp run dir.

#![allow(dead_code)]

use ddpm_train::RunConfig;
use std::path::PathBuf;

pub fn tiny_config() -> RunConfig {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../configs/tiny.toml");
    RunConfig::load(&path).expect("configs/tiny.toml")
}

pub fn weights(vs: &tch::nn::VarStore) -> Vec<(String, tch::Tensor)> {
    let mut v: Vec<(String, tch::Tensor)> =
        vs.variables().into_iter().map(|(k, t)| (k, t.detach().copy())).collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}
