//! UniPC (Zhao et al. 2023, arXiv:2302.04867): a multistep predictor (UniP-p, Algorithm 2)
//! and a corrector (UniC-p, Algorithm 1) that reuses the network evaluation the next step
//! makes anyway, in data prediction with B(h) = e^h - 1 ("bh2"), as diffusers'
//! `UniPCMultistepScheduler` runs it (`predict_x0`, `lower_order_final`, `final_sigmas_type
//! = "zero"`). With lambda = log(alpha/sigma), h = lambda_t - lambda_s, hh = -h and the data
//! predictions m_0 (newest), m_k of earlier times at r_k = (lambda_k - lambda_s)/h:
//!
//! x_t = (sigma_t/sigma_s) x_s - alpha_t (e^{hh} - 1) m_0 - alpha_t B(h) sum_k rho_k (m_k - m_0)/r_k,
//!
//! with rho solving R rho = b, R_{ik} = r_k^i, b_i = i! h phi_{i+1}(hh) / B(h) (order 2: the
//! predictor's rho = 1/2). The corrector redoes the step that produced x_t with the new
//! prediction at t in the sum as well (order 1: rho = 1/2). Orders warm up from 1, and the
//! last steps lower the order so that the final step, to sigma = 0, is first order (x = m_0).
//! S steps are S network evaluations.

use super::dpm_solver::{coeffs, times};
use super::{ModelFn, SamplerOptions, TimeSteps, eps_and_x0};
use crate::error::{Result, SampleError};
use ddpm_core::tensor::TensorDiffusion;
use tch::Tensor;

fn default_order() -> usize {
    2
}

/// UniPC's own options.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Options {
    /// The predictor's order p (1, 2 or 3; diffusers' `solver_order`, default 2).
    #[serde(default = "default_order")]
    pub order: usize,
    #[serde(default)]
    pub time_steps: TimeSteps,
}

impl Default for Options {
    fn default() -> Self {
        Self { order: default_order(), time_steps: TimeSteps::LogSnr }
    }
}

impl Options {
    pub fn validate(&self) -> Result<()> {
        if !(1..=3).contains(&self.order) {
            return Err(SampleError::Arg(format!(
                "--order must be 1, 2 or 3 for unipc, got {}",
                self.order
            )));
        }
        Ok(())
    }
}

/// A point already passed: its data prediction and lambda.
struct Point {
    m: Tensor,
    lambda: f64,
}

/// The coefficients rho of a UniP (`corrector = false`) or UniC step of `order` from lambda_s
/// to lambda_s + h, for earlier points at ratios `rks` (newest first; `order - 1` of them).
pub fn rhos(order: usize, h: f64, rks: &[f64], corrector: bool) -> Vec<f64> {
    if order == 1 {
        // A first-order predictor has no sum; the first-order corrector weighs m_t by 1/2.
        return if corrector { vec![0.5] } else { vec![] };
    }
    if order == 2 && !corrector {
        return vec![0.5];
    }
    let hh = -h;
    let b_h = hh.exp_m1();
    let mut r: Vec<f64> = rks.to_vec();
    r.push(1.0);
    let mut h_phi_k = b_h / hh - 1.0;
    let mut factorial = 1.0;
    let mut b = Vec::with_capacity(order);
    for i in 1..=order {
        b.push(h_phi_k * factorial / b_h);
        factorial *= (i + 1) as f64;
        h_phi_k = h_phi_k / hh - 1.0 / factorial;
    }
    // R_{ik} = r_k^i, i < n; the predictor solves the system without the point at t.
    let n = if corrector { order } else { order - 1 };
    let rows: Vec<Vec<f64>> =
        (0..n).map(|i| (0..n).map(|k| r[k].powi(i as i32)).collect()).collect();
    solve(rows, b[..n].to_vec())
}

/// Solves the small linear system A x = b by Gaussian elimination with partial pivoting.
fn solve(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Vec<f64> {
    let n = b.len();
    for col in 0..n {
        let pivot = (col..n)
            .max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))
            .expect("non-empty");
        a.swap(col, pivot);
        b.swap(col, pivot);
        for row in col + 1..n {
            let f = a[row][col] / a[col][col];
            for k in col..n {
                a[row][k] -= f * a[col][k];
            }
            b[row] -= f * b[col];
        }
    }
    let mut x = vec![0.0; n];
    for row in (0..n).rev() {
        let s: f64 = (row + 1..n).map(|k| a[row][k] * x[k]).sum();
        x[row] = (b[row] - s) / a[row][row];
    }
    x
}

/// One UniP step (`m_t = None`) or UniC step (`m_t` the prediction at t) of `order` from x_s
/// at time `s` to time `t`, with `history` the passed points, newest (at s) last.
fn step(
    process: &TensorDiffusion,
    x_s: &Tensor,
    s: f64,
    t: Option<f64>,
    history: &[Point],
    order: usize,
    m_t: Option<&Tensor>,
) -> Tensor {
    let (_, sigma_s, lambda_s) = coeffs(process, Some(s));
    let (alpha_t, sigma_t, lambda_t) = coeffs(process, t);
    let h = lambda_t - lambda_s;
    // bh2: B(h) = e^{hh} - 1, which is also h phi_1(hh) of the first-order term.
    let b_h = (-h).exp_m1();
    let m0 = &history[history.len() - 1].m;
    let x = x_s * (sigma_t / sigma_s) - m0 * (alpha_t * b_h);
    let earlier: Vec<(&Point, f64)> = (1..order)
        .map(|k| {
            let p = &history[history.len() - 1 - k];
            (p, (p.lambda - lambda_s) / h)
        })
        .collect();
    let rks: Vec<f64> = earlier.iter().map(|&(_, r)| r).collect();
    let rho = rhos(order, h, &rks, m_t.is_some());
    let terms = earlier.iter().enumerate().map(|(k, &(p, r))| (&p.m - m0) * (rho[k] / r));
    let at_t = m_t.map(|m_t| (m_t - m0) * rho[rho.len() - 1]);
    match terms.chain(at_t).reduce(|sum, term| sum + term) {
        Some(sum) => x - sum * (alpha_t * b_h),
        None => x,
    }
}

pub fn sample(
    opts: &SamplerOptions,
    own: &Options,
    process: &TensorDiffusion,
    model: &mut ModelFn,
    x_t: Tensor,
    progress: &mut dyn FnMut(usize),
) -> Tensor {
    let ts = times(process, opts.steps, own.time_steps);
    let n = ts.len();
    let batch = x_t.size()[0];
    let mut history: Vec<Point> = Vec::with_capacity(own.order + 1);
    // The state before the last predictor step and that step's order.
    let mut last: Option<(Tensor, usize)> = None;
    let mut x = x_t;
    for i in 0..n {
        let output = model(&x, &process.network_time(ts[i], batch));
        let (alpha, _, lambda) = coeffs(process, Some(ts[i]));
        let (_, m) =
            eps_and_x0(process, &output, &x, alpha * alpha, opts.clip_x0, Default::default());
        progress(i + 1);
        if let Some((x_prev, order)) = &last {
            x = step(process, x_prev, ts[i - 1], Some(ts[i]), &history, *order, Some(&m));
        }
        history.push(Point { m, lambda });
        if history.len() > own.order {
            history.remove(0);
        }
        // Warm up from first order; lower it towards the end (lower_order_final).
        let order = own.order.min(n - i).min(i + 1);
        let next = ts.get(i + 1).copied();
        let x_next = step(process, &x, ts[i], next, &history, order, None);
        last = Some((x, order));
        x = x_next;
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The coefficient systems against their closed forms: the order-2 corrector's rho solves
    /// [[1, 1], [r, 1]] rho = b; the order-1 corrector is 1/2; as h -> 0 with equal steps
    /// (r = -1) the order-2 corrector becomes the third-order Adams-Moulton rule,
    /// 5/12 m_t + 8/12 m_0 - 1/12 m_1 (rho = (1/12, 5/12)).
    #[test]
    fn rho_solves_its_system() {
        let (h, r) = (0.3f64, -0.7f64);
        let rho = rhos(2, h, &[r], true);
        let hh = -h;
        let bh = hh.exp_m1();
        let b0 = (hh.exp_m1() / hh - 1.0) / bh;
        let b1 = ((hh.exp_m1() / hh - 1.0) / hh - 0.5) * 2.0 / bh;
        assert!((rho[0] + rho[1] - b0).abs() < 1e-12);
        assert!((rho[0] * r + rho[1] - b1).abs() < 1e-12);
        assert_eq!(rhos(1, h, &[], true), vec![0.5]);
        assert_eq!(rhos(2, h, &[r], false), vec![0.5]);
        let small = rhos(2, 1e-3, &[-1.0], true);
        assert!(
            (small[0] - 1.0 / 12.0).abs() < 1e-3 && (small[1] - 5.0 / 12.0).abs() < 1e-3,
            "{small:?}"
        );
        let three = rhos(3, h, &[-0.6, -1.3], false);
        assert_eq!(three.len(), 2);
        let back = solve(vec![vec![2.0, 1.0], vec![1.0, 3.0]], vec![3.0, 5.0]);
        assert!((back[0] - 0.8).abs() < 1e-12 && (back[1] - 1.4).abs() < 1e-12);
    }
}
