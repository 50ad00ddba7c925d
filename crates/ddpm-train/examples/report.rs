//! (Re)writes the report of existing runs, e.g. one trained before reports existed:
//! `cargo run --release -p ddpm-train --example report -- runs/digits [runs/other ...]`.

use std::process::ExitCode;

fn main() -> ExitCode {
    let dirs: Vec<String> = std::env::args().skip(1).collect();
    if dirs.is_empty() {
        eprintln!("usage: report RUN_DIR [RUN_DIR ...]");
        return ExitCode::from(2);
    }
    for dir in dirs {
        match ddpm_train::write_report(&ddpm_run::RunDir::new(&dir)) {
            Ok(path) => println!("{}", path.display()),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        }
    }
    ExitCode::SUCCESS
}
