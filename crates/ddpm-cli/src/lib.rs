//! # ddpm-cli
//!
//! The conventions every `ddpm-*` binary follows, in one place: arguments are parsed by clap
//! and an argument error is one line on stderr with exit code 2 (`--help` and `--version`
//! print as usual); log lines go to stderr through tracing (`RUST_LOG` filters, `info` by
//! default); an error is printed with its whole context chain on one line (`error: ...`) and
//! exits with code 2; long work shows a progress bar with rate and ETA on a terminal.
//!
//! A binary's `main` is `ddpm_cli::main(run)`: parse, then one library call.

pub use indicatif::ProgressBar;
use std::io::IsTerminal;
use std::process::ExitCode;

/// Parses the arguments, installs the log subscriber, runs `run` and turns its result into the
/// exit code: 0, or 2 with `error: <the whole chain>` on stderr.
pub fn main<A: clap::Parser>(run: impl FnOnce(A) -> anyhow::Result<()>) -> ExitCode {
    init_tracing();
    let args: A = parse_or_exit();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&format!("{e:#}")));
            ExitCode::from(2)
        }
    }
}

/// Log lines on stderr, `info` unless `RUST_LOG` says otherwise.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Parses the process arguments, or prints a one-line error and exits with code 2.
pub fn parse_or_exit<T: clap::Parser>() -> T {
    match T::try_parse() {
        Ok(v) => v,
        Err(e) => match e.kind() {
            clap::error::ErrorKind::DisplayHelp
            | clap::error::ErrorKind::DisplayVersion
            | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => e.exit(),
            _ => {
                eprintln!("{}", one_line(&e.to_string()));
                std::process::exit(2);
            }
        },
    }
}

/// A multi-line message as one line: clap's error and its "possible values" hint, or an
/// error chain whose parts contain line breaks.
pub fn one_line(msg: &str) -> String {
    let mut parts: Vec<&str> = msg
        .lines()
        .map(str::trim)
        .filter(|l| {
            !l.is_empty() && !l.starts_with("Usage:") && !l.starts_with("For more information")
        })
        .collect();
    parts.dedup();
    parts.join("; ")
}

/// A progress bar over `len` units with rate and ETA on a terminal; hidden otherwise (log
/// lines carry the progress there).
pub fn progress_bar(len: u64, unit: &str) -> indicatif::ProgressBar {
    let pb = indicatif::ProgressBar::new(len);
    if std::io::stderr().is_terminal() {
        pb.set_style(
            indicatif::ProgressStyle::with_template(&format!(
                "{{elapsed_precise}} [{{bar:30}}] {{pos}}/{{len}} {unit}  {{per_sec}}  ETA {{eta}}  {{msg}}"
            ))
            .expect("a valid template")
            .progress_chars("=> "),
        );
    } else {
        pb.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    pb
}

/// "1h02m", "3m20s", "45s" ("?" for a duration that is not finite).
pub fn fmt_duration(seconds: f64) -> String {
    if !seconds.is_finite() || seconds < 0.0 {
        return "?".into();
    }
    let s = seconds.round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn multi_line_messages_become_one() {
        let m = "error: invalid value 'x' for '--sampler <S>'\n  [possible values: ddpm, ddim]\n\nFor more information, try '--help'.\n";
        assert_eq!(
            super::one_line(m),
            "error: invalid value 'x' for '--sampler <S>'; [possible values: ddpm, ddim]"
        );
    }

    #[test]
    fn durations_read_as_a_person_would_write_them() {
        assert_eq!(super::fmt_duration(45.2), "45s");
        assert_eq!(super::fmt_duration(200.0), "3m20s");
        assert_eq!(super::fmt_duration(3720.0), "1h02m");
        assert_eq!(super::fmt_duration(f64::NAN), "?");
    }
}
