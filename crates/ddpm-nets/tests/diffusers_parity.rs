//! Our UNet against diffusers' UNet2DModel (`scripts/ref_unet.py`): the same random weights,
//! saved by diffusers as safetensors and imported through the documented key mapping, give the
//! same output on the same inputs and timesteps (max abs difference <= 1e-4 in f32).

use ddpm_nets::diffusers::{DiffusersFolder, load_weights, unet_config};
use ddpm_nets::tensorfile::TensorFile;
use ddpm_nets::{UNet, UNetConfig};
use ddpm_testkit::{run_json, run_script, temp_dir};
use tch::Device;
use tch::nn::VarStore;

#[test]
fn cifar10_config_has_the_papers_parameter_count() {
    let vs = VarStore::new(Device::Cpu);
    let _unet = UNet::new(&vs.root(), &UNetConfig::ddpm_cifar10(), 3).unwrap();
    let n: i64 = vs.trainable_variables().iter().map(|t| t.numel() as i64).sum();
    assert_eq!(n, 35_746_307);
}

/// tch renames duplicate variable names silently (`__1`): compare the full key list and shapes.
#[test]
#[ignore = "needs the Python venv: run `cargo xtask test`"]
fn parameter_names_and_shapes_equal_diffusers_state_dict() {
    let theirs = run_json("ref_unet.py", &["keys", "--preset", "cifar10"]);
    let vs = VarStore::new(Device::Cpu);
    let _unet = UNet::new(&vs.root(), &UNetConfig::ddpm_cifar10(), 3).unwrap();
    let ours = vs.variables();
    let keys = theirs["keys"].as_object().unwrap();
    assert_eq!(ours.len(), keys.len(), "number of tensors");
    for (k, shape) in keys {
        let t = ours.get(k).unwrap_or_else(|| panic!("we lack {k}"));
        let want: Vec<i64> =
            shape.as_array().unwrap().iter().map(|d| d.as_i64().unwrap()).collect();
        assert_eq!(t.size(), want, "{k}");
    }
    assert_eq!(theirs["num_params"], 35_746_307);
}

fn check_forward(args: &[&str]) {
    let dir = temp_dir("unet-parity");
    let mut full = vec!["make", dir.to_str().unwrap()];
    full.extend_from_slice(args);
    run_script("ref_unet.py", &full);
    let folder = DiffusersFolder::locate(&dir).unwrap();
    assert!(folder.scheduler.is_some());
    let config = unet_config(&folder.config).unwrap();
    let vs = VarStore::new(Device::Cpu);
    let unet = UNet::new(&vs.root(), &config, config.out_channels.unwrap()).unwrap();
    load_weights(&vs, &folder.weights).unwrap();
    let io = TensorFile::open(dir.join("io.safetensors")).unwrap();
    let x = io.tensor("x").unwrap();
    let t = io.tensor("t").unwrap();
    let y = io.tensors.contains_key("y").then(|| io.tensor("y").unwrap());
    let out = tch::no_grad(|| unet.forward_t(&x, &t, y.as_ref(), false));
    let theirs = io.tensor("out").unwrap();
    assert_eq!(out.size(), theirs.size());
    let diff = (&out - &theirs).abs().max().double_value(&[]);
    let scale = theirs.abs().max().double_value(&[]);
    assert!(diff <= 1e-4, "{args:?}: max abs diff {diff:e} (output scale {scale})");
    assert!(scale > 1e-2, "the output is not trivially zero");
}

#[test]
#[ignore = "needs the Python venv: run `cargo xtask test`"]
fn forward_matches_diffusers_ddpm_cifar10_structure_small_width() {
    check_forward(&["--seed", "1"]);
}

#[test]
#[ignore = "needs the Python venv: run `cargo xtask test`"]
fn forward_matches_diffusers_with_class_embedding_and_multi_head_attention() {
    check_forward(&["--seed", "2", "--classes", "10", "--head-dim", "16"]);
}

/// Improved DDPM's res blocks: the embedding scales and shifts the second GroupNorm's output.
#[test]
#[ignore = "needs the Python venv: run `cargo xtask test`"]
fn forward_matches_diffusers_with_time_scale_shift_and_classes() {
    check_forward(&["--seed", "4", "--scale-shift", "--classes", "5"]);
}

/// google/ddpm-* uploads use diffusers' pre-0.15 attention names (query, key, value, proj_attn).
#[test]
#[ignore = "needs the Python venv: run `cargo xtask test`"]
fn forward_matches_diffusers_checkpoint_with_legacy_attention_names() {
    check_forward(&["--seed", "3", "--old-keys"]);
}
