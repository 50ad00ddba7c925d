//! Distributions over the training timestep t (Algorithm 1 line 3 draws t uniformly).
//!
//! Importance sampling keeps the objective unbiased: a draw with probability p_t carries the
//! weight 1 / (T p_t). The loss-aware sampler of Nichol & Dhariwal 2021 (Sec. 3.3) sets
//! p_t proportional to sqrt(E[L_t^2]) over a short history of each term.

use crate::rng::SplitMix64;
use serde::{Deserialize, Serialize};

/// Which timestep distribution to train with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TimestepSamplerKind {
    /// t ~ Uniform({0, ..., T-1}).
    #[default]
    Uniform,
    /// p_t proportional to sqrt(E[L_t^2]) once every t has `history` losses (improved-diffusion's
    /// "loss-second-moment"), mixed with a uniform floor of 0.001.
    LossSecondMoment,
}

/// A timestep sampler with the loss history it needs; its state goes into checkpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimestepSampler {
    pub kind: TimestepSamplerKind,
    pub num_timesteps: usize,
    pub history_per_term: usize,
    pub uniform_prob: f64,
    /// `loss_history[t]` holds up to `history_per_term` most recent losses of term t.
    pub loss_history: Vec<Vec<f64>>,
}

impl TimestepSampler {
    pub fn new(kind: TimestepSamplerKind, num_timesteps: usize) -> Self {
        Self {
            kind,
            num_timesteps,
            history_per_term: 10,
            uniform_prob: 0.001,
            loss_history: vec![Vec::new(); num_timesteps],
        }
    }

    fn warmed_up(&self) -> bool {
        self.loss_history.iter().all(|h| h.len() == self.history_per_term)
    }

    /// Unnormalised probabilities of each t.
    pub fn weights(&self) -> Vec<f64> {
        let t = self.num_timesteps;
        if self.kind == TimestepSamplerKind::Uniform || !self.warmed_up() {
            return vec![1.0; t];
        }
        let mut w: Vec<f64> = self
            .loss_history
            .iter()
            .map(|h| (h.iter().map(|l| l * l).sum::<f64>() / h.len() as f64).sqrt())
            .collect();
        let total: f64 = w.iter().sum();
        for x in &mut w {
            *x = *x / total * (1.0 - self.uniform_prob) + self.uniform_prob / t as f64;
        }
        w
    }

    /// Draws `batch` timesteps and their importance weights 1 / (T p_t).
    pub fn sample(&self, batch: usize, rng: &mut SplitMix64) -> (Vec<usize>, Vec<f64>) {
        let t = self.num_timesteps;
        if self.kind == TimestepSamplerKind::Uniform {
            let ts = (0..batch).map(|_| rng.below(t as u64) as usize).collect();
            return (ts, vec![1.0; batch]);
        }
        let w = self.weights();
        let total: f64 = w.iter().sum();
        let mut cdf = Vec::with_capacity(t);
        let mut acc = 0.0;
        for x in &w {
            acc += x / total;
            cdf.push(acc);
        }
        let mut ts = Vec::with_capacity(batch);
        let mut weights = Vec::with_capacity(batch);
        for _ in 0..batch {
            let u = rng.next_f64() * acc;
            let i = cdf.partition_point(|&c| c <= u).min(t - 1);
            ts.push(i);
            weights.push(1.0 / (t as f64 * w[i] / total));
        }
        (ts, weights)
    }

    /// Records per-example losses for their timesteps (the loss-aware sampler's update).
    pub fn update(&mut self, ts: &[usize], losses: &[f64]) {
        if self.kind == TimestepSamplerKind::Uniform {
            return;
        }
        for (&t, &loss) in ts.iter().zip(losses) {
            let h = &mut self.loss_history[t];
            if h.len() == self.history_per_term {
                h.remove(0);
            }
            h.push(loss);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_covers_all_steps_with_unit_weight() {
        let s = TimestepSampler::new(TimestepSamplerKind::Uniform, 10);
        let (ts, w) = s.sample(10_000, &mut SplitMix64::new(1));
        assert!(w.iter().all(|&x| x == 1.0));
        let mut seen = [0usize; 10];
        ts.iter().for_each(|&t| seen[t] += 1);
        assert!(seen.iter().all(|&c| c > 800), "{seen:?}");
    }

    #[test]
    fn loss_aware_sampling_is_unbiased_and_prefers_large_losses() {
        let mut s = TimestepSampler::new(TimestepSamplerKind::LossSecondMoment, 4);
        for _ in 0..10 {
            s.update(&[0, 1, 2, 3], &[1.0, 1.0, 1.0, 9.0]);
        }
        let mut rng = SplitMix64::new(2);
        let (ts, w) = s.sample(200_000, &mut rng);
        let frac3 = ts.iter().filter(|&&t| t == 3).count() as f64 / ts.len() as f64;
        assert!((frac3 - 0.75).abs() < 0.01, "{frac3}");
        // E[w * f(t)] over the importance distribution equals the uniform mean of f.
        let f = |t: usize| (t + 1) as f64;
        let est: f64 = ts.iter().zip(&w).map(|(&t, &wi)| wi * f(t)).sum::<f64>() / ts.len() as f64;
        assert!((est - 2.5).abs() < 0.03, "{est}");
    }

    #[test]
    fn history_keeps_the_most_recent_losses() {
        let mut s = TimestepSampler::new(TimestepSamplerKind::LossSecondMoment, 2);
        for i in 0..12 {
            s.update(&[0], &[i as f64]);
        }
        assert_eq!(s.loss_history[0], (2..12).map(|i| i as f64).collect::<Vec<_>>());
        assert_eq!(s.weights(), vec![1.0, 1.0], "not warmed up until every term has history");
    }
}
