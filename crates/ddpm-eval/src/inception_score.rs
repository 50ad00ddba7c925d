//! Inception Score (Salimans et al. 2016): exp(E_x KL(p(y|x) || p(y))) over 10 splits, with
//! p(y|x) the softmax over all 1008 Inception logits, reported as mean and (population) std.

use tch::{Device, Kind, Tensor};

/// (mean, std) of the score over `splits` equal parts of `logits` [N, classes].
pub fn inception_score(logits: &Tensor, splits: usize) -> (f64, f64) {
    let _g = tch::no_grad_guard();
    let p = logits.to_kind(Kind::Double).to_device(Device::Cpu).softmax(1, Kind::Double);
    let n = p.size()[0];
    let part = n / splits as i64;
    let scores: Vec<f64> = (0..splits as i64)
        .map(|k| {
            let pk = p.narrow(0, k * part, part);
            let py = pk.mean_dim([0i64].as_slice(), true, Kind::Double);
            let kl = (&pk * (pk.clamp_min(1e-30).log() - py.clamp_min(1e-30).log()))
                .sum_dim_intlist([1i64].as_slice(), false, Kind::Double);
            kl.mean(Kind::Double).double_value(&[]).exp()
        })
        .collect();
    let mean = scores.iter().sum::<f64>() / scores.len() as f64;
    let var = scores.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / scores.len() as f64;
    (mean, var.sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confident_distinct_classes_score_the_class_count() {
        // 10 images per split, each confidently a different one of 10 classes: score 10.
        let l = Tensor::zeros([100, 1008], (Kind::Double, Device::Cpu)) - 50.0;
        for i in 0..100 {
            let _ = l.get(i).get(i % 10).fill_(50.0);
        }
        let (m, s) = inception_score(&l, 10);
        assert!((m - 10.0).abs() < 1e-6 && s < 1e-9, "{m} {s}");
        // Identical predictions everywhere: score 1.
        let (m, _) = inception_score(&Tensor::zeros([20, 1008], (Kind::Float, Device::Cpu)), 10);
        assert!((m - 1.0).abs() < 1e-12);
    }
}
