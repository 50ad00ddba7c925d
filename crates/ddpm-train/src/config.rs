//! The run config: `[model]`, `[diffusion]`, `[data]`, `[optim]` and `[train]` tables.
//! Defaults are the paper's CIFAR-10 recipe (Ho et al. 2020, Sec. 4 and Appendix B):
//! Adam with lr 2e-4, 5000 warm-up steps, gradient clipping at 1.0, batch 128, EMA 0.9999,
//! 800k steps. `configs/*.toml` hold data only; the resolved config is written into the run
//! directory before training starts.

use ddpm_core::DiffusionConfig;
use ddpm_data::DataConfig;
use ddpm_nets::ModelConfig;
use ddpm_sample::SamplerKind;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Compute precision of the forward and backward passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    /// Everything in f32.
    F32,
    /// bf16 autocast on CUDA (weights, optimiser and loss stay f32); f32 on the CPU.
    #[default]
    Bf16,
}

/// The learning rate after warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LrSchedule {
    /// `lr` from the end of warm-up on: the paper's.
    #[default]
    Constant,
    /// Half a cosine from `lr` at the end of warm-up to 0 at `train.total_steps`.
    Cosine,
}

/// `[optim]`: Adam, warm-up, clipping, batch size and EMA.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimConfig {
    pub lr: f64,
    /// Linear warm-up: lr_s = lr min(1, s / warmup_steps).
    pub warmup_steps: u64,
    /// After warm-up: constant (the paper's) or cosine decay to 0 at the last step.
    pub lr_schedule: LrSchedule,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// Global-norm clipping threshold; 0 turns clipping off.
    pub grad_clip: f64,
    /// Global batch size (split across ranks).
    pub batch_size: usize,
    pub ema_decay: f64,
    /// TF-style EMA warm-up d_n = min(d, (1+n)/(10+n)); useful for short runs.
    pub ema_warmup: bool,
    /// One fused kernel for the Adam step and `_foreach` ops for EMA and clipping (same results
    /// as the per-tensor loop within float rounding; far fewer kernel launches).
    pub fused: bool,
}

impl Default for OptimConfig {
    fn default() -> Self {
        Self {
            lr: 2e-4,
            warmup_steps: 5000,
            lr_schedule: LrSchedule::Constant,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            grad_clip: 1.0,
            batch_size: 128,
            ema_decay: 0.9999,
            ema_warmup: false,
            fused: true,
        }
    }
}

/// `[train]`: length, logging, previews, checkpoints, precision and device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    pub total_steps: u64,
    pub log_every: u64,
    /// Preview sample grid from the EMA model every this many steps (0: only at the end).
    pub sample_every: u64,
    pub sample_count: usize,
    /// The preview's sampler: a fast one by default, so previews cost seconds, not minutes.
    pub sample_sampler: SamplerKind,
    /// Network evaluations of the preview sampler (as `ddpm-sample --steps`).
    pub sample_steps: usize,
    /// Run the run's metric (the digits classifier distance, sliced W2 for 2-D data, FID for
    /// image sets) on the EMA weights every this many steps and at the end; 0: never. Values
    /// go to `eval.jsonl`, TensorBoard and the report, and the best checkpoint by the metric is
    /// kept as `checkpoints/best.safetensors`.
    pub eval_every: u64,
    /// Samples per evaluation (0: the metric's usual count: half the digits, 2,000 points,
    /// 50,000 images).
    pub eval_samples: usize,
    pub eval_sampler: SamplerKind,
    /// Network evaluations of the evaluation sampler.
    pub eval_steps: usize,
    /// FID reference for image sets: a statistics .npz, an image folder or a data set (default:
    /// the run's data). Needs the converted Inception weights (`cargo xtask convert-inception`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eval_ref: Option<String>,
    /// Converted Inception weights for FID during training (default:
    /// `$DDPM_HOME/inception/pt_inception-2015-12-05.safetensors`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eval_inception: Option<std::path::PathBuf>,
    /// Images per sampling batch during evaluation.
    pub eval_batch_size: usize,
    pub checkpoint_every: u64,
    pub checkpoint_minutes: f64,
    pub keep_checkpoints: usize,
    pub precision: Precision,
    /// TF32 tensor-core math for the f32 parts on CUDA (Ampere and newer).
    pub tf32: bool,
    /// Deterministic kernels (`torch.use_deterministic_algorithms`): reruns and resumes on one
    /// GPU are bit-identical, at some speed (CUDA also needs `CUBLAS_WORKSPACE_CONFIG=:4096:8`).
    /// The CPU is deterministic either way.
    pub deterministic: bool,
    /// Probability of replacing a label by the null class (classifier-free guidance).
    pub class_dropout: f64,
    /// "auto" (CUDA when present), "cpu", "cuda" or "cuda:N".
    pub device: String,
    /// Intra-op CPU threads; 0 keeps libtorch's default.
    pub threads: usize,
    /// How long a rank of a data-parallel job waits in a collective (the rendezvous included)
    /// for the others before the job stops with an error naming them: torch's default process
    /// group timeout, 30 minutes.
    pub dist_timeout_minutes: f64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            total_steps: 800_000,
            log_every: 100,
            sample_every: 10_000,
            sample_count: 64,
            sample_sampler: SamplerKind::DpmSolverPp,
            sample_steps: 20,
            eval_every: 0,
            eval_samples: 0,
            eval_sampler: SamplerKind::DpmSolverPp,
            eval_steps: 20,
            eval_ref: None,
            eval_inception: None,
            eval_batch_size: 256,
            checkpoint_every: 10_000,
            checkpoint_minutes: 30.0,
            keep_checkpoints: 3,
            precision: Precision::Bf16,
            tf32: true,
            deterministic: false,
            class_dropout: 0.1,
            device: "auto".into(),
            threads: 0,
            dist_timeout_minutes: 30.0,
        }
    }
}

/// A whole run config: one struct per table, each owned by the crate that uses it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunConfig {
    /// Run name: the run directory is `runs/<name>`.
    pub name: String,
    pub seed: u64,
    pub model: ModelConfig,
    pub diffusion: DiffusionConfig,
    pub data: DataConfig,
    pub optim: OptimConfig,
    pub train: TrainConfig,
    /// Sampling defaults of the run (`[sampling]`, owned by ddpm-sample).
    pub sampling: ddpm_sample::SamplingConfig,
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            name: "run".into(),
            seed: 0,
            model: ModelConfig::default(),
            diffusion: DiffusionConfig::default(),
            data: DataConfig::default(),
            optim: OptimConfig::default(),
            train: TrainConfig::default(),
            sampling: ddpm_sample::SamplingConfig::default(),
        }
    }
}

/// A config error that names the file, the line and the key.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl RunConfig {
    /// Parses TOML text; errors read "FILE:LINE: section.key: what is wrong".
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let de = toml::de::Deserializer::parse(text)
            .map_err(|e| ConfigError(format!("{origin}: {}", one_line(e.message()))))?;
        let config: Self = serde_path_to_error::deserialize(de).map_err(|e| {
            let line = e.inner().span().map(|s| text[..s.start].matches('\n').count() + 1);
            let at = line.map(|l| format!(":{l}")).unwrap_or_default();
            let path = e.path().to_string();
            ConfigError(format!("{origin}{at}: {path}: {}", one_line(e.inner().message())))
        })?;
        config.validate().map_err(|e| ConfigError(format!("{origin}: {e}")))?;
        Ok(config)
    }

    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("{}: {e}", path.display())))?;
        Self::from_toml(&text, &path.display().to_string())
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("configs serialise")
    }

    /// Checks values serde cannot: meaningless combinations and out-of-range numbers,
    /// naming the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |key: &str, what: String| Err(ConfigError(format!("{key}: {what}")));
        self.model.validate().map_err(|e| ConfigError(e.to_string()))?;
        self.diffusion.validate().map_err(|e| ConfigError(format!("diffusion: {e}")))?;
        self.diffusion.build().map_err(|e| ConfigError(format!("diffusion: {e}")))?;
        let o = &self.optim;
        if !(o.lr > 0.0 && o.lr.is_finite()) {
            return err("optim.lr", format!("must be positive, got {}", o.lr));
        }
        if o.batch_size == 0 {
            return err("optim.batch_size", "must be at least 1".into());
        }
        for (k, v) in
            [("optim.beta1", o.beta1), ("optim.beta2", o.beta2), ("optim.ema_decay", o.ema_decay)]
        {
            if !(0.0..1.0).contains(&v) {
                return err(k, format!("must be in [0, 1), got {v}"));
            }
        }
        if !(o.eps > 0.0) || o.grad_clip < 0.0 || o.weight_decay < 0.0 {
            return err(
                "optim",
                "eps must be positive; grad_clip and weight_decay non-negative".into(),
            );
        }
        let t = &self.train;
        if t.total_steps == 0 {
            return err("train.total_steps", "must be at least 1".into());
        }
        if t.log_every == 0 || t.checkpoint_every == 0 {
            return err(
                "train.log_every",
                "log_every and checkpoint_every must be at least 1".into(),
            );
        }
        for (key, steps) in
            [("train.sample_steps", t.sample_steps), ("train.eval_steps", t.eval_steps)]
        {
            if steps == 0 || steps > self.diffusion.steps {
                return err(
                    key,
                    format!("must be in 1..={} (T), got {steps}", self.diffusion.steps),
                );
            }
        }
        if t.sample_count == 0 {
            return err("train.sample_count", "must be at least 1".into());
        }
        if t.eval_batch_size == 0 {
            return err("train.eval_batch_size", "must be at least 1".into());
        }
        if !(t.dist_timeout_minutes > 0.0 && t.dist_timeout_minutes.is_finite()) {
            return err(
                "train.dist_timeout_minutes",
                format!("must be a positive number of minutes, got {}", t.dist_timeout_minutes),
            );
        }
        if t.keep_checkpoints == 0 {
            return err("train.keep_checkpoints", "must keep at least 1".into());
        }
        if !(0.0..1.0).contains(&t.class_dropout) {
            return err(
                "train.class_dropout",
                format!("must be in [0, 1), got {}", t.class_dropout),
            );
        }
        if self.name.is_empty() || self.name.contains(['/', '\\']) || self.name.starts_with('.') {
            return err("name", format!("{:?} is not a usable run directory name", self.name));
        }
        Ok(())
    }
}

/// Command-line values that replace the config's (each None keeps the config's value).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// An embedded data set name or a directory (see [`ddpm_data::config_from_arg`]).
    pub data: Option<String>,
    pub name: Option<String>,
    pub steps: Option<u64>,
    pub device: Option<String>,
    pub batch_size: Option<usize>,
    pub seed: Option<u64>,
}

impl RunConfig {
    /// The config with the command line's values applied, validated again.
    pub fn with_overrides(mut self, o: &Overrides) -> Result<Self, ConfigError> {
        if let Some(d) = &o.data {
            let from_arg = ddpm_data::config_from_arg(d);
            // Fashion-MNIST's files are MNIST's IDX files: a directory given to a
            // fashion-mnist config is another copy of it, not MNIST.
            if !(self.data.dataset == "fashion-mnist" && from_arg.dataset == "mnist") {
                self.data.dataset = from_arg.dataset;
            }
            self.data.path = from_arg.path;
        }
        if let Some(n) = &o.name {
            self.name = n.clone();
        }
        if let Some(s) = o.steps {
            self.train.total_steps = s;
        }
        if let Some(d) = &o.device {
            self.train.device = d.clone();
        }
        if let Some(b) = o.batch_size {
            self.optim.batch_size = b;
        }
        if let Some(s) = o.seed {
            self.seed = s;
        }
        self.validate()?;
        Ok(self)
    }

    /// The first key (`section.key`) whose value differs between two configs, ignoring the step
    /// count (asking for more steps extends a run); None when they describe the same run.
    pub fn difference(&self, other: &Self) -> Option<String> {
        let mut a = self.clone();
        a.train.total_steps = other.train.total_steps;
        let (ta, tb) = (toml::Table::try_from(&a).ok()?, toml::Table::try_from(other).ok()?);
        first_difference(&ta, &tb).map(|(k, sub)| match sub {
            Some(s) => format!("{k}.{s}"),
            None => k,
        })
    }
}

/// The first key (sorted) whose value differs, and within tables the first inner key.
fn first_difference(a: &toml::Table, b: &toml::Table) -> Option<(String, Option<String>)> {
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    let k = keys.into_iter().find(|k| a.get(*k) != b.get(*k))?;
    let inner = match (a.get(k), b.get(k)) {
        (Some(toml::Value::Table(x)), Some(toml::Value::Table(y))) => {
            first_difference(x, y).map(|(ik, _)| ik)
        }
        _ => None,
    };
    Some((k.clone(), inner))
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use ddpm_nets::UNetConfig;

    #[test]
    fn defaults_are_the_paper_recipe() {
        let c = RunConfig::default();
        assert_eq!(c.optim.lr, 2e-4);
        assert_eq!(c.optim.warmup_steps, 5000);
        assert_eq!(c.optim.grad_clip, 1.0);
        assert_eq!(c.optim.batch_size, 128);
        assert_eq!(c.optim.ema_decay, 0.9999);
        assert_eq!(c.optim.eps, 1e-8);
        assert_eq!(c.train.total_steps, 800_000);
        assert_eq!(c.model, ModelConfig::Unet(UNetConfig::ddpm_cifar10()));
        c.validate().unwrap();
    }

    /// Every sampler the command line has is a preview and evaluation sampler by the same name.
    #[test]
    fn every_sampler_is_a_train_sampler_by_its_command_line_name() {
        for kind in SamplerKind::ALL {
            let text =
                format!("[train]\nsample_sampler = \"{0}\"\neval_sampler = \"{0}\"\n", kind.name());
            let c = RunConfig::from_toml(&text, "c.toml").unwrap();
            assert_eq!((c.train.sample_sampler, c.train.eval_sampler), (kind, kind));
        }
        let e = RunConfig::from_toml("[train]\nsample_sampler = \"plms\"\n", "c.toml").unwrap_err();
        assert!(e.0.contains("plms"), "{}", e.0);
    }

    #[test]
    fn round_trips_through_toml() {
        let c = RunConfig::default();
        let back = RunConfig::from_toml(&c.to_toml(), "x").unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn unknown_keys_are_named_with_their_line() {
        let e = RunConfig::from_toml("[optim]\nlr = 1e-4\nlearning_rate = 3\n", "c.toml")
            .unwrap_err()
            .0;
        assert!(e.starts_with("c.toml:3: optim.learning_rate"), "{e}");
        assert_eq!(e.lines().count(), 1);
    }

    #[test]
    fn negative_step_counts_are_named() {
        let e = RunConfig::from_toml("[train]\ntotal_steps = -5\n", "c.toml").unwrap_err().0;
        assert!(e.contains("train.total_steps"), "{e}");
    }

    #[test]
    fn unreachable_attention_resolution_is_named() {
        let e = RunConfig::from_toml(
            "[model]\nkind = \"unet\"\nattention_resolutions = [3]\n",
            "c.toml",
        )
        .unwrap_err()
        .0;
        assert!(e.contains("model.attention_resolutions") && e.contains("never reached"), "{e}");
    }

    #[test]
    fn impossible_sample_steps_are_named() {
        let e = RunConfig::from_toml("[train]\nsample_steps = 5000\n", "c.toml").unwrap_err().0;
        assert!(e.contains("train.sample_steps") && e.contains("1000"), "{e}");
    }
}
