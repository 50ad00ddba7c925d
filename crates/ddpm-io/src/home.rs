//! The `.ddpm` home: links to the environment (venv, libtorch), exported data
//! (`data/digits.bin`) and caches (`fid-stats/`, `eval/`, `inception/`).

use std::path::PathBuf;

/// `$DDPM_HOME` at run time, else the checkout's `.ddpm` the calling crate was built in
/// (`.cargo/config.toml` sets `DDPM_HOME` for builds), else `.ddpm` in the working directory.
pub fn ddpm_home() -> PathBuf {
    std::env::var_os("DDPM_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| option_env!("DDPM_HOME").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(".ddpm"))
}
