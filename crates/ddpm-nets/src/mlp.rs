//! A small residual MLP denoiser for 2-D data (the Sohl-Dickstein swiss roll and friends):
//! eps_theta(x_t, t) with a sinusoidal time embedding injected into every block.

use crate::config::MlpConfig;
use crate::embedding::timestep_embedding;
use crate::init;
use tch::nn::{self, Module};
use tch::{Kind, Tensor};

#[derive(Debug)]
struct Block {
    fc1: nn::Linear,
    temb: nn::Linear,
    fc2: nn::Linear,
}

#[derive(Debug)]
pub struct Mlp {
    pub config: MlpConfig,
    pub out_dim: i64,
    time_mlp: nn::Linear,
    class_embedding: Option<nn::Embedding>,
    input: nn::Linear,
    blocks: Vec<Block>,
    output: nn::Linear,
}

impl Mlp {
    pub fn new(vs: &nn::Path, config: &MlpConfig, out_dim: usize) -> Self {
        let h = config.hidden as i64;
        let te = config.time_embed_dim as i64;
        let blocks = (0..config.layers)
            .map(|i| {
                let p = vs / "blocks" / i;
                Block {
                    fc1: init::linear(&p / "fc1", h, h, 1.0),
                    temb: init::linear(&p / "temb", h, h, 1.0),
                    fc2: init::linear(&p / "fc2", h, h, 0.0),
                }
            })
            .collect();
        Self {
            config: config.clone(),
            out_dim: out_dim as i64,
            time_mlp: init::linear(vs / "time_mlp", te, h, 1.0),
            class_embedding: config.num_classes.map(|n| {
                nn::embedding(vs / "class_embedding", n as i64 + 1, h, Default::default())
            }),
            input: init::linear(vs / "input", config.dim as i64, h, 1.0),
            blocks,
            output: init::linear(vs / "output", h, out_dim as i64, 0.0),
        }
    }

    /// # Shapes
    /// - `x_t`: [B, dim], `t`: [B] float, `y`: [B] int64 or none
    /// - returns [B, out_dim]
    pub fn forward_t(&self, x_t: &Tensor, t: &Tensor, y: Option<&Tensor>, _train: bool) -> Tensor {
        let batch = x_t.size()[0];
        let t = if t.dim() == 0 { t.expand([batch], false) } else { t.shallow_clone() };
        let mut temb = self.time_mlp.forward(&timestep_embedding(
            &t,
            self.config.time_embed_dim as i64,
            false,
            1.0,
        ));
        if let Some(ce) = &self.class_embedding {
            let labels = match y {
                Some(y) => y.shallow_clone(),
                None => Tensor::full(
                    [batch],
                    self.config.num_classes.unwrap() as i64,
                    (Kind::Int64, x_t.device()),
                ),
            };
            temb = temb + ce.forward(&labels);
        }
        let temb = temb.silu();
        let mut h = self.input.forward(x_t);
        for b in &self.blocks {
            let z = b.fc1.forward(&h.silu()) + b.temb.forward(&temb);
            h = h + b.fc2.forward(&z.silu());
        }
        self.output.forward(&h.silu())
    }
}
