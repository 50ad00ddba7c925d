//! Sinusoidal timestep embedding (Ho et al. 2020, Appendix B; Vaswani et al. 2017, Sec. 3.5).

use tch::{Kind, Tensor};

/// emb = [sin(t f_0..f_{half-1}), cos(t f_0..f_{half-1})] with f_i = exp(-ln(10000) i / (half - shift)),
/// half = dim / 2; `flip` puts cos first; an odd `dim` gets a zero column.
///
/// # Shapes
/// - `t`: [B] (any numeric kind; used as f32)
/// - returns [B, dim] f32
pub fn timestep_embedding(t: &Tensor, dim: i64, flip: bool, shift: f64) -> Tensor {
    let half = dim / 2;
    let exponent = Tensor::arange(half, (Kind::Float, t.device())) * (-(10000f64.ln()))
        / (half as f64 - shift);
    let freqs = exponent.exp();
    let args = t.to_kind(Kind::Float).unsqueeze(1) * freqs.unsqueeze(0);
    let (sin, cos) = (args.sin(), args.cos());
    let emb = if flip { Tensor::cat(&[cos, sin], 1) } else { Tensor::cat(&[sin, cos], 1) };
    if dim % 2 == 1 { emb.pad([0, 1, 0, 0], "constant", 0.0) } else { emb }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    /// The embedding of Ho et al. 2020's official code (`get_timestep_embedding` in
    /// diffusion_tf/nn.py): freq_i = exp(-ln(10000) i / (half - 1)), [sin, cos].
    #[test]
    fn matches_the_closed_form() {
        let t = Tensor::from_slice(&[0.0f32, 1.0, 999.0]);
        let e = timestep_embedding(&t, 8, false, 1.0);
        assert_eq!(e.size(), [3, 8]);
        for (b, &tv) in [0.0f64, 1.0, 999.0].iter().enumerate() {
            for i in 0..4 {
                let f = (-(10000f64.ln()) * i as f64 / 3.0).exp();
                let s = e.double_value(&[b as i64, i]);
                let c = e.double_value(&[b as i64, i + 4]);
                assert!((s - (tv * f).sin()).abs() < 1e-3, "sin t={tv} i={i}");
                assert!((c - (tv * f).cos()).abs() < 1e-3, "cos t={tv} i={i}");
            }
        }
        let odd = timestep_embedding(&Tensor::zeros([2], (Kind::Float, Device::Cpu)), 5, true, 1.0);
        assert_eq!(odd.size(), [2, 5]);
        assert_eq!(odd.double_value(&[0, 4]), 0.0);
        assert_eq!(odd.double_value(&[0, 0]), 1.0, "flip puts cos(0) = 1 first");
    }
}
