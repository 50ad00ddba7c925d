//! diffusers' `UNet2DModel` `config.json` as a typed struct, read once (a key of the wrong type is
//! an error naming its path) and converted to and from our [`UNetConfig`]. Import and export
//! share it, so they cannot drift. Defaults are `UNet2DModel.__init__`'s (diffusers 0.42), which
//! is what diffusers itself assumes for a key a file lacks.

use crate::config::UNetConfig;
use serde::{Deserialize, Serialize};

/// The diffusers release whose `UNet2DModel`, `DDPMScheduler` and pipelines the export is
/// tested against (`scripts/requirements.txt`).
pub const DIFFUSERS_VERSION: &str = "0.42.1";

/// `sample_size`: one side, or `[height, width]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SampleSize {
    Side(usize),
    HeightWidth(Vec<usize>),
}

/// The keys of a `UNet2DModel` config that change the network, under diffusers' names.
/// Keys not listed here (`_name_or_path`, ...) do not change it and are ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct UNet2DModelConfig {
    #[serde(rename = "_class_name")]
    pub class_name: String,
    #[serde(rename = "_diffusers_version", skip_serializing_if = "Option::is_none")]
    pub diffusers_version: Option<String>,
    pub sample_size: Option<SampleSize>,
    pub in_channels: usize,
    pub out_channels: usize,
    pub center_input_sample: bool,
    pub time_embedding_type: String,
    pub time_embedding_dim: Option<usize>,
    pub freq_shift: f64,
    pub flip_sin_to_cos: bool,
    pub down_block_types: Vec<String>,
    pub mid_block_type: Option<String>,
    pub up_block_types: Vec<String>,
    pub block_out_channels: Vec<usize>,
    pub layers_per_block: usize,
    pub mid_block_scale_factor: f64,
    pub downsample_padding: usize,
    pub downsample_type: String,
    pub upsample_type: String,
    pub dropout: f64,
    pub act_fn: String,
    /// Channels per head; null for one head over all channels.
    pub attention_head_dim: Option<usize>,
    pub norm_num_groups: usize,
    pub attn_norm_num_groups: Option<usize>,
    pub norm_eps: f64,
    pub resnet_time_scale_shift: String,
    pub add_attention: bool,
    pub class_embed_type: Option<String>,
    pub num_class_embeds: Option<usize>,
    pub num_train_timesteps: Option<usize>,
    /// ddpm-rs's own key (diffusers drops keys that start with `_` unread): the class table's
    /// last row is the null class of classifier-free guidance, so `num_class_embeds` counts it.
    #[serde(rename = "_ddpm_rs_null_class", skip_serializing_if = "std::ops::Not::not")]
    pub null_class: bool,
}

impl Default for UNet2DModelConfig {
    fn default() -> Self {
        let strings = |s: &[&str]| s.iter().map(|&s| s.to_owned()).collect();
        Self {
            class_name: "UNet2DModel".into(),
            diffusers_version: None,
            sample_size: None,
            in_channels: 3,
            out_channels: 3,
            center_input_sample: false,
            time_embedding_type: "positional".into(),
            time_embedding_dim: None,
            freq_shift: 0.0,
            flip_sin_to_cos: true,
            down_block_types: strings(&[
                "DownBlock2D",
                "AttnDownBlock2D",
                "AttnDownBlock2D",
                "AttnDownBlock2D",
            ]),
            mid_block_type: Some("UNetMidBlock2D".into()),
            up_block_types: strings(&[
                "AttnUpBlock2D",
                "AttnUpBlock2D",
                "AttnUpBlock2D",
                "UpBlock2D",
            ]),
            block_out_channels: vec![224, 448, 672, 896],
            layers_per_block: 2,
            mid_block_scale_factor: 1.0,
            downsample_padding: 1,
            downsample_type: "conv".into(),
            upsample_type: "conv".into(),
            dropout: 0.0,
            act_fn: "silu".into(),
            attention_head_dim: Some(8),
            norm_num_groups: 32,
            attn_norm_num_groups: None,
            norm_eps: 1e-5,
            resnet_time_scale_shift: "default".into(),
            add_attention: true,
            class_embed_type: None,
            num_class_embeds: None,
            num_train_timesteps: None,
            null_class: false,
        }
    }
}

/// `key = value` is not something our UNet has.
fn unsupported(key: &str, value: impl std::fmt::Debug, supported: &str) -> String {
    format!("{key} = {value:?} is not supported ({supported})")
}

fn one_of(key: &str, value: &str, allowed: &[&str]) -> Result<(), String> {
    if allowed.contains(&value) {
        Ok(())
    } else {
        Err(unsupported(key, value, &format!("supported: {allowed:?}")))
    }
}

/// Our UNet for a diffusers config; what our UNet cannot express is an error naming the key.
impl TryFrom<&UNet2DModelConfig> for UNetConfig {
    type Error = String;

    fn try_from(c: &UNet2DModelConfig) -> Result<Self, String> {
        if c.class_name != "UNet2DModel" {
            return Err(format!(
                "_class_name is {:?}; only UNet2DModel can be imported",
                c.class_name
            ));
        }
        one_of("act_fn", &c.act_fn, &["silu", "swish"])?;
        one_of("time_embedding_type", &c.time_embedding_type, &["positional"])?;
        one_of("resnet_time_scale_shift", &c.resnet_time_scale_shift, &["default", "scale_shift"])?;
        one_of(
            "mid_block_type",
            c.mid_block_type.as_deref().unwrap_or("null"),
            &["UNetMidBlock2D"],
        )?;
        one_of("downsample_type", &c.downsample_type, &["conv"])?;
        one_of("upsample_type", &c.upsample_type, &["conv"])?;
        if c.center_input_sample {
            return Err("center_input_sample = true is not supported".into());
        }
        if !c.add_attention {
            return Err(
                "add_attention = false is not supported (the DDPM mid block has attention)".into(),
            );
        }
        if c.mid_block_scale_factor != 1.0 {
            return Err("mid_block_scale_factor must be 1".into());
        }
        if let Some(t) = &c.class_embed_type {
            return Err(unsupported("class_embed_type", t, "only an embedding table (null)"));
        }
        let widths = &c.block_out_channels;
        let ch = match widths.first() {
            None => return Err("block_out_channels is empty; expected one width per level".into()),
            Some(_) if widths.contains(&0) => {
                return Err(format!(
                    "block_out_channels {widths:?} holds a zero width; widths must be positive"
                ));
            }
            Some(&ch) => ch,
        };
        if widths.iter().any(|w| w % ch != 0) {
            return Err(format!("block_out_channels {widths:?} are not multiples of the first"));
        }
        if let Some(d) = c.time_embedding_dim.filter(|&d| d != 4 * ch) {
            return Err(unsupported(
                "time_embedding_dim",
                d,
                &format!("only 4 x {ch} = {}", 4 * ch),
            ));
        }
        // diffusers' UNetMidBlock2D drops its attention's GroupNorm under scale_shift unless
        // attn_norm_num_groups is given; ours (improved-diffusion's) always has it.
        if c.resnet_time_scale_shift == "scale_shift" && c.attn_norm_num_groups.is_none() {
            return Err(
                "resnet_time_scale_shift = \"scale_shift\" with attn_norm_num_groups = null \
                        (no GroupNorm in the mid block's attention) is not supported; only with \
                        attn_norm_num_groups = norm_num_groups"
                    .into(),
            );
        }
        if let Some(g) = c.attn_norm_num_groups.filter(|&g| g != c.norm_num_groups) {
            return Err(unsupported("attn_norm_num_groups", g, "only null or norm_num_groups"));
        }
        let (down, up) = (&c.down_block_types, &c.up_block_types);
        if down.len() != widths.len() || up.len() != widths.len() {
            return Err("block type lists and block_out_channels differ in length".into());
        }
        let image_size = match &c.sample_size {
            None => 32,
            Some(SampleSize::Side(s)) => *s,
            Some(SampleSize::HeightWidth(hw)) => match hw[..] {
                [h, w] if h == w => h,
                _ => return Err(unsupported("sample_size", hw, "only square images")),
            },
        };
        let mut attention_resolutions = Vec::new();
        for (i, d) in down.iter().enumerate() {
            let u = &up[widths.len() - 1 - i];
            let down_attn = match d.as_str() {
                "DownBlock2D" => false,
                "AttnDownBlock2D" => true,
                other => return Err(format!("down block {other:?} is not supported")),
            };
            let up_attn = match u.as_str() {
                "UpBlock2D" => false,
                "AttnUpBlock2D" => true,
                other => return Err(format!("up block {other:?} is not supported")),
            };
            if down_attn != up_attn {
                return Err(format!("attention at level {i} on the way down but not up (or back)"));
            }
            if down_attn {
                attention_resolutions.push(image_size >> i);
            }
        }
        let num_classes = match (c.num_class_embeds, c.null_class) {
            (Some(0), true) => return Err("num_class_embeds = 0 with _ddpm_rs_null_class".into()),
            // Written by our export: the table holds the null class already.
            (Some(k), true) => Some(k - 1),
            // diffusers' table has no null class: ours holds one more row (see load_weights).
            (k, _) => k,
        };
        let config = UNetConfig {
            image_size,
            in_channels: c.in_channels,
            out_channels: Some(c.out_channels),
            ch,
            ch_mult: widths.iter().map(|w| w / ch).collect(),
            num_res_blocks: c.layers_per_block,
            attention_resolutions,
            dropout: c.dropout,
            resample_with_conv: true,
            num_groups: c.norm_num_groups,
            norm_eps: c.norm_eps,
            attention_head_dim: c.attention_head_dim,
            num_classes,
            downsample_padding: c.downsample_padding,
            flip_sin_to_cos: c.flip_sin_to_cos,
            freq_shift: c.freq_shift,
            time_scale_shift: c.resnet_time_scale_shift == "scale_shift",
        };
        config.validate().map_err(|e| e.to_string())?;
        Ok(config)
    }
}

impl UNet2DModelConfig {
    /// The diffusers config of our UNet with `out_channels` outputs, every key written out as
    /// `save_pretrained` does. What diffusers' UNet2DModel cannot express is an error naming
    /// our key.
    pub fn from_unet(u: &UNetConfig, out_channels: usize) -> Result<Self, String> {
        if !u.resample_with_conv {
            return Err("model.resample_with_conv = false (average pooling and plain nearest \
                        upsampling) has no UNet2DModel equivalent"
                .into());
        }
        let levels = u.ch_mult.len();
        let attn = |i: usize| u.attention_resolutions.contains(&(u.image_size >> i));
        let block = |i: usize, plain: &str, with: &str| {
            if attn(i) { with.to_owned() } else { plain.to_owned() }
        };
        Ok(Self {
            diffusers_version: Some(DIFFUSERS_VERSION.into()),
            sample_size: Some(SampleSize::Side(u.image_size)),
            in_channels: u.in_channels,
            out_channels,
            freq_shift: u.freq_shift,
            flip_sin_to_cos: u.flip_sin_to_cos,
            down_block_types: (0..levels)
                .map(|i| block(i, "DownBlock2D", "AttnDownBlock2D"))
                .collect(),
            up_block_types: (0..levels)
                .rev()
                .map(|i| block(i, "UpBlock2D", "AttnUpBlock2D"))
                .collect(),
            block_out_channels: u.ch_mult.iter().map(|m| m * u.ch).collect(),
            layers_per_block: u.num_res_blocks,
            downsample_padding: u.downsample_padding,
            dropout: u.dropout,
            attention_head_dim: u.attention_head_dim,
            norm_num_groups: u.num_groups,
            norm_eps: u.norm_eps,
            num_class_embeds: u.num_classes.map(|k| k + 1),
            null_class: u.num_classes.is_some(),
            resnet_time_scale_shift: if u.time_scale_shift { "scale_shift" } else { "default" }
                .into(),
            // Under scale_shift diffusers' mid block has an attention GroupNorm only if asked.
            attn_norm_num_groups: u.time_scale_shift.then_some(u.num_groups),
            ..Self::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_unets_survive_the_trip_through_diffusers_config() {
        for u in [
            UNetConfig::ddpm_cifar10(),
            UNetConfig {
                image_size: 16,
                in_channels: 1,
                ch: 16,
                ch_mult: vec![1, 2],
                num_res_blocks: 1,
                attention_resolutions: vec![8],
                num_groups: 8,
                attention_head_dim: Some(8),
                num_classes: Some(10),
                downsample_padding: 1,
                flip_sin_to_cos: true,
                freq_shift: 0.0,
                time_scale_shift: true,
                ..UNetConfig::default()
            },
        ] {
            let out = u.in_channels;
            let d = UNet2DModelConfig::from_unet(&u, out).unwrap();
            let json = serde_json::to_string(&d).unwrap();
            let back: UNet2DModelConfig = serde_json::from_str(&json).unwrap();
            assert_eq!(back, d);
            let ours = UNetConfig::try_from(&back).unwrap();
            assert_eq!(ours, UNetConfig { out_channels: Some(out), ..u });
        }
    }

    #[test]
    fn what_unet2dmodel_cannot_express_is_refused_by_name() {
        let u = UNetConfig { resample_with_conv: false, ..UNetConfig::default() };
        let e = UNet2DModelConfig::from_unet(&u, 3).unwrap_err();
        assert!(e.contains("resample_with_conv"), "{e}");
        let base = UNet2DModelConfig::from_unet(&UNetConfig::default(), 3).unwrap();
        for (c, needle) in [
            (
                UNet2DModelConfig { time_embedding_dim: Some(100), ..base.clone() },
                "time_embedding_dim",
            ),
            (
                UNet2DModelConfig { attn_norm_num_groups: Some(4), ..base.clone() },
                "attn_norm_num_groups",
            ),
            (UNet2DModelConfig { act_fn: "gelu".into(), ..base.clone() }, "act_fn"),
            (
                UNet2DModelConfig { resnet_time_scale_shift: "ada_group".into(), ..base.clone() },
                "resnet_time_scale_shift",
            ),
            (
                UNet2DModelConfig { resnet_time_scale_shift: "scale_shift".into(), ..base.clone() },
                "attn_norm_num_groups = null",
            ),
            (
                UNet2DModelConfig {
                    sample_size: Some(SampleSize::HeightWidth(vec![32, 64])),
                    ..base.clone()
                },
                "sample_size",
            ),
            (
                UNet2DModelConfig { class_embed_type: Some("timestep".into()), ..base },
                "class_embed_type",
            ),
        ] {
            let e = UNetConfig::try_from(&c).unwrap_err();
            assert!(e.contains(needle), "{needle}: {e}");
        }
    }
}
