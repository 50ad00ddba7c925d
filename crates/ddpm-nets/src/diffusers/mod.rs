//! diffusers' model folders, in and out: a `UNet2DModel` (`config.json` +
//! `diffusion_pytorch_model.safetensors`) and its scheduler (`scheduler_config.json`), such as
//! the published google/ddpm-* models, or a `DDPMPipeline` folder with `unet/` and `scheduler/`.
//!
//! Each JSON file is parsed once into a typed struct ([`UNet2DModelConfig`],
//! [`SchedulerConfig`]), whose errors name the file and the path of the bad key, and converted
//! with `TryFrom` (import) or `from_*` (export), where the "not supported" checks live.
//! Import and export share the structs, so they cannot drift.

mod scheduler_config;
mod unet_config;
mod weights;

pub use scheduler_config::SchedulerConfig;
pub use unet_config::{DIFFUSERS_VERSION, SampleSize, UNet2DModelConfig};
pub use weights::{load_weights, map_key, write_weights};

use crate::config::UNetConfig;
use crate::error::{NetError, Result};
use ddpm_core::DiffusionConfig;
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};

fn file_err(path: &Path, reason: impl Into<String>) -> NetError {
    NetError::File { path: path.into(), reason: reason.into() }
}

/// A JSON file as `T`; a key of the wrong type is an error naming the file and the key's path
/// (e.g. `config.json: block_out_channels[1]: invalid type: string "a", expected usize`).
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| NetError::Io { path: path.into(), source })?;
    let mut de = serde_json::Deserializer::from_str(&text);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let at = e.path().to_string();
        let inner = e.into_inner();
        if at == "." || at.is_empty() || inner.is_syntax() || inner.is_eof() {
            file_err(path, format!("invalid JSON: {inner}"))
        } else {
            file_err(path, format!("{at}: {inner}"))
        }
    })?;
    de.end().map_err(|e| file_err(path, format!("invalid JSON: {e}")))?;
    Ok(value)
}

/// Our UNet for a diffusers `UNet2DModel` config.json; anything this UNet cannot express is an
/// error naming the file and the key.
pub fn unet_config(config_json: &Path) -> Result<UNetConfig> {
    let c: UNet2DModelConfig = read_json(config_json)?;
    UNetConfig::try_from(&c).map_err(|e| file_err(config_json, e))
}

/// A scheduler config, parsed.
pub fn scheduler_config(scheduler_json: &Path) -> Result<SchedulerConfig> {
    read_json(scheduler_json)
}

/// Our diffusion settings for a diffusers scheduler config (DDPMScheduler / DDIMScheduler).
pub fn diffusion_config(scheduler_json: &Path) -> Result<DiffusionConfig> {
    let s = scheduler_config(scheduler_json)?;
    DiffusionConfig::try_from(&s).map_err(|e| file_err(scheduler_json, e))
}

/// The files of a diffusers model folder: the UNet's config and weights, and the scheduler config if any.
#[derive(Debug)]
pub struct DiffusersFolder {
    pub config: PathBuf,
    pub weights: PathBuf,
    pub scheduler: Option<PathBuf>,
}

impl DiffusersFolder {
    /// Accepts the UNet folder itself or a pipeline folder with `unet/` and `scheduler/`.
    pub fn locate(dir: &Path) -> Result<Self> {
        let unet = if dir.join("unet/config.json").exists() {
            dir.join("unet")
        } else {
            dir.to_path_buf()
        };
        let config = unet.join("config.json");
        if !config.exists() {
            return Err(file_err(dir, "no config.json (expected a diffusers UNet2DModel folder)"));
        }
        let weights = unet.join("diffusion_pytorch_model.safetensors");
        if !weights.exists() {
            return Err(file_err(
                dir,
                "no diffusion_pytorch_model.safetensors (pickled .bin weights are not read: convert them \
                 with diffusers' save_pretrained(safe_serialization=True))",
            ));
        }
        let scheduler = [
            unet.join("scheduler_config.json"),
            unet.join("../scheduler/scheduler_config.json"),
            dir.join("scheduler/scheduler_config.json"),
        ]
        .into_iter()
        .find(|p| p.exists());
        Ok(Self { config, weights, scheduler })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_json(name: &str, text: &str) -> PathBuf {
        let dir = ddpm_testkit::temp_dir(name);
        let p = dir.join("config.json");
        std::fs::write(&p, text).unwrap();
        p
    }

    const UNET: &str = r#"{"_class_name": "UNet2DModel", "sample_size": 16,
        "block_out_channels": WIDTHS, "down_block_types": ["DownBlock2D", "DownBlock2D"],
        "up_block_types": ["UpBlock2D", "UpBlock2D"], "norm_num_groups": 8}"#;

    /// Regression: an empty list indexed `widths[0]` and a zero width divided by zero; both
    /// panicked instead of naming the file and the field.
    #[test]
    fn empty_or_zero_block_out_channels_are_errors_naming_the_file() {
        for widths in ["[]", "[0, 32]", "[32, 0]"] {
            let p = write_json("unet-widths", &UNET.replace("WIDTHS", widths));
            let e = std::panic::catch_unwind(|| unet_config(&p))
                .unwrap_or_else(|_| panic!("{widths}: panicked"))
                .unwrap_err()
                .to_string();
            assert!(e.contains("config.json") && e.contains("block_out_channels"), "{e}");
            assert_eq!(e.lines().count(), 1, "{e}");
        }
        let p = write_json("unet-widths-ok", &UNET.replace("WIDTHS", "[16, 32]"));
        assert_eq!(unet_config(&p).unwrap().ch_mult, vec![1, 2]);
    }

    /// Regression: keys were read from `serde_json::Value` by hand, and a value of the wrong
    /// type silently became the default (`"dropout": "0.1"` gave dropout 0, `"norm_eps": null`
    /// gave 1e-5). Now it is an error naming the file and the key's path.
    #[test]
    fn a_key_of_the_wrong_type_is_an_error_naming_its_path() {
        for (text, path) in [
            (UNET.replace("WIDTHS", "[16, \"32\"]"), "block_out_channels[1]"),
            (
                UNET.replace("WIDTHS", "[16, 32]")
                    .replace("\"sample_size\": 16", "\"sample_size\": 16, \"dropout\": \"0.1\""),
                "dropout",
            ),
            (
                UNET.replace("WIDTHS", "[16, 32]").replace(
                    "\"norm_num_groups\": 8",
                    "\"norm_num_groups\": 8, \"flip_sin_to_cos\": 1",
                ),
                "flip_sin_to_cos",
            ),
        ] {
            let p = write_json("unet-types", &text);
            let e = unet_config(&p).unwrap_err().to_string();
            assert!(e.contains("config.json") && e.contains(&format!("{path}:")), "{path}: {e}");
            assert_eq!(e.lines().count(), 1, "{e}");
        }
        let p = write_json("sched-types", r#"{"num_train_timesteps": 1000, "beta_end": "0.02"}"#);
        let e = diffusion_config(&p).unwrap_err().to_string();
        assert!(e.contains("config.json") && e.contains("beta_end:"), "{e}");
        let p = write_json("bad-json", "{\"in_channels\": 3,");
        let e = unet_config(&p).unwrap_err().to_string();
        assert!(e.contains("config.json") && e.contains("invalid JSON"), "{e}");
    }

    /// A key diffusers writes that we leave at its default is not silently read as another
    /// value: diffusers' own default for an absent `attention_head_dim` is 8, an explicit null
    /// is one head.
    #[test]
    fn absent_keys_take_diffusers_defaults() {
        let p = write_json("unet-defaults", &UNET.replace("WIDTHS", "[16, 32]"));
        let c = unet_config(&p).unwrap();
        assert_eq!(c.attention_head_dim, Some(8));
        assert_eq!(
            (c.norm_eps, c.flip_sin_to_cos, c.freq_shift, c.downsample_padding),
            (1e-5, true, 0.0, 1)
        );
        let text = UNET
            .replace("WIDTHS", "[16, 32]")
            .replace("\"sample_size\": 16", "\"sample_size\": 16, \"attention_head_dim\": null");
        assert_eq!(
            unet_config(&write_json("unet-null-head", &text)).unwrap().attention_head_dim,
            None
        );
    }
}
