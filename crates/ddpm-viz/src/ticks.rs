//! Round tick values for plot axes: multiples of 1, 2 or 5 x 10^k on linear axes (steps read
//! 0, 500, 1000, ...), and decades or the 1-2-5 sequence on log axes. The axis is widened to
//! the outermost ticks, so the ticks cover the data with at most one tick beyond each end, the
//! way matplotlib's "round numbers" axis limits do.

/// The ticks of one axis: `values` ascending, the axis spanning `values[0]..=values[n-1]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Ticks {
    pub values: Vec<f64>,
    pub labels: Vec<String>,
}

impl Ticks {
    /// The axis range: first and last tick.
    pub fn range(&self) -> (f64, f64) {
        (self.values[0], self.values[self.values.len() - 1])
    }
}

const MANTISSAS: [f64; 3] = [1.0, 2.0, 5.0];
/// The tick counts an axis may have.
pub const MIN_TICKS: usize = 3;
pub const MAX_TICKS: usize = 10;

/// Tolerance for "lo is a multiple of the step" in units of the step.
const SNAP: f64 = 1e-9;

/// (lo, hi) ordered, finite and of non-zero width.
fn sane(lo: f64, hi: f64) -> (f64, f64) {
    let (lo, hi) = match (lo.is_finite(), hi.is_finite()) {
        (true, true) => (lo.min(hi), lo.max(hi)),
        (true, false) => (lo, lo),
        (false, true) => (hi, hi),
        (false, false) => (0.0, 1.0),
    };
    if hi - lo > 1e-9 * lo.abs().max(hi.abs()) && hi - lo > f64::MIN_POSITIVE {
        return (lo, hi);
    }
    let d = if lo == 0.0 { 1.0 } else { 0.1 * lo.abs() };
    (lo - d, hi + d)
}

/// Linear ticks covering [lo, hi]: k s for integer k, s = m 10^e with m in {1, 2, 5}, the step
/// whose tick count (3 to 10) is nearest 6.
pub fn linear(lo: f64, hi: f64) -> Ticks {
    let (lo, hi) = sane(lo, hi);
    let span = hi - lo;
    let e0 = span.log10().floor() as i32;
    // Score: distance from 6 ticks plus the share of the axis the data leaves empty (so
    // 0.1..0.7 gets 7 ticks of 0.1 rather than 0..0.8 in steps of 0.2).
    let mut best: Option<(f64, f64, i64, i64)> = None;
    for e in (e0 - 2..=e0 + 1).rev() {
        for m in MANTISSAS.iter().rev() {
            let s = m * 10f64.powi(e);
            let (k0, k1) = ((lo / s + SNAP).floor() as i64, (hi / s - SNAP).ceil() as i64);
            let n = (k1 - k0 + 1) as usize;
            if !(MIN_TICKS..=MAX_TICKS).contains(&n) {
                continue;
            }
            let empty = 1.0 - span / ((k1 - k0) as f64 * s);
            let score = n.abs_diff(6) as f64 + 3.0 * empty;
            if best.is_none_or(|b| score < b.0) {
                best = Some((score, s, k0, k1));
            }
        }
    }
    let (_, s, k0, k1) = best.expect("a 1-2-5 step with 3 to 10 ticks exists for every span");
    let values: Vec<f64> = (k0..=k1).map(|k| snap(k as f64 * s, s)).collect();
    let labels = values.iter().map(|&v| label_linear(v, s)).collect();
    Ticks { values, labels }
}

/// Log-axis ticks covering [lo, hi] (both > 0; non-positive bounds are replaced): the 1-2-5
/// sequence when it gives at most 10 ticks, else every d-th decade (d = 1, 2, 5, 10, ...);
/// for a range too narrow for three 1-2-5 values, linear ticks.
pub fn log(lo: f64, hi: f64) -> Ticks {
    let (mut lo, mut hi) = (lo.min(hi), lo.max(hi));
    if !(hi > 0.0 && hi.is_finite()) {
        hi = 1.0;
    }
    if !(lo > 0.0 && lo.is_finite()) {
        lo = hi / 10.0;
    }
    if hi / lo < 1.0 + 1e-9 {
        (lo, hi) = (lo / 2.0, hi * 2.0);
    }
    let (a, b) = (lo.log10(), hi.log10());
    // 1-2-5: value index 3 e + j for m = MANTISSAS[j].
    let v125 = |i: i64| MANTISSAS[i.rem_euclid(3) as usize] * pow10(i.div_euclid(3) as i32);
    let mut i0 = 3 * a.floor() as i64 + 2;
    while v125(i0) > lo * (1.0 + SNAP) {
        i0 -= 1;
    }
    let mut i1 = 3 * b.ceil() as i64 - 2;
    while v125(i1) < hi * (1.0 - SNAP) {
        i1 += 1;
    }
    let n = (i1 - i0 + 1) as usize;
    if n < MIN_TICKS {
        let mut t = linear(lo, hi);
        if t.values[0] <= 0.0 {
            // Cannot happen for hi / lo < 2.5 (the step is below lo); kept as a guard.
            t.values.retain(|&v| v > 0.0);
            t.labels = t.values.iter().map(|&v| label_log(v)).collect();
        }
        return t;
    }
    let values: Vec<f64> = if n <= MAX_TICKS {
        (i0..=i1).map(v125).collect()
    } else {
        let (ea, eb) = ((a + SNAP).floor() as i64, (b - SNAP).ceil() as i64);
        let d = [1i64, 2, 5, 10, 20, 50, 100]
            .into_iter()
            .find(|d| (eb.div_euclid(*d) + (eb.rem_euclid(*d) > 0) as i64 - ea.div_euclid(*d)) < 10)
            .unwrap_or(100);
        let (k0, k1) = (ea.div_euclid(d), eb.div_euclid(d) + (eb.rem_euclid(d) > 0) as i64);
        (k0..=k1).map(|k| pow10((k * d) as i32)).collect()
    };
    let labels = values.iter().map(|&v| label_log(v)).collect();
    Ticks { values, labels }
}

fn pow10(e: i32) -> f64 {
    // Parse rather than powi, so 1e-3 is the nearest double to 10^-3, not 0.0010000000000000002.
    format!("1e{e}").parse().unwrap()
}

/// k s rounded to the step's precision (0.1 * 3 is 0.30000000000000004).
fn snap(v: f64, s: f64) -> f64 {
    let digits = (-s.log10().floor()).max(0.0) as usize + 1;
    if digits > 15 {
        return v;
    }
    format!("{v:.digits$}").parse().unwrap_or(v)
}

/// A label with as many decimals as the step needs; scientific for very large or small steps.
fn label_linear(v: f64, s: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let es = s.log10().floor() as i32;
    if v.abs() >= 1e6 || es < -4 {
        let ev = v.abs().log10().floor() as i32;
        let decimals = (ev - es).max(0) as usize;
        return tidy_exp(&format!("{v:.decimals$e}"));
    }
    let decimals = (-es).max(0) as usize;
    format!("{v:.decimals$}")
}

/// A label for a value of the form m 10^e.
fn label_log(v: f64) -> String {
    let e = v.log10().floor() as i32;
    if (-4..6).contains(&e) {
        let decimals = (-e).max(0) as usize + 1;
        let s = format!("{v:.decimals$}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        return s.to_string();
    }
    tidy_exp(&format!("{v:.1e}"))
}

/// "2.0e-5" -> "2e-5"; "1.50e3" -> "1.5e3".
fn tidy_exp(s: &str) -> String {
    match s.split_once('e') {
        Some((m, e)) if m.contains('.') => {
            format!("{}e{e}", m.trim_end_matches('0').trim_end_matches('.'))
        }
        _ => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Every value is k s for integers k, one round step s = m 10^e (m in {1, 2, 5}), and
    /// consecutive values differ by s.
    fn is_multiple_of_round_step(values: &[f64]) -> bool {
        if values.len() < 2 {
            return false;
        }
        let approx = (values[values.len() - 1] - values[0]) / (values.len() - 1) as f64;
        let e = (approx.log10() + 1e-6).floor() as i32;
        let m = approx / 10f64.powi(e);
        let Some(r) = MANTISSAS.iter().find(|r| (m - *r).abs() < 1e-6 * *r) else { return false };
        let s: f64 = format!("{r}e{e}").parse().unwrap();
        values.iter().enumerate().all(|(i, v)| {
            let k = v / s;
            let tol = 1e-6 + 1e-12 * k.abs();
            (k - k.round()).abs() < tol && (k - (values[0] / s).round() - i as f64).abs() < 0.5
        })
    }

    fn is_125(v: f64) -> bool {
        let e = (v.log10() + 1e-9).floor();
        let m = v / 10f64.powf(e);
        MANTISSAS.iter().chain([10.0].iter()).any(|r| (m - r).abs() < 1e-6 * r)
    }

    fn covers(t: &Ticks, lo: f64, hi: f64) -> bool {
        let v = &t.values;
        let n = v.len();
        let tol = 1e-9 * lo.abs().max(hi.abs()).max(1e-300);
        v[0] <= lo + tol && v[n - 1] >= hi - tol && v[1] > lo - tol && v[n - 2] < hi + tol
    }

    #[test]
    fn the_loss_plot_reads_round_numbers() {
        // The axes of the old loss plot read 5.000, 528, 1050 and 0.962, 0.202, 8.89e-3.
        let x = linear(5.0, 2000.0);
        assert_eq!(x.values, vec![0.0, 500.0, 1000.0, 1500.0, 2000.0]);
        assert_eq!(x.labels, ["0", "500", "1000", "1500", "2000"]);
        let y = log(8.89e-3, 0.962);
        assert_eq!(y.values, vec![0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0]);
        assert_eq!(y.labels, ["0.005", "0.01", "0.02", "0.05", "0.1", "0.2", "0.5", "1"]);
        let wide = log(3e-5, 2.0);
        assert_eq!(wide.values, vec![1e-5, 1e-4, 1e-3, 1e-2, 0.1, 1.0, 10.0]);
        assert_eq!(wide.labels[0], "1e-5");
        let lr = linear(0.0, 2e-4);
        assert_eq!(lr.labels, ["0", "5e-5", "1e-4", "1.5e-4", "2e-4"]);
        assert_eq!(linear(0.1, 0.7).labels, ["0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7"]);
    }

    #[test]
    fn degenerate_ranges_still_give_ticks() {
        for (lo, hi) in [(3.0, 3.0), (0.0, 0.0), (f64::NAN, f64::NAN), (5.0, f64::INFINITY)] {
            let t = linear(lo, hi);
            assert!((MIN_TICKS..=MAX_TICKS).contains(&t.values.len()), "{lo} {hi}: {t:?}");
            assert!(is_multiple_of_round_step(&t.values), "{t:?}");
        }
        for (lo, hi) in [(0.3, 0.3), (0.0, 1.0), (-1.0, 5.0), (f64::NAN, 2.0)] {
            let t = log(lo, hi);
            assert!(t.values.iter().all(|&v| v > 0.0), "{t:?}");
            assert!((MIN_TICKS..=MAX_TICKS).contains(&t.values.len()), "{lo} {hi}: {t:?}");
        }
    }

    proptest! {
        #[test]
        fn linear_ticks_are_round_and_cover_the_range(
            lo in -1e6f64..1e6, span_exp in -6f64..7.0, scale_exp in -8i32..8,
        ) {
            let scale = 10f64.powi(scale_exp);
            let (lo, hi) = (lo * scale * 1e-6, lo * scale * 1e-6 + 10f64.powf(span_exp) * scale);
            prop_assume!(hi - lo > 1e-9 * lo.abs().max(hi.abs()));
            let t = linear(lo, hi);
            prop_assert!((MIN_TICKS..=MAX_TICKS).contains(&t.values.len()), "{lo} {hi}: {t:?}");
            prop_assert!(is_multiple_of_round_step(&t.values), "{lo} {hi}: {t:?}");
            prop_assert!(covers(&t, lo, hi), "{lo} {hi}: {t:?}");
            prop_assert_eq!(t.labels.len(), t.values.len());
            // Labels are distinct and parse back to the tick values.
            for (l, v) in t.labels.iter().zip(&t.values) {
                let p: f64 = l.parse().unwrap();
                prop_assert!((p - v).abs() <= 1e-9 * v.abs().max(t.values[1] - t.values[0]), "{l} vs {v}");
            }
        }

        #[test]
        fn log_ticks_are_decades_or_1_2_5_and_cover_the_range(
            lo_exp in -30f64..30.0, ratio_exp in 0.01f64..40.0,
        ) {
            let lo = 10f64.powf(lo_exp);
            let hi = lo * 10f64.powf(ratio_exp);
            let t = log(lo, hi);
            prop_assert!((MIN_TICKS..=MAX_TICKS).contains(&t.values.len()), "{lo} {hi}: {t:?}");
            prop_assert!(t.values.windows(2).all(|w| w[0] < w[1]));
            prop_assert!(covers(&t, lo, hi), "{lo} {hi}: {t:?}");
            let all_125 = t.values.iter().all(|&v| is_125(v));
            prop_assert!(all_125 || is_multiple_of_round_step(&t.values), "{lo} {hi}: {t:?}");
            for (l, v) in t.labels.iter().zip(&t.values) {
                let p: f64 = l.parse().unwrap();
                prop_assert!((p - v).abs() <= 1e-6 * v, "{l} vs {v}");
            }
        }
    }
}
