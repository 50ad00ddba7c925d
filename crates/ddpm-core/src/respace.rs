//! Timestep respacing (Nichol & Dhariwal 2021, arXiv:2102.09672, Sec. 4; improved-diffusion's `respace.py`).
//!
//! A process with T steps is sampled on a subset of kept steps k_1 < ... < k_S. The respaced
//! process has beta'_i = 1 - abar_{k_i} / abar_{k_{i-1}} (abar_{k_0} = 1), so its abar'
//! equals the original abar on the kept steps, and the network is still fed the original t.

use crate::error::{CoreError, Result};

/// The kept timesteps (sorted, 0-based) for a spacing string as improved-diffusion writes it:
/// - `"50"`: 50 steps strided evenly over [0, T);
/// - `"10,15,20"`: T split into 3 equal sections taking 10, 15 and 20 steps;
/// - `"ddim25"`: the integer stride of the DDIM paper, range(0, T, s) with exactly 25 entries.
pub fn space_timesteps(num_steps: usize, spec: &str) -> Result<Vec<usize>> {
    let bad = |reason: String| CoreError::BadSpacing { spec: spec.to_owned(), reason };
    let spec_trim = spec.trim();
    if let Some(count) = spec_trim.strip_prefix("ddim") {
        let desired: usize =
            count.parse().map_err(|_| bad(format!("{count:?} after \"ddim\" is not a count")))?;
        // improved-diffusion searches strides 1..T for one that gives exactly `desired` steps.
        for stride in 1..num_steps {
            if num_steps.div_ceil(stride) == desired {
                return Ok((0..num_steps).step_by(stride).collect());
            }
        }
        return Err(bad(format!(
            "cannot create exactly {desired} steps from T = {num_steps} with an integer stride"
        )));
    }
    let counts = spec_trim
        .split(',')
        .map(|s| s.trim().parse::<usize>().map_err(|_| bad(format!("{s:?} is not a step count"))))
        .collect::<Result<Vec<_>>>()?;
    if counts.is_empty() || counts.len() > num_steps {
        return Err(bad(format!("needs between 1 and T = {num_steps} sections")));
    }
    let size_per = num_steps / counts.len();
    let extra = num_steps % counts.len();
    let mut start = 0usize;
    let mut steps = Vec::new();
    for (i, &count) in counts.iter().enumerate() {
        let size = size_per + usize::from(i < extra);
        if size < count {
            return Err(bad(format!("cannot divide a section of {size} steps into {count}")));
        }
        let stride = if count <= 1 { 1.0 } else { (size - 1) as f64 / (count - 1) as f64 };
        // Accumulate exactly as the reference does, and round half to even like Python's round().
        let mut cur = 0.0f64;
        for _ in 0..count {
            steps.push(start + cur.round_ties_even() as usize);
            cur += stride;
        }
        start += size;
    }
    steps.sort_unstable();
    steps.dedup();
    if steps.is_empty() {
        return Err(bad("keeps no steps".to_owned()));
    }
    Ok(steps)
}

/// The respaced betas beta'_i = 1 - abar_{k_i}/abar_{k_{i-1}} for kept steps `kept` of a
/// process with cumulative products `alphas_cumprod`.
pub fn respaced_betas(alphas_cumprod: &[f64], kept: &[usize]) -> Result<Vec<f64>> {
    let t = alphas_cumprod.len();
    let increasing = kept.windows(2).all(|w| w[0] < w[1]);
    if kept.is_empty() || !increasing || kept[kept.len() - 1] >= t {
        return Err(CoreError::BadKeptSteps { t, got: kept.to_vec() });
    }
    let mut last = 1.0;
    Ok(kept
        .iter()
        .map(|&k| {
            let beta = 1.0 - alphas_cumprod[k] / last;
            last = alphas_cumprod[k];
            beta
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ddim_spacing_uses_an_integer_stride() {
        let s = space_timesteps(1000, "ddim25").unwrap();
        assert_eq!(s.len(), 25);
        assert_eq!(s[..3], [0, 40, 80]);
        let s = space_timesteps(1000, "ddim20").unwrap();
        assert_eq!(s, (0..1000).step_by(50).collect::<Vec<_>>());
        assert!(space_timesteps(1000, "ddim999").is_err());
    }

    #[test]
    fn even_spacing_hits_both_ends() {
        let s = space_timesteps(1000, "50").unwrap();
        assert_eq!(s.len(), 50);
        assert_eq!(s[0], 0);
        assert_eq!(*s.last().unwrap(), 999);
        assert_eq!(space_timesteps(1000, "1000").unwrap(), (0..1000).collect::<Vec<_>>());
    }

    #[test]
    fn sections_split_t_evenly() {
        // improved-diffusion's docstring example.
        let s = space_timesteps(300, "10,15,20").unwrap();
        assert_eq!(s.len(), 45);
        assert_eq!(s.iter().filter(|&&k| k < 100).count(), 10);
        assert_eq!(s.iter().filter(|&&k| (100..200).contains(&k)).count(), 15);
        let s = space_timesteps(1000, "10,10").unwrap();
        assert_eq!(s.len(), 20);
        assert_eq!((s[0], s[9], s[10], s[19]), (0, 499, 500, 999));
    }

    /// Python's round() rounds half to even: stride (9-1)/(5-1) = 2 is exact, but
    /// (6-1)/(3-1) = 2.5 puts a point on 2.5, which must round to 2, not 3.
    #[test]
    fn rounding_is_half_to_even() {
        assert_eq!(space_timesteps(6, "3").unwrap(), vec![0, 2, 5]);
    }

    #[test]
    fn impossible_spacings_name_the_problem() {
        let e = space_timesteps(10, "20").unwrap_err().to_string();
        assert!(e.contains("\"20\"") && e.contains("section of 10"), "{e}");
        assert!(space_timesteps(10, "abc").is_err());
        assert!(space_timesteps(10, "").is_err());
        assert!(space_timesteps(10, "0").is_err());
    }

    #[test]
    fn respaced_betas_keep_abar_on_kept_steps() {
        let abar = [0.9, 0.8, 0.5, 0.2];
        let b = respaced_betas(&abar, &[1, 3]).unwrap();
        assert!((b[0] - 0.2).abs() < 1e-15 && (b[1] - 0.75).abs() < 1e-15);
        assert!(respaced_betas(&abar, &[3, 1]).is_err());
        assert!(respaced_betas(&abar, &[4]).is_err());
    }
}
