//! `ddpm-schedule`: print a (respaced) noise schedule and its derived arrays.
//!
//! `cargo xtask schedule --schedule cosine --steps 4000 --respace ddim25 --json`

use clap::Parser;
use ddpm_core::{CoreError, DiffusionConfig, GaussianDiffusion, ScheduleName};
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;

/// Print a diffusion noise schedule and its derived arrays.
#[derive(Debug, Parser)]
#[command(name = "ddpm-schedule", version, allow_negative_numbers = true)]
struct Args {
    /// Beta schedule: linear, cosine, quadratic, sigmoid, constant, jsd or custom.
    #[arg(long, default_value = "linear", conflicts_with = "config")]
    schedule: String,
    /// T, the number of diffusion steps.
    #[arg(long, default_value_t = 1000, conflicts_with = "config")]
    steps: usize,
    /// beta_1 of linear, quadratic and sigmoid schedules (paper: 1e-4).
    #[arg(long, default_value_t = 1e-4, conflicts_with = "config")]
    beta_start: f64,
    /// beta_T of linear, quadratic and sigmoid schedules, or the constant beta (paper: 0.02).
    #[arg(long, default_value_t = 0.02, conflicts_with = "config")]
    beta_end: f64,
    /// Scale the linear endpoints by 1000/T, as improved-diffusion does.
    #[arg(long, conflicts_with = "config")]
    scale_linear: bool,
    /// s of the cosine schedule.
    #[arg(long, default_value_t = 0.008, conflicts_with = "config")]
    cosine_s: f64,
    /// Cap on cosine betas.
    #[arg(long, default_value_t = 0.999, conflicts_with = "config")]
    max_beta: f64,
    /// Comma-separated betas for --schedule custom.
    #[arg(long, value_delimiter = ',', conflicts_with = "config")]
    betas: Option<Vec<f64>>,
    /// Read the schedule from the [diffusion] table of a run config instead.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Keep only these steps, as improved-diffusion writes them: "50", "ddim25", "10,15,20".
    #[arg(long)]
    respace: Option<String>,
    /// Print one JSON object with every array instead of a summary.
    #[arg(long)]
    json: bool,
}

/// An error message that names the argument at fault.
fn arg_error(e: &CoreError, from_config: bool) -> String {
    let arg = match e {
        _ if from_config => "--config",
        CoreError::TooFewSteps { .. } | CoreError::BetaCount { .. } => "--steps",
        CoreError::BetaOutOfRange { .. } => "--beta-start/--beta-end/--betas",
        CoreError::BadParameter { name: "cosine_s", .. } => "--cosine-s",
        CoreError::BadParameter { name: "max_beta", .. } => "--max-beta",
        CoreError::BadParameter { .. } => "--beta-start/--beta-end",
        CoreError::UnknownSchedule(_) => "--schedule",
        CoreError::BadSpacing { .. } | CoreError::BadKeptSteps { .. } => "--respace",
        CoreError::Incompatible(_) => "--betas",
    };
    format!("{arg}: {e}")
}

fn load_config(path: &PathBuf) -> Result<DiffusionConfig, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("--config {}: {e}", path.display()))?;
    let mut table: toml::Table =
        toml::from_str(&text).map_err(|e| format!("--config {}: {e}", path.display()))?;
    match table.remove("diffusion") {
        None => Ok(DiffusionConfig::default()),
        Some(v) => v.try_into().map_err(|e: toml::de::Error| {
            format!("--config {}: [diffusion] {}", path.display(), e.message())
        }),
    }
}

fn build(args: &Args) -> Result<GaussianDiffusion, String> {
    let from_config = args.config.is_some();
    let config = match &args.config {
        Some(path) => load_config(path)?,
        None => DiffusionConfig {
            steps: args.steps,
            schedule: args.schedule.parse::<ScheduleName>().map_err(|e| arg_error(&e, false))?,
            beta_start: args.beta_start,
            beta_end: args.beta_end,
            scale_linear_to_steps: args.scale_linear,
            cosine_s: args.cosine_s,
            max_beta: args.max_beta,
            betas: args.betas.clone(),
            ..DiffusionConfig::default()
        },
    };
    let schedule = config.beta_schedule().map_err(|e| arg_error(&e, from_config))?;
    let betas = schedule.betas(config.steps).map_err(|e| arg_error(&e, from_config))?;
    let d = GaussianDiffusion::new(betas).map_err(|e| arg_error(&e, from_config))?;
    match &args.respace {
        Some(spec) => d.respaced_str(spec).map_err(|e| arg_error(&e, false)),
        None => Ok(d),
    }
}

fn main() -> ExitCode {
    let args: Args = ddpm_cli::parse_or_exit();
    let d = match build(&args) {
        Ok(d) => d,
        Err(msg) => {
            eprintln!("error: {msg}");
            return ExitCode::from(2);
        }
    };
    if args.json {
        let out = json!({
            "num_timesteps": d.num_timesteps,
            "original_num_steps": d.original_num_steps,
            "timestep_map": d.timestep_map,
            "betas": d.betas,
            "alphas_cumprod": d.alphas_cumprod,
            "alphas_cumprod_prev": d.alphas_cumprod_prev,
            "posterior_variance": d.posterior_variance,
            "posterior_log_variance_clipped": d.posterior_log_variance_clipped,
            "posterior_mean_coef1": d.posterior_mean_coef1,
            "posterior_mean_coef2": d.posterior_mean_coef2,
        });
        println!("{out}");
    } else {
        let n = d.num_timesteps;
        let db = |x: f64| 10.0 * x.log10();
        println!("steps       {n} (of T = {})", d.original_num_steps);
        println!("beta        first {:.6e}  last {:.6e}", d.betas[0], d.betas[n - 1]);
        println!("abar        final {:.6e}", d.alphas_cumprod[n - 1]);
        println!(
            "SNR         {:.4e} .. {:.4e}  ({:.1} dB .. {:.1} dB)",
            d.snr(n - 1),
            d.snr(0),
            db(d.snr(n - 1)),
            db(d.snr(0))
        );
    }
    ExitCode::SUCCESS
}
