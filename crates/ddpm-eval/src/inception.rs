//! A port of pytorch-fid's FID Inception-v3 (mseitzer/pytorch-fid `inception.py`), the network
//! papers' FIDs come from: torchvision's Inception-v3 layout with the TF-compatible blocks
//! FIDInceptionA/C/E_1/E_2 (average pools that exclude padding, a 3x3 max pool in Mixed_7c's
//! pool branch), convolutions without bias followed by BatchNorm(eps 0.001) and ReLU, and a
//! 1008-way `fc`. Parameter names are pytorch-fid's state-dict keys
//! (`Conv2d_1a_3x3.conv.weight`, `Mixed_6b.branch7x7_2.bn.running_var`, `fc.weight`; 472 in all).
//!
//! Input handling is pytorch-fid's: images in [0, 1], resized bilinearly to 299x299
//! (align_corners false, no antialiasing; identity at 299), then scaled to [-1, 1].
//!
//! # sFID's spatial features: which layer `mixed_6/conv:0` is
//!
//! guided-diffusion's `evaluations/evaluator.py` (openai/guided-diffusion) computes sFID from
//! `FID_SPATIAL_NAME = "mixed_6/conv:0"` of the TF graph `classify_image_graph_def.pb`
//! (inception-2015-12-05, the graph pytorch-fid's weights were converted from), keeps
//! `spatial[..., :7]` and flattens each image with `reshape([N, -1])`. In that graph:
//! - blocks are named `mixed, mixed_1, ..., mixed_10`: `mixed..mixed_2` are the 35x35 blocks
//!   Mixed_5b-5d, `mixed_3` the grid reduction Mixed_6a, `mixed_4..mixed_7` the four 17x17
//!   blocks Mixed_6b-6e, so `mixed_6` is **Mixed_6d** (a weight converter from that graph to
//!   pytorch-fid's keys maps `mixed_6/conv/conv2d_params` to `Mixed_6d.branch1x1.conv` and
//!   `mixed_6/conv/batchnorm` to `Mixed_6d.branch1x1.bn`; a dump of the graph's conv units
//!   lists `mixed_6/conv` first in `mixed_6`, before `mixed_6/tower/conv..conv_2` (the 7x7 branch),
//!   `mixed_6/tower_1/conv..conv_4` (the double 7x7 branch) and `mixed_6/tower_2/pool`, `/conv`);
//! - a conv unit `X` is the op sequence `X/conv2d_params` (Const), `X/Conv2D`,
//!   `X/batchnorm/{beta,gamma,moving_mean,moving_variance}`, `X/batchnorm`
//!   (BatchNormWithGlobalNormalization), `X/CheckNumerics`, `X/control_dependency`, and last
//!   the op named `X` itself (the graph's node list, e.g. `conv/Conv2D, conv/batchnorm,
//!   conv/CheckNumerics, conv/control_dependency, conv, conv_1/conv2d_params, ...`). The pool
//!   units end the same way (`pool/CheckNumerics, pool/control_dependency, pool`, where `pool`
//!   is the MaxPool). The only op after the batch norm that is not an identity is the one
//!   named `X`: the unit's ReLU (pytorch-fid's BasicConv2d, conv -> bn -> relu, reproduces
//!   this graph's pool_3, so every unit ends in its ReLU).
//!
//! So `mixed_6/conv:0` is the output of `Mixed_6d.branch1x1` **after its batch norm and ReLU**
//! (17x17x192, NHWC in TF). The spatial features are its first 7 channels flattened in NHWC
//! order, index (h * 17 + w) * 7 + c: 2023 values per image ([`InceptionOutput::spatial`]).
//! `tests/inception_parity.rs` checks them against a forward hook on pytorch-fid's
//! `Mixed_6d.branch1x1`.

use crate::error::{EvalError, Result};
use ddpm_nets::tensorfile::{TensorFile, load_varstore};
use std::path::Path;
use tch::nn::{self, Init, VarStore};
use tch::{Device, Kind, Tensor};

/// Conv (no bias) + BatchNorm(eps = 0.001, inference statistics) + ReLU.
#[derive(Debug)]
struct BasicConv {
    weight: Tensor,
    bn_weight: Tensor,
    bn_bias: Tensor,
    running_mean: Tensor,
    running_var: Tensor,
    stride: [i64; 2],
    padding: [i64; 2],
}

impl BasicConv {
    fn new(
        vs: nn::Path,
        c_in: i64,
        c_out: i64,
        k: [i64; 2],
        stride: i64,
        padding: [i64; 2],
    ) -> Self {
        let conv = &vs / "conv";
        let bn = &vs / "bn";
        Self {
            weight: conv.var("weight", &[c_out, c_in, k[0], k[1]], Init::Const(0.0)),
            bn_weight: bn.var("weight", &[c_out], Init::Const(1.0)),
            bn_bias: bn.var("bias", &[c_out], Init::Const(0.0)),
            running_mean: bn.zeros_no_train("running_mean", &[c_out]),
            running_var: bn.ones_no_train("running_var", &[c_out]),
            stride: [stride, stride],
            padding,
        }
    }

    fn sq(vs: nn::Path, c_in: i64, c_out: i64, k: i64, stride: i64, padding: i64) -> Self {
        Self::new(vs, c_in, c_out, [k, k], stride, [padding, padding])
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let y = x.conv2d(&self.weight, None::<Tensor>, self.stride, self.padding, [1, 1], 1);
        y.batch_norm(
            Some(&self.bn_weight),
            Some(&self.bn_bias),
            Some(&self.running_mean),
            Some(&self.running_var),
            false,
            0.1,
            1e-3,
            true,
        )
        .relu()
    }
}

fn avg_pool_3x3_no_pad_count(x: &Tensor) -> Tensor {
    x.avg_pool2d([3, 3], [1, 1], [1, 1], false, false, None::<i64>)
}

/// FIDInceptionA (Mixed_5b-5d).
#[derive(Debug)]
struct BlockA {
    b1x1: BasicConv,
    b5x5_1: BasicConv,
    b5x5_2: BasicConv,
    b3dbl_1: BasicConv,
    b3dbl_2: BasicConv,
    b3dbl_3: BasicConv,
    pool: BasicConv,
}

impl BlockA {
    fn new(vs: nn::Path, c_in: i64, pool_features: i64) -> Self {
        Self {
            b1x1: BasicConv::sq(&vs / "branch1x1", c_in, 64, 1, 1, 0),
            b5x5_1: BasicConv::sq(&vs / "branch5x5_1", c_in, 48, 1, 1, 0),
            b5x5_2: BasicConv::sq(&vs / "branch5x5_2", 48, 64, 5, 1, 2),
            b3dbl_1: BasicConv::sq(&vs / "branch3x3dbl_1", c_in, 64, 1, 1, 0),
            b3dbl_2: BasicConv::sq(&vs / "branch3x3dbl_2", 64, 96, 3, 1, 1),
            b3dbl_3: BasicConv::sq(&vs / "branch3x3dbl_3", 96, 96, 3, 1, 1),
            pool: BasicConv::sq(&vs / "branch_pool", c_in, pool_features, 1, 1, 0),
        }
    }
    fn forward(&self, x: &Tensor) -> Tensor {
        let a = self.b1x1.forward(x);
        let b = self.b5x5_2.forward(&self.b5x5_1.forward(x));
        let c = self.b3dbl_3.forward(&self.b3dbl_2.forward(&self.b3dbl_1.forward(x)));
        let d = self.pool.forward(&avg_pool_3x3_no_pad_count(x));
        Tensor::cat(&[a, b, c, d], 1)
    }
}

/// InceptionB (Mixed_6a).
#[derive(Debug)]
struct BlockB {
    b3x3: BasicConv,
    b3dbl_1: BasicConv,
    b3dbl_2: BasicConv,
    b3dbl_3: BasicConv,
}

impl BlockB {
    fn new(vs: nn::Path, c_in: i64) -> Self {
        Self {
            b3x3: BasicConv::sq(&vs / "branch3x3", c_in, 384, 3, 2, 0),
            b3dbl_1: BasicConv::sq(&vs / "branch3x3dbl_1", c_in, 64, 1, 1, 0),
            b3dbl_2: BasicConv::sq(&vs / "branch3x3dbl_2", 64, 96, 3, 1, 1),
            b3dbl_3: BasicConv::sq(&vs / "branch3x3dbl_3", 96, 96, 3, 2, 0),
        }
    }
    fn forward(&self, x: &Tensor) -> Tensor {
        let a = self.b3x3.forward(x);
        let b = self.b3dbl_3.forward(&self.b3dbl_2.forward(&self.b3dbl_1.forward(x)));
        let c = x.max_pool2d([3, 3], [2, 2], [0, 0], [1, 1], false);
        Tensor::cat(&[a, b, c], 1)
    }
}

/// FIDInceptionC (Mixed_6b-6e).
#[derive(Debug)]
struct BlockC {
    b1x1: BasicConv,
    b7_1: BasicConv,
    b7_2: BasicConv,
    b7_3: BasicConv,
    b7dbl: [BasicConv; 5],
    pool: BasicConv,
}

impl BlockC {
    fn new(vs: nn::Path, c_in: i64, c7: i64) -> Self {
        let (h, v) = ([1, 7], [7, 1]);
        let (ph, pv) = ([0, 3], [3, 0]);
        Self {
            b1x1: BasicConv::sq(&vs / "branch1x1", c_in, 192, 1, 1, 0),
            b7_1: BasicConv::sq(&vs / "branch7x7_1", c_in, c7, 1, 1, 0),
            b7_2: BasicConv::new(&vs / "branch7x7_2", c7, c7, h, 1, ph),
            b7_3: BasicConv::new(&vs / "branch7x7_3", c7, 192, v, 1, pv),
            b7dbl: [
                BasicConv::sq(&vs / "branch7x7dbl_1", c_in, c7, 1, 1, 0),
                BasicConv::new(&vs / "branch7x7dbl_2", c7, c7, v, 1, pv),
                BasicConv::new(&vs / "branch7x7dbl_3", c7, c7, h, 1, ph),
                BasicConv::new(&vs / "branch7x7dbl_4", c7, c7, v, 1, pv),
                BasicConv::new(&vs / "branch7x7dbl_5", c7, 192, h, 1, ph),
            ],
            pool: BasicConv::sq(&vs / "branch_pool", c_in, 192, 1, 1, 0),
        }
    }
    /// The block's output, and branch1x1's output (whose first 7 channels at Mixed_6d are sFID's features).
    fn forward(&self, x: &Tensor) -> (Tensor, Tensor) {
        let a = self.b1x1.forward(x);
        let b = self.b7_3.forward(&self.b7_2.forward(&self.b7_1.forward(x)));
        let c = self.b7dbl.iter().fold(x.shallow_clone(), |h, l| l.forward(&h));
        let d = self.pool.forward(&avg_pool_3x3_no_pad_count(x));
        (Tensor::cat(&[&a, &b, &c, &d], 1), a)
    }
}

/// InceptionD (Mixed_7a).
#[derive(Debug)]
struct BlockD {
    b3_1: BasicConv,
    b3_2: BasicConv,
    b7: [BasicConv; 4],
}

impl BlockD {
    fn new(vs: nn::Path, c_in: i64) -> Self {
        Self {
            b3_1: BasicConv::sq(&vs / "branch3x3_1", c_in, 192, 1, 1, 0),
            b3_2: BasicConv::sq(&vs / "branch3x3_2", 192, 320, 3, 2, 0),
            b7: [
                BasicConv::sq(&vs / "branch7x7x3_1", c_in, 192, 1, 1, 0),
                BasicConv::new(&vs / "branch7x7x3_2", 192, 192, [1, 7], 1, [0, 3]),
                BasicConv::new(&vs / "branch7x7x3_3", 192, 192, [7, 1], 1, [3, 0]),
                BasicConv::sq(&vs / "branch7x7x3_4", 192, 192, 3, 2, 0),
            ],
        }
    }
    fn forward(&self, x: &Tensor) -> Tensor {
        let a = self.b3_2.forward(&self.b3_1.forward(x));
        let b = self.b7.iter().fold(x.shallow_clone(), |h, l| l.forward(&h));
        let c = x.max_pool2d([3, 3], [2, 2], [0, 0], [1, 1], false);
        Tensor::cat(&[a, b, c], 1)
    }
}

/// FIDInceptionE_1 (Mixed_7b, average pool) and FIDInceptionE_2 (Mixed_7c, max pool).
#[derive(Debug)]
struct BlockE {
    b1x1: BasicConv,
    b3_1: BasicConv,
    b3_2a: BasicConv,
    b3_2b: BasicConv,
    b3dbl_1: BasicConv,
    b3dbl_2: BasicConv,
    b3dbl_3a: BasicConv,
    b3dbl_3b: BasicConv,
    pool: BasicConv,
    max_pool: bool,
}

impl BlockE {
    fn new(vs: nn::Path, c_in: i64, max_pool: bool) -> Self {
        Self {
            b1x1: BasicConv::sq(&vs / "branch1x1", c_in, 320, 1, 1, 0),
            b3_1: BasicConv::sq(&vs / "branch3x3_1", c_in, 384, 1, 1, 0),
            b3_2a: BasicConv::new(&vs / "branch3x3_2a", 384, 384, [1, 3], 1, [0, 1]),
            b3_2b: BasicConv::new(&vs / "branch3x3_2b", 384, 384, [3, 1], 1, [1, 0]),
            b3dbl_1: BasicConv::sq(&vs / "branch3x3dbl_1", c_in, 448, 1, 1, 0),
            b3dbl_2: BasicConv::sq(&vs / "branch3x3dbl_2", 448, 384, 3, 1, 1),
            b3dbl_3a: BasicConv::new(&vs / "branch3x3dbl_3a", 384, 384, [1, 3], 1, [0, 1]),
            b3dbl_3b: BasicConv::new(&vs / "branch3x3dbl_3b", 384, 384, [3, 1], 1, [1, 0]),
            pool: BasicConv::sq(&vs / "branch_pool", c_in, 192, 1, 1, 0),
            max_pool,
        }
    }
    fn forward(&self, x: &Tensor) -> Tensor {
        let a = self.b1x1.forward(x);
        let t = self.b3_1.forward(x);
        let b = Tensor::cat(&[self.b3_2a.forward(&t), self.b3_2b.forward(&t)], 1);
        let u = self.b3dbl_2.forward(&self.b3dbl_1.forward(x));
        let c = Tensor::cat(&[self.b3dbl_3a.forward(&u), self.b3dbl_3b.forward(&u)], 1);
        let p = if self.max_pool {
            x.max_pool2d([3, 3], [1, 1], [1, 1], [1, 1], false)
        } else {
            avg_pool_3x3_no_pad_count(x)
        };
        let d = self.pool.forward(&p);
        Tensor::cat(&[a, b, c, d], 1)
    }
}

/// What one forward pass yields per image.
#[derive(Debug)]
pub struct InceptionOutput {
    /// The 2048-d average-pool features (FID).
    pub pool3: Tensor,
    /// pool3 . fc.weight^T, 1008-way (Inception Score; the bias is not used, as in the TF original).
    pub logits: Tensor,
    /// sFID's spatial features when asked for ([`FidInception::forward_with_spatial`]): the first
    /// 7 channels of Mixed_6d.branch1x1 (after BN and ReLU) flattened in TF's NHWC order,
    /// 17 x 17 x 7 = 2023 per image (see the module doc).
    pub spatial: Option<Tensor>,
}

/// Dimension of sFID's spatial features: 17 x 17 x 7.
pub const SPATIAL_DIM: i64 = 17 * 17 * 7;

/// pytorch-fid's FID Inception-v3.
#[derive(Debug)]
pub struct FidInception {
    pub vs: VarStore,
    stem: Vec<BasicConv>,
    mixed_5: [BlockA; 3],
    mixed_6a: BlockB,
    mixed_6: [BlockC; 4],
    mixed_7a: BlockD,
    mixed_7b: BlockE,
    mixed_7c: BlockE,
    fc_weight: Tensor,
}

/// Where the converted weights live by default: `$DDPM_HOME/inception/pt_inception-2015-12-05.safetensors`.
pub fn default_weights_path() -> std::path::PathBuf {
    ddpm_io::ddpm_home().join("inception/pt_inception-2015-12-05.safetensors")
}

impl FidInception {
    /// The architecture with unloaded (constant) weights on `device`.
    pub fn new(device: Device) -> Self {
        let vs = VarStore::new(device);
        let r = vs.root();
        let stem = vec![
            BasicConv::sq(&r / "Conv2d_1a_3x3", 3, 32, 3, 2, 0),
            BasicConv::sq(&r / "Conv2d_2a_3x3", 32, 32, 3, 1, 0),
            BasicConv::sq(&r / "Conv2d_2b_3x3", 32, 64, 3, 1, 1),
            BasicConv::sq(&r / "Conv2d_3b_1x1", 64, 80, 1, 1, 0),
            BasicConv::sq(&r / "Conv2d_4a_3x3", 80, 192, 3, 1, 0),
        ];
        let mixed_5 = [
            BlockA::new(&r / "Mixed_5b", 192, 32),
            BlockA::new(&r / "Mixed_5c", 256, 64),
            BlockA::new(&r / "Mixed_5d", 288, 64),
        ];
        let mixed_6a = BlockB::new(&r / "Mixed_6a", 288);
        let mixed_6 = [
            BlockC::new(&r / "Mixed_6b", 768, 128),
            BlockC::new(&r / "Mixed_6c", 768, 160),
            BlockC::new(&r / "Mixed_6d", 768, 160),
            BlockC::new(&r / "Mixed_6e", 768, 192),
        ];
        let mixed_7a = BlockD::new(&r / "Mixed_7a", 768);
        let mixed_7b = BlockE::new(&r / "Mixed_7b", 1280, false);
        let mixed_7c = BlockE::new(&r / "Mixed_7c", 2048, true);
        let fc = &r / "fc";
        let fc_weight = fc.var("weight", &[1008, 2048], Init::Const(0.0));
        let _fc_bias = fc.var("bias", &[1008], Init::Const(0.0));
        Self { vs, stem, mixed_5, mixed_6a, mixed_6, mixed_7a, mixed_7b, mixed_7c, fc_weight }
    }

    /// The network with weights from a safetensors file (see `cargo xtask convert-inception`).
    pub fn load(path: &Path, device: Device) -> Result<Self> {
        if !path.exists() {
            return Err(EvalError::MissingWeights(path.to_path_buf()));
        }
        let net = Self::new(device);
        let file = TensorFile::open(path)?;
        load_varstore(&net.vs, &file, "")?;
        Ok(net)
    }

    /// pool3 and logits of a batch of images in [0, 1] (no spatial features).
    ///
    /// # Shapes
    /// - `images`: [B, 3, H, W] float in [0, 1] (any H, W; resized to 299)
    pub fn forward(&self, images: &Tensor) -> InceptionOutput {
        self.forward_with_spatial(images, false)
    }

    /// As [`Self::forward`], and sFID's spatial features [B, 2023] when `spatial` is true
    /// (the FID path takes no copy of them when false).
    pub fn forward_with_spatial(&self, images: &Tensor, spatial: bool) -> InceptionOutput {
        let _g = tch::no_grad_guard();
        let (_, c, h, w) = images.size4().expect("images are 4-D");
        assert_eq!(c, 3, "the Inception network takes 3-channel images");
        let x = images.to_kind(Kind::Float).to_device(self.vs.device());
        let x = if (h, w) == (299, 299) {
            x
        } else {
            x.upsample_bilinear2d([299, 299], false, None, None)
        };
        let mut x = x * 2.0 - 1.0;
        for (i, l) in self.stem.iter().enumerate() {
            x = l.forward(&x);
            if i == 2 || i == 4 {
                x = x.max_pool2d([3, 3], [2, 2], [0, 0], [1, 1], false);
            }
        }
        for b in &self.mixed_5 {
            x = b.forward(&x);
        }
        x = self.mixed_6a.forward(&x);
        let mut spatial_features = None;
        for (i, b) in self.mixed_6.iter().enumerate() {
            let (y, branch1x1) = b.forward(&x);
            // Mixed_6d is TF's mixed_6; [B, 7, 17, 17] -> NHWC -> [B, 2023] as the evaluator flattens.
            if i == 2 && spatial {
                let first7 = branch1x1.narrow(1, 0, 7).permute([0, 2, 3, 1]);
                spatial_features = Some(first7.flatten(1, -1));
            }
            x = y;
        }
        x = self.mixed_7c.forward(&self.mixed_7b.forward(&self.mixed_7a.forward(&x)));
        let pool3 = x.adaptive_avg_pool2d([1, 1]).flatten(1, -1);
        let logits = pool3.matmul(&self.fc_weight.tr());
        InceptionOutput { pool3, logits, spatial: spatial_features }
    }
}
