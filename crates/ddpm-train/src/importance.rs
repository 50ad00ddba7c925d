//! Importance sampling of t across ranks (Nichol & Dhariwal 2021, Sec. 3.3): the loss-aware
//! [`TimestepSampler`] learns from every step's per-example losses, those of the whole global
//! batch, so every rank keeps the same history and draws the same timesteps. One all-reduce
//! per step puts each rank's losses in their global rows (improved-diffusion's
//! `LossAwareSampler.update_with_local_losses` all-gathers them the same way).

use crate::error::Result;
use ddpm_core::timestep_sampler::{TimestepSampler, TimestepSamplerKind};
use ddpm_dist::Dist;
use tch::{Device, Kind, Tensor};

/// Records the losses of global batch rows `rows` (this rank's, `per_example` on the device),
/// with the other ranks' rows, in `sampler` for the timesteps `global_ts` of the whole batch.
/// Every rank calls it; a uniform sampler learns nothing and costs nothing.
pub fn learn_across_ranks(
    sampler: &mut TimestepSampler,
    global_ts: &[usize],
    rows: &[usize],
    per_example: &Tensor,
    dist: &Dist,
) -> Result<()> {
    if sampler.kind == TimestepSamplerKind::Uniform {
        return Ok(());
    }
    let losses = per_example.to_kind(Kind::Double);
    let losses = if dist.backend().is_some() {
        let index: Vec<i64> = rows.iter().map(|&k| k as i64).collect();
        let index = Tensor::from_slice(&index).to_device(losses.device());
        let all = losses.new_zeros([global_ts.len() as i64], (Kind::Double, losses.device()));
        let all = all.index_copy(0, &index, &losses);
        dist.all_reduce_sum(std::slice::from_ref(&all))?;
        all
    } else {
        losses
    };
    // A host read per step, as in improved-diffusion's LossSecondMomentResampler.
    let losses = Vec::<f64>::try_from(losses.to_device(Device::Cpu)).expect("f64 losses");
    sampler.update(global_ts, &losses);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One process: the losses go to their timesteps as given; a uniform sampler ignores them.
    #[test]
    fn one_process_records_each_loss_under_its_timestep() {
        let single = Dist::single(Device::Cpu);
        let mut s = TimestepSampler::new(TimestepSamplerKind::LossSecondMoment, 4);
        let losses = Tensor::from_slice(&[0.5f32, 2.0, 0.25]);
        learn_across_ranks(&mut s, &[3, 0, 3], &[0, 1, 2], &losses, &single).unwrap();
        assert_eq!(s.loss_history, vec![vec![2.0], vec![], vec![], vec![0.5, 0.25]]);
        let mut u = TimestepSampler::new(TimestepSamplerKind::Uniform, 4);
        learn_across_ranks(&mut u, &[3, 0, 3], &[0, 1, 2], &losses, &single).unwrap();
        assert!(u.loss_history.iter().all(Vec::is_empty));
    }
}
