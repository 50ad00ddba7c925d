//! The paper's two schedules side by side: beta_t, abar_t, SNR(t) and the posterior variance
//! beta~_t (eq. 7) at a few steps of T = 1000, then the same process respaced to S steps.
//!
//!     cargo run -p ddpm-core --no-default-features --example schedules [-- SPACING]
//!
//! SPACING is improved-diffusion's respacing string ("ddim50" by default, or "25", "10,15,20").

use ddpm_core::{BetaSchedule, GaussianDiffusion};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let spacing = std::env::args().nth(1).unwrap_or_else(|| "ddim50".to_owned());
    let steps = 1000;
    for (name, schedule) in
        [("linear", BetaSchedule::paper_linear()), ("cosine", BetaSchedule::paper_cosine())]
    {
        let process = GaussianDiffusion::new(schedule.betas(steps)?)?;
        println!("{name} schedule, T = {steps}");
        println!("{:>6} {:>12} {:>12} {:>12} {:>12}", "t", "beta_t", "abar_t", "SNR(t)", "beta~_t");
        for t in [0, 1, 99, 499, 899, 999] {
            println!(
                "{t:>6} {:>12.4e} {:>12.4e} {:>12.4e} {:>12.4e}",
                process.betas[t],
                process.alphas_cumprod[t],
                process.snr(t),
                process.posterior_variance[t]
            );
        }
        let respaced = process.respaced_str(&spacing)?;
        let last = respaced.num_timesteps - 1;
        println!(
            "respaced {spacing:?}: {} steps, network steps {}..{}, abar at the last kept step {:.4e}\n",
            respaced.num_timesteps,
            respaced.timestep_map[0],
            respaced.timestep_map[last],
            respaced.alphas_cumprod[last]
        );
    }
    Ok(())
}
