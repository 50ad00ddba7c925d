//! The weights of a diffusers `UNet2DModel` (`diffusion_pytorch_model.safetensors`), read into
//! our UNet and written from it.
//!
//! # Key mapping
//! Our UNet names its parameters as diffusers does, so current diffusers checkpoints map
//! identically: `conv_in`, `time_embedding.linear_{1,2}`, `class_embedding`,
//! `down_blocks.{i}.resnets.{j}.{norm1,conv1,time_emb_proj,norm2,conv2,conv_shortcut}`,
//! `down_blocks.{i}.attentions.{j}.{group_norm,to_q,to_k,to_v,to_out.0}`,
//! `down_blocks.{i}.downsamplers.0.conv`, `mid_block.{resnets.{0,1},attentions.0}`,
//! `up_blocks.{k}.resnets.{j}`, `up_blocks.{k}.attentions.{j}`, `up_blocks.{k}.upsamplers.0.conv`,
//! `conv_norm_out`, `conv_out` (each `.weight`/`.bias`). Checkpoints written by diffusers before
//! 0.15 (the google/ddpm-* uploads) name attention projections `query`, `key`, `value` and
//! `proj_attn`; those become `to_q`, `to_k`, `to_v` and `to_out.0`.

use crate::error::{NetError, Result};
use crate::tensorfile::{TensorFile, write_tensors};
use std::collections::HashMap;
use std::path::Path;
use tch::nn::VarStore;

/// Our parameter name for a diffusers parameter name.
pub fn map_key(key: &str) -> String {
    const OLD: [(&str, &str); 4] = [
        (".query.", ".to_q."),
        (".key.", ".to_k."),
        (".value.", ".to_v."),
        (".proj_attn.", ".to_out.0."),
    ];
    if key.contains(".attentions.") {
        for (old, new) in OLD {
            if key.contains(old) {
                return key.replacen(old, new, 1);
            }
        }
    }
    key.to_owned()
}

/// Loads diffusers weights into `vs` (built from [`unet_config`]'s config) through [`map_key`].
/// A class embedding table one row short gets its null-class row from the mean of the others.
pub fn load_weights(vs: &VarStore, weights: &Path) -> Result<()> {
    let file = TensorFile::open(weights)?;
    let vars = vs.variables();
    let mut seen = std::collections::HashSet::new();
    let mut unexpected = Vec::new();
    tch::no_grad(|| -> Result<()> {
        for name in file.tensors.keys() {
            let ours = map_key(name);
            let Some(var) = vars.get(&ours) else {
                unexpected.push(name.clone());
                continue;
            };
            let mut src = file.tensor(name)?.to_kind(var.kind());
            if ours == "class_embedding.weight" && src.size()[0] + 1 == var.size()[0] {
                let null = src.mean_dim([0i64].as_slice(), true, None::<tch::Kind>);
                src = tch::Tensor::cat(&[src, null], 0);
            }
            if src.size() != var.size() {
                return Err(NetError::Shape {
                    path: weights.into(),
                    key: name.clone(),
                    expected: var.size(),
                    found: src.size(),
                });
            }
            var.shallow_clone().f_copy_(&src)?;
            seen.insert(ours);
        }
        Ok(())
    })?;
    if !unexpected.is_empty() {
        unexpected.sort();
        return Err(NetError::UnexpectedKeys { path: weights.into(), keys: unexpected });
    }
    let mut missing: Vec<String> = vars.keys().filter(|k| !seen.contains(*k)).cloned().collect();
    missing.sort();
    if !missing.is_empty() {
        return Err(NetError::MissingKeys { path: weights.into(), keys: missing });
    }
    Ok(())
}

/// Writes `vs`'s variables (our UNet's, named as current diffusers names them) as a
/// `diffusion_pytorch_model.safetensors` that `UNet2DModel.from_pretrained` reads, with the
/// `{"format": "pt"}` metadata `save_pretrained` writes, atomically. The bytes are the
/// variables' own, so [`load_weights`] gives them back bit for bit.
pub fn write_weights(vs: &VarStore, path: &Path) -> Result<()> {
    let mut tensors: Vec<(String, tch::Tensor)> = vs.variables().into_iter().collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let metadata = HashMap::from([("format".to_owned(), "pt".to_owned())]);
    write_tensors(path, &tensors, &metadata)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_attention_names_are_mapped() {
        assert_eq!(
            map_key("down_blocks.1.attentions.0.query.weight"),
            "down_blocks.1.attentions.0.to_q.weight"
        );
        assert_eq!(
            map_key("mid_block.attentions.0.proj_attn.bias"),
            "mid_block.attentions.0.to_out.0.bias"
        );
        assert_eq!(
            map_key("down_blocks.1.resnets.0.conv1.weight"),
            "down_blocks.1.resnets.0.conv1.weight"
        );
        assert_eq!(
            map_key("mid_block.attentions.0.to_k.weight"),
            "mid_block.attentions.0.to_k.weight"
        );
    }
}
