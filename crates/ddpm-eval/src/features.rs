//! Running image sets through the Inception network in batches.

use crate::error::Result;
use crate::images::to_rgb;
use crate::inception::FidInception;
use tch::{Device, Tensor};

/// pool3 [N, 2048] and logits [N, 1008] of images [N, C, H, W] in [0, 1], on the CPU; with
/// sFID's spatial features [N, 2023] when asked for.
#[derive(Debug)]
pub struct Features {
    pub pool3: Tensor,
    pub logits: Tensor,
    pub spatial: Option<Tensor>,
}

pub fn inception_features(
    net: &FidInception,
    images: &Tensor,
    batch: usize,
    progress: &mut dyn FnMut(usize),
) -> Result<Features> {
    inception_features_with_spatial(net, images, batch, false, progress)
}

/// As [`inception_features`], also collecting the spatial features when `spatial` is true.
/// Images of other than 1 or 3 channels are an error (see [`crate::images::check_channels`]).
pub fn inception_features_with_spatial(
    net: &FidInception,
    images: &Tensor,
    batch: usize,
    spatial: bool,
    progress: &mut dyn FnMut(usize),
) -> Result<Features> {
    crate::images::check_images(images, "images")?;
    let n = images.size()[0];
    let (mut pool3, mut logits, mut spatials) = (Vec::new(), Vec::new(), Vec::new());
    let mut done = 0;
    for start in (0..n).step_by(batch.max(1)) {
        let b = (batch as i64).min(n - start);
        let out =
            net.forward_with_spatial(&to_rgb(&images.narrow(0, start, b), "images")?, spatial);
        pool3.push(out.pool3.to_device(Device::Cpu));
        logits.push(out.logits.to_device(Device::Cpu));
        if let Some(s) = out.spatial {
            spatials.push(s.to_device(Device::Cpu));
        }
        done += b as usize;
        progress(done);
    }
    Ok(Features {
        pool3: Tensor::cat(&pool3, 0),
        logits: Tensor::cat(&logits, 0),
        spatial: spatial.then(|| Tensor::cat(&spatials, 0)),
    })
}
