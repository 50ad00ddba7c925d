//! A small CNN on Fashion-MNIST (Xiao et al. 2017, arXiv:1708.07747), the feature space of the
//! Fashion-MNIST measure ([`crate::fashion`]; protocol in docs/metrics.md). No standard
//! Fashion-MNIST feature network exists, so ours is trained once, from fixed seeds, on the
//! 60,000 training images, its accuracy on the 10,000 test images recorded beside it, and both
//! cached under `$DDPM_HOME/eval/` by a hash of the data it was trained from and of [`RECIPE`].
//!
//! Network (input x in [0, 1], fed as 2x - 1), [`FEATURES`] = 128:
//! conv 3x3 1->32 pad 1, ReLU, max-pool 2 (14x14); conv 3x3 32->64 pad 1, ReLU, max-pool 2
//! (7x7); flatten (3136); linear 3136->128, ReLU (the features); linear 128->10 (logits).
//! Recipe: torch seed [`TORCH_SEED`] before building, Adam (libtorch defaults otherwise),
//! cross-entropy, batch 128, [`EPOCHS`] epochs, each a SplitMix64 shuffle (seed
//! [`ORDER_SEED`]), lr 1e-3 for all but the last epoch and 1e-4 for the last ([`lr`]).

use crate::error::{EvalError, Result, io};
use ddpm_core::rng::SplitMix64;
use ddpm_data::ImageSet;
use ddpm_nets::tensorfile::{TensorFile, load_varstore, named_variables, write_tensors};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::nn::{self, Module, OptimizerConfig, VarStore};
use tch::{Device, Kind, Tensor};

/// Width of the feature layer (the penultimate one).
pub const FEATURES: i64 = 128;
/// The recipe, part of the cache key: change it whenever the network or training changes.
pub const RECIPE: &str = "fashion-classifier v1: conv32-pool-conv64-pool-fc128-fc10, \
                          Adam 1e-3 then 1e-4 in the last epoch, batch 128, 4 epochs, torch seed 19, order seed 1919";
pub const TORCH_SEED: i64 = 19;
pub const ORDER_SEED: u64 = 1919;
pub const EPOCHS: usize = 4;
pub const BATCH: usize = 128;
/// The learning rate of epoch `e` (0-based): a tenth in the last epoch (on 2 CPU threads a
/// fourth epoch at 1e-3 gained less than this drop).
pub fn lr(e: usize) -> f64 {
    if e + 1 == EPOCHS { 1e-4 } else { 1e-3 }
}

/// Images per forward pass when computing features or accuracy.
const EVAL_BATCH: i64 = 1000;

/// What is recorded beside the weights (`.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassifierRecord {
    pub recipe: String,
    /// SHA-256 (hex) of the training and test images and labels and the recipe.
    pub key: String,
    /// Accuracy on the 10,000 test images.
    pub test_accuracy: f64,
    /// Wall seconds the training took.
    pub train_seconds: f64,
}

#[derive(Debug)]
pub struct FashionClassifier {
    pub vs: VarStore,
    conv1: nn::Conv2D,
    conv2: nn::Conv2D,
    fc1: nn::Linear,
    fc2: nn::Linear,
    pub record: ClassifierRecord,
    /// The cached weights.
    pub path: PathBuf,
}

/// The cache key of a classifier trained on `train` and tested on `test` with [`RECIPE`].
pub fn cache_key(train: &ImageSet, test: &ImageSet) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for set in [train, test] {
        h.update((set.n as u64).to_le_bytes());
        h.update(&set.pixels);
        let labels: Vec<u8> = set.labels.iter().flatten().map(|&l| l as u8).collect();
        h.update(&labels);
    }
    h.update(RECIPE.as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// `$DDPM_HOME/eval/fashion-classifier-v1-<key prefix>.safetensors` and its `.json` record.
pub fn cache_paths(key: &str) -> (PathBuf, PathBuf) {
    let stem = ddpm_io::ddpm_home().join(format!("eval/fashion-classifier-v1-{}", &key[..16]));
    (stem.with_extension("safetensors"), stem.with_extension("json"))
}

impl FashionClassifier {
    fn build(device: Device) -> (VarStore, nn::Conv2D, nn::Conv2D, nn::Linear, nn::Linear) {
        let vs = VarStore::new(device);
        let r = vs.root();
        let c = nn::ConvConfig { padding: 1, ..Default::default() };
        let conv1 = nn::conv2d(&r / "conv1", 1, 32, 3, c);
        let conv2 = nn::conv2d(&r / "conv2", 32, 64, 3, c);
        let fc1 = nn::linear(&r / "fc1", 64 * 7 * 7, FEATURES, Default::default());
        let fc2 = nn::linear(&r / "fc2", FEATURES, 10, Default::default());
        (vs, conv1, conv2, fc1, fc2)
    }

    fn new(device: Device, record: ClassifierRecord, path: PathBuf) -> Self {
        let (vs, conv1, conv2, fc1, fc2) = Self::build(device);
        Self { vs, conv1, conv2, fc1, fc2, record, path }
    }

    /// The 128-d features of images [B, 1, 28, 28] in [0, 1].
    ///
    /// # Shapes
    /// x: [B, 1, 28, 28] -> [B, 128]
    pub fn features(&self, x: &Tensor) -> Tensor {
        let x = x.to_kind(Kind::Float).to_device(self.vs.device()) * 2.0 - 1.0;
        let h = self.conv1.forward(&x).relu().max_pool2d_default(2);
        let h = self.conv2.forward(&h).relu().max_pool2d_default(2).flatten(1, -1);
        self.fc1.forward(&h).relu()
    }

    /// # Shapes
    /// x: [B, 1, 28, 28] -> [B, 10]
    pub fn logits(&self, x: &Tensor) -> Tensor {
        self.fc2.forward(&self.features(x))
    }

    /// Features of many images, in batches without gradients, on the CPU in f32.
    pub fn features_of(&self, images: &Tensor) -> Tensor {
        let _g = tch::no_grad_guard();
        let n = images.size()[0];
        let parts: Vec<Tensor> = (0..n)
            .step_by(EVAL_BATCH as usize)
            .map(|s| {
                self.features(&images.narrow(0, s, EVAL_BATCH.min(n - s))).to_device(Device::Cpu)
            })
            .collect();
        Tensor::cat(&parts, 0)
    }

    /// The share of `set`'s images classified as their label.
    pub fn accuracy(&self, set: &ImageSet) -> f64 {
        self.accuracy_of(&crate::images::from_dataset(set), &labels_of(set))
    }

    /// The share of `images` [N, 1, 28, 28] in [0, 1] whose predicted class (argmax of the
    /// logits) is `labels[i]` (int64 [N]), in batches without gradients.
    pub fn accuracy_of(&self, images: &Tensor, labels: &Tensor) -> f64 {
        let _g = tch::no_grad_guard();
        let n = images.size()[0];
        let mut correct = 0i64;
        for s in (0..n).step_by(EVAL_BATCH as usize) {
            let k = EVAL_BATCH.min(n - s);
            let pred = self.logits(&images.narrow(0, s, k)).argmax(1, false).to_device(Device::Cpu);
            correct += pred.eq_tensor(&labels.narrow(0, s, k)).sum(Kind::Int64).int64_value(&[]);
        }
        correct as f64 / n as f64
    }

    /// The cached classifier for (`train`, `test`) (28x28 Fashion-MNIST), or one trained now
    /// and cached (weights, then its record, each written atomically). A lock file beside the
    /// cache makes concurrent callers (test binaries, ranks) wait for one training.
    pub fn trained(train: &ImageSet, test: &ImageSet, device: Device) -> Result<Self> {
        for set in [train, test] {
            if (set.channels, set.height, set.width) != (1, 28, 28) || set.labels.is_none() {
                return Err(EvalError::Samples(format!(
                    "the Fashion-MNIST classifier trains on labelled 1x28x28 images, got {} of {}x{}x{}",
                    set.name, set.channels, set.height, set.width
                )));
            }
        }
        let key = cache_key(train, test);
        let (weights, record_path) = cache_paths(&key);
        let dir = weights.parent().expect("cache paths have a parent");
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let lock_path = dir.join(".fashion-classifier.lock");
        let lock = std::fs::File::create(&lock_path).map_err(io(&lock_path))?;
        lock.lock().map_err(io(&lock_path))?;
        if let Some(net) = Self::cached(&weights, &record_path, &key, device)? {
            return Ok(net);
        }
        tracing::info!("training the Fashion-MNIST feature network ({RECIPE})");
        let net = Self::train(train, test, device, key, weights.clone())?;
        write_tensors(&weights, &named_variables(&net.vs, ""), &HashMap::new()).map_err(
            |e| match e {
                ddpm_nets::NetError::Io { path, source } => io(path)(source),
                other => other.into(),
            },
        )?;
        let text = serde_json::to_string_pretty(&net.record).expect("serialises");
        ddpm_io::write_atomic(&record_path, text.as_bytes()).map_err(io(&record_path))?;
        Ok(net)
    }

    /// The cached network, if both files exist and the record matches `key`.
    fn cached(weights: &Path, record: &Path, key: &str, device: Device) -> Result<Option<Self>> {
        let (Ok(text), Ok(file)) = (std::fs::read_to_string(record), TensorFile::open(weights))
        else {
            return Ok(None);
        };
        let record: ClassifierRecord = serde_json::from_str(&text).map_err(|e| {
            EvalError::Samples(format!(
                "{}: not a classifier record ({e}); delete it",
                record.display()
            ))
        })?;
        if record.key != key || record.recipe != RECIPE {
            return Ok(None);
        }
        let net = Self::new(device, record, weights.into());
        load_varstore(&net.vs, &file, "")?;
        Ok(Some(net))
    }

    fn train(
        train: &ImageSet,
        test: &ImageSet,
        device: Device,
        key: String,
        path: PathBuf,
    ) -> Result<Self> {
        let started = Instant::now();
        let record =
            ClassifierRecord { recipe: RECIPE.into(), key, test_accuracy: 0.0, train_seconds: 0.0 };
        let mut net = {
            let _rng = ddpm_nets::torch_rng_lock();
            tch::manual_seed(TORCH_SEED);
            Self::new(device, record, path)
        };
        let mut opt = nn::Adam::default()
            .build(&net.vs, lr(0))
            .map_err(|e| EvalError::Samples(format!("Adam: {e}")))?;
        let x = crate::images::from_dataset(train).to_device(device);
        let y = labels_of(train).to_device(device);
        let mut rng = SplitMix64::new(ORDER_SEED);
        for epoch in 0..EPOCHS {
            opt.set_lr(lr(epoch));
            let mut perm: Vec<i64> = (0..train.n as i64).collect();
            rng.shuffle(&mut perm);
            for chunk in perm.chunks(BATCH) {
                let idx = Tensor::from_slice(chunk).to_device(device);
                let loss = net
                    .logits(&x.index_select(0, &idx))
                    .cross_entropy_for_logits(&y.index_select(0, &idx));
                opt.backward_step(&loss);
            }
        }
        net.record.test_accuracy = net.accuracy(test);
        net.record.train_seconds = started.elapsed().as_secs_f64();
        tracing::info!(
            "Fashion-MNIST feature network: test accuracy {:.2} % after {:.0} s",
            100.0 * net.record.test_accuracy,
            net.record.train_seconds
        );
        Ok(net)
    }
}

fn labels_of(set: &ImageSet) -> Tensor {
    let l: Vec<i64> = set.labels.iter().flatten().map(|&l| l as i64).collect();
    Tensor::from_slice(&l)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny(n: usize, fill: u8) -> ImageSet {
        ImageSet {
            n,
            channels: 1,
            height: 28,
            width: 28,
            pixels: vec![fill; n * 784],
            max_value: 255,
            labels: Some(vec![3; n]),
            num_classes: 10,
            name: "tiny".into(),
        }
    }

    #[test]
    fn the_cache_key_follows_the_data_and_the_network_has_its_shapes() {
        let (a, b) = (tiny(2, 0), tiny(2, 1));
        assert_eq!(cache_key(&a, &b), cache_key(&a, &b));
        assert_ne!(cache_key(&a, &b), cache_key(&b, &a));
        let mut relabelled = a.clone();
        relabelled.labels = Some(vec![3, 4]);
        assert_ne!(cache_key(&a, &b), cache_key(&relabelled, &b));
        let (w, r) = cache_paths(&cache_key(&a, &b));
        assert_eq!(
            (w.extension().unwrap(), r.extension().unwrap()),
            ("safetensors".as_ref(), "json".as_ref())
        );
        let record = ClassifierRecord {
            recipe: RECIPE.into(),
            key: String::new(),
            test_accuracy: 0.0,
            train_seconds: 0.0,
        };
        let net = FashionClassifier::new(Device::Cpu, record, w);
        let x = Tensor::zeros([3, 1, 28, 28], (Kind::Float, Device::Cpu));
        assert_eq!(net.features_of(&x).size(), [3, FEATURES]);
        assert_eq!(net.logits(&x).size(), [3, 10]);
        let e = FashionClassifier::trained(
            &ImageSet { height: 32, width: 32, pixels: vec![0; 1024], ..tiny(1, 0) },
            &b,
            Device::Cpu,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("1x28x28") && e.contains("1x32x32"), "{e}");
    }
}
