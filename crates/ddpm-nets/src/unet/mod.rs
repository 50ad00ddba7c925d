//! The DDPM UNet (Ho et al. 2020, "Denoising Diffusion Probabilistic Models", arXiv:2006.11239,
//! Appendix B), a PixelCNN++-style backbone with Wide-ResNet blocks, GroupNorm, sinusoidal time
//! embedding and self-attention at chosen resolutions.
//!
//! Parameter names follow diffusers' `UNet2DModel` (`down_blocks.1.attentions.0.to_q.weight`, ...),
//! so a diffusers checkpoint of the same configuration loads key for key (see [`crate::diffusers`]).

mod blocks;

pub use blocks::{AttentionBlock, Downsample, ResnetBlock, ResnetOptions, Upsample};

use crate::config::UNetConfig;
use crate::embedding::timestep_embedding;
use crate::error::Result;
use crate::init;
use tch::nn::{self, Module};
use tch::{Kind, Tensor};

#[derive(Debug)]
struct Level {
    resnets: Vec<ResnetBlock>,
    attentions: Vec<AttentionBlock>,
    resample_down: Option<Downsample>,
    resample_up: Option<Upsample>,
}

/// The UNet epsilon_theta(x_t, t) (or x0/v, or with variance channels).
#[derive(Debug)]
pub struct UNet {
    pub config: UNetConfig,
    pub out_channels: i64,
    conv_in: nn::Conv2D,
    time_linear_1: nn::Linear,
    time_linear_2: nn::Linear,
    class_embedding: Option<nn::Embedding>,
    down: Vec<Level>,
    mid_resnet_1: ResnetBlock,
    mid_attention: AttentionBlock,
    mid_resnet_2: ResnetBlock,
    up: Vec<Level>,
    conv_norm_out: nn::GroupNorm,
    conv_out: nn::Conv2D,
}

impl UNet {
    /// Builds the network under `vs` (its keys are diffusers' names) with `out_channels` outputs.
    pub fn new(vs: &nn::Path, config: &UNetConfig, out_channels: usize) -> Result<Self> {
        config.validate()?;
        let c = config;
        let ch = c.ch as i64;
        let temb = 4 * ch;
        let groups = c.num_groups as i64;
        let eps = c.norm_eps;
        let widths: Vec<i64> = c.ch_mult.iter().map(|&m| ch * m as i64).collect();
        let levels = widths.len();
        let resolutions = c.level_resolutions();
        let heads = |width: i64| c.attention_head_dim.map_or(1, |hd| width / hd as i64);
        let has_attn = |level: usize| c.attention_resolutions.contains(&resolutions[level]);
        let options = ResnetOptions {
            temb,
            groups,
            eps,
            dropout: c.dropout,
            time_scale_shift: c.time_scale_shift,
        };
        let block = |p: nn::Path, cin, cout| ResnetBlock::new(p, cin, cout, &options);

        let conv_in = init::conv2d(vs / "conv_in", c.in_channels as i64, ch, 3, 1, 1, 1.0);
        let time_linear_1 = init::linear(vs / "time_embedding" / "linear_1", ch, temb, 1.0);
        let time_linear_2 = init::linear(vs / "time_embedding" / "linear_2", temb, temb, 1.0);
        let class_embedding = c.num_classes.map(|n| {
            // n classes plus the null class used for classifier-free guidance.
            nn::embedding(vs / "class_embedding", n as i64 + 1, temb, Default::default())
        });

        let mut down = Vec::with_capacity(levels);
        let mut prev = ch;
        for (i, &width) in widths.iter().enumerate() {
            let p = vs / "down_blocks" / i;
            let resnets = (0..c.num_res_blocks)
                .map(|j| block(&p / "resnets" / j, if j == 0 { prev } else { width }, width))
                .collect();
            let attentions = if has_attn(i) {
                (0..c.num_res_blocks)
                    .map(|j| {
                        AttentionBlock::new(&p / "attentions" / j, width, heads(width), groups, eps)
                    })
                    .collect()
            } else {
                Vec::new()
            };
            let resample_down = (i + 1 < levels).then(|| {
                Downsample::new(
                    &p / "downsamplers" / 0,
                    width,
                    c.resample_with_conv,
                    c.downsample_padding as i64,
                )
            });
            down.push(Level { resnets, attentions, resample_down, resample_up: None });
            prev = width;
        }

        let mid_w = widths[levels - 1];
        let mp = vs / "mid_block";
        let mid_resnet_1 = block(&mp / "resnets" / 0, mid_w, mid_w);
        let mid_attention =
            AttentionBlock::new(&mp / "attentions" / 0, mid_w, heads(mid_w), groups, eps);
        let mid_resnet_2 = block(&mp / "resnets" / 1, mid_w, mid_w);

        let rev: Vec<i64> = widths.iter().rev().copied().collect();
        let mut up = Vec::with_capacity(levels);
        let mut prev_out = mid_w;
        for (k, &width) in rev.iter().enumerate() {
            let level = levels - 1 - k;
            let skip_in = rev[(k + 1).min(levels - 1)];
            let p = vs / "up_blocks" / k;
            let n = c.num_res_blocks + 1;
            let resnets = (0..n)
                .map(|j| {
                    let res_in = if j == 0 { prev_out } else { width };
                    let skip = if j == n - 1 { skip_in } else { width };
                    block(&p / "resnets" / j, res_in + skip, width)
                })
                .collect();
            let attentions = if has_attn(level) {
                (0..n)
                    .map(|j| {
                        AttentionBlock::new(&p / "attentions" / j, width, heads(width), groups, eps)
                    })
                    .collect()
            } else {
                Vec::new()
            };
            let resample_up = (level > 0)
                .then(|| Upsample::new(&p / "upsamplers" / 0, width, c.resample_with_conv));
            up.push(Level { resnets, attentions, resample_down: None, resample_up });
            prev_out = width;
        }

        Ok(Self {
            config: config.clone(),
            out_channels: out_channels as i64,
            conv_in,
            time_linear_1,
            time_linear_2,
            class_embedding,
            down,
            mid_resnet_1,
            mid_attention,
            mid_resnet_2,
            up,
            conv_norm_out: init::group_norm(vs / "conv_norm_out", groups, ch, eps),
            conv_out: init::conv2d(vs / "conv_out", ch, out_channels as i64, 3, 1, 1, 0.0),
        })
    }

    /// The time (and class) embedding, passed through SiLU as every res block uses it.
    fn embedding(&self, t: &Tensor, y: Option<&Tensor>, batch: i64) -> Tensor {
        let c = &self.config;
        let t = if t.dim() == 0 { t.expand([batch], false) } else { t.shallow_clone() };
        let e = timestep_embedding(&t, c.ch as i64, c.flip_sin_to_cos, c.freq_shift);
        let mut emb = self.time_linear_2.forward(&self.time_linear_1.forward(&e).silu());
        if let Some(class_emb) = &self.class_embedding {
            let labels = match y {
                Some(y) => y.shallow_clone(),
                None => {
                    Tensor::full([batch], c.num_classes.unwrap() as i64, (Kind::Int64, t.device()))
                }
            };
            emb = emb + class_emb.forward(&labels);
        }
        emb.silu()
    }

    /// epsilon_theta(x_t, t[, y]).
    ///
    /// # Shapes
    /// - `x_t`: [B, C_in, H, W]
    /// - `t`: [B] or scalar, the (original-process) timestep as a float
    /// - `y`: [B] int64 class labels in 0..num_classes, or num_classes for "no class"; for an
    ///   unconditional model it must be `None`, for a conditional one `None` means the null class
    /// - returns [B, out_channels, H, W]
    pub fn forward_t(&self, x_t: &Tensor, t: &Tensor, y: Option<&Tensor>, train: bool) -> Tensor {
        let batch = x_t.size()[0];
        let emb = self.embedding(t, y, batch);
        let mut h = self.conv_in.forward(x_t);
        let mut skips = vec![h.shallow_clone()];
        for level in &self.down {
            for (j, resnet) in level.resnets.iter().enumerate() {
                h = resnet.forward_t(&h, &emb, train);
                if let Some(attn) = level.attentions.get(j) {
                    h = attn.forward(&h);
                }
                skips.push(h.shallow_clone());
            }
            if let Some(d) = &level.resample_down {
                h = d.forward(&h);
                skips.push(h.shallow_clone());
            }
        }
        h = self.mid_resnet_1.forward_t(&h, &emb, train);
        h = self.mid_attention.forward(&h);
        h = self.mid_resnet_2.forward_t(&h, &emb, train);
        for level in &self.up {
            for (j, resnet) in level.resnets.iter().enumerate() {
                let skip = skips.pop().expect("skip connections balance");
                h = resnet.forward_t(&Tensor::cat(&[&h, &skip], 1), &emb, train);
                if let Some(attn) = level.attentions.get(j) {
                    h = attn.forward(&h);
                }
            }
            if let Some(u) = &level.resample_up {
                h = u.forward(&h);
            }
        }
        debug_assert!(skips.is_empty());
        self.conv_out.forward(&self.conv_norm_out.forward(&h).silu())
    }
}
