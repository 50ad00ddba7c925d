//! A small CNN on the 8x8 digits, the feature space of the "digits FD": the Frechet distance
//! between classifier features of samples and of the data. It is trained once, from a fixed
//! seed, on 80 % of the digits (the rest measures its accuracy), and cached at
//! `$DDPM_HOME/eval/digits-classifier-v1.safetensors`.

use crate::error::{Result, io};
use ddpm_core::rng::SplitMix64;
use ddpm_data::ImageSet;
use ddpm_nets::tensorfile::{TensorFile, load_varstore, named_variables, write_tensors};
use std::collections::HashMap;
use std::path::PathBuf;
use tch::nn::{self, Module, OptimizerConfig, VarStore};
use tch::{Device, Kind, Tensor};

/// Width of the feature layer.
pub const FEATURES: i64 = 128;

#[derive(Debug)]
pub struct DigitsClassifier {
    pub vs: VarStore,
    conv1: nn::Conv2D,
    conv2: nn::Conv2D,
    fc1: nn::Linear,
    fc2: nn::Linear,
    /// Accuracy on the held-out fifth of the digits.
    pub held_out_accuracy: f64,
}

pub fn cache_path() -> PathBuf {
    ddpm_io::ddpm_home().join("eval/digits-classifier-v1.safetensors")
}

impl DigitsClassifier {
    fn build(device: Device) -> Self {
        let vs = VarStore::new(device);
        let r = vs.root();
        let c = nn::ConvConfig { padding: 1, ..Default::default() };
        Self {
            conv1: nn::conv2d(&r / "conv1", 1, 32, 3, c),
            conv2: nn::conv2d(&r / "conv2", 32, 64, 3, c),
            fc1: nn::linear(&r / "fc1", 64 * 16, FEATURES, Default::default()),
            fc2: nn::linear(&r / "fc2", FEATURES, 10, Default::default()),
            vs,
            held_out_accuracy: 0.0,
        }
    }

    /// The 128-d features of images [B, 1, 8, 8] in [0, 1].
    pub fn features(&self, x: &Tensor) -> Tensor {
        let h = self
            .conv1
            .forward(&(x.to_kind(Kind::Float).to_device(self.vs.device()) * 2.0 - 1.0))
            .relu();
        let h = self.conv2.forward(&h).relu().max_pool2d_default(2).flatten(1, -1);
        self.fc1.forward(&h).relu()
    }

    pub fn logits(&self, x: &Tensor) -> Tensor {
        self.fc2.forward(&self.features(x))
    }

    /// The cached classifier, or a freshly trained (and then cached) one.
    pub fn trained(digits: &ImageSet, device: Device) -> Result<Self> {
        let path = cache_path();
        let mut net = Self::build(device);
        let images = crate::images::from_dataset(digits);
        let labels = Tensor::from_slice(
            &digits
                .labels
                .clone()
                .unwrap_or_default()
                .iter()
                .map(|&l| l as i64)
                .collect::<Vec<_>>(),
        );
        let mut order: Vec<i64> = (0..digits.n as i64).collect();
        SplitMix64::new(2024).shuffle(&mut order);
        let split = digits.n * 4 / 5;
        let (train_idx, test_idx) =
            (Tensor::from_slice(&order[..split]), Tensor::from_slice(&order[split..]));
        if let Ok(file) = TensorFile::open(&path) {
            load_varstore(&net.vs, &file, "")?;
        } else {
            let _rng = ddpm_nets::torch_rng_lock();
            tch::manual_seed(2024);
            net = Self::build(device);
            let mut opt = nn::Adam::default().build(&net.vs, 1e-3).expect("Adam");
            // The training set goes to the device once; each batch moves only its indices.
            let x = images.index_select(0, &train_idx).to_device(device);
            let y = labels.index_select(0, &train_idx).to_device(device);
            let mut rng = SplitMix64::new(7);
            for _epoch in 0..40 {
                let mut perm: Vec<i64> = (0..split as i64).collect();
                rng.shuffle(&mut perm);
                for chunk in perm.chunks(64) {
                    let idx = Tensor::from_slice(chunk).to_device(device);
                    let loss = net
                        .logits(&x.index_select(0, &idx))
                        .cross_entropy_for_logits(&y.index_select(0, &idx));
                    opt.backward_step(&loss);
                }
            }
            write_tensors(&path, &named_variables(&net.vs, ""), &HashMap::new()).map_err(|e| {
                match e {
                    ddpm_nets::NetError::Io { path, source } => io(path)(source),
                    other => other.into(),
                }
            })?;
        }
        let _g = tch::no_grad_guard();
        let pred =
            net.logits(&images.index_select(0, &test_idx)).argmax(1, false).to_device(Device::Cpu);
        let correct = pred
            .eq_tensor(&labels.index_select(0, &test_idx))
            .to_kind(Kind::Double)
            .mean(Kind::Double);
        net.held_out_accuracy = correct.double_value(&[]);
        Ok(net)
    }
}
