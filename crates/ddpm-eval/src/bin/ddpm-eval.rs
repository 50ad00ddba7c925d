//! `ddpm-eval`: FID/IS (and the digits classifier distance, and 2-D distances) of a checkpoint
//! or of existing samples; reference statistics of data sets; NLL in bits/dim.
//!
//! `cargo xtask fid --checkpoint run1`, `cargo xtask fid-stats --data DIR --out ref.npz`,
//! `cargo xtask nll --checkpoint run1 --data DIR`, `cargo xtask sampler-sweep --checkpoint run1`.

use anyhow::Result;
use clap::{Parser, Subcommand};
use ddpm_eval::args::{FidArgs, NllArgs, StatsArgs};
use ddpm_eval::sweep::SweepArgs;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(name = "ddpm-eval", version, about = "Evaluate diffusion models: FID, IS, NLL")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// FID and IS of a checkpoint's samples (sampled now) or of existing samples.
    Fid(FidArgs),
    /// Inception statistics (pytorch-fid .npz: mu, sigma) of a data set or an image folder.
    FidStats(StatsArgs),
    /// The variational bound in bits/dim over a data set.
    Nll(NllArgs),
    /// Every sampler at 5, 10, 20 and 50 network evaluations (and ancestral at T), a few
    /// seeds each, on the run's own measure: a table, its JSON, and a plot.
    SamplerSweep(SweepArgs),
}

/// A progress callback over (done, of) images drawing one bar (hidden on ranks other than 0).
fn bar(shown: bool) -> (ddpm_cli::ProgressBar, impl FnMut(usize, usize)) {
    let pb =
        if shown { ddpm_cli::progress_bar(0, "images") } else { ddpm_cli::ProgressBar::hidden() };
    let handle = pb.clone();
    (pb, move |done: usize, of: usize| {
        handle.set_length(of as u64);
        handle.set_position(done as u64);
    })
}

fn fid(a: FidArgs) -> Result<()> {
    // Under torchrun the ranks share the sampling and the Inception work; rank 0 reports.
    let (device, dist) = a.common.rank()?;
    let (pb, mut progress) = bar(dist.is_main());
    let done = a.run(device, &dist, &mut progress)?;
    pb.finish_and_clear();
    let Some((report, out)) = done else { return Ok(()) };
    // With --json, stdout is the JSON alone (a script's `> result.json` parses); the
    // summary goes to stderr.
    for line in report.summary() {
        match a.json {
            true => eprintln!("{line}"),
            false => println!("{line}"),
        }
    }
    let path = report.write(&out)?;
    match a.json {
        true => println!("{}", serde_json::to_string(&report)?),
        false => println!("{}", path.display()),
    }
    Ok(())
}

fn fid_stats(a: StatsArgs) -> Result<()> {
    let (pb, mut progress) = bar(true);
    let n = a.run(&mut progress)?;
    pb.finish_and_clear();
    println!("{} ({n} images of {})", a.out.display(), a.data);
    if let Some(f) = &a.features {
        println!("{}", f.display());
    }
    Ok(())
}

fn nll(a: NllArgs) -> Result<()> {
    let (pb, mut progress) = bar(true);
    let r = a.run(&mut progress)?;
    pb.finish_and_clear();
    if a.json {
        println!("{}", serde_json::to_string(&r.result)?);
        return Ok(());
    }
    println!("{}", r.result.summary(r.n));
    if let Some(note) = r.note {
        println!("{note}");
    }
    Ok(())
}

fn sampler_sweep(a: SweepArgs) -> Result<()> {
    let (device, dist) = a.common.rank()?;
    let (pb, mut progress) = bar(dist.is_main());
    let done = a.run(device, &dist, &mut progress)?;
    pb.finish_and_clear();
    let Some((sweep, out)) = done else { return Ok(()) };
    print!("{}", ddpm_eval::sweep_report::markdown(&sweep));
    println!("{}", out.display());
    Ok(())
}

fn main() -> ExitCode {
    ddpm_cli::main(|cli: Cli| match cli.command {
        Command::Fid(a) => fid(a),
        Command::FidStats(a) => fid_stats(a),
        Command::Nll(a) => nll(a),
        Command::SamplerSweep(a) => sampler_sweep(a),
    })
}
