//! The environment: a virtual environment holding PyTorch (our libtorch) and the reference
//! packages, shared between checkouts through a per-user cache keyed by the hash of
//! `scripts/requirements.txt` and the Python version, and the checkout's `.ddpm/` directory
//! that links to it (`.cargo/config.toml` points LIBTORCH and DDPM_PYTHON there); and
//! Chromium, the browser the run-report test renders with (Debian's `chromium` package); and
//! Fashion-MNIST (Debian's `dataset-fashion-mnist`), the first real data set at 28x28.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Paths of a ready environment.
pub struct Env {
    pub root: PathBuf,
    pub home: PathBuf,
    pub venv: PathBuf,
    pub python: PathBuf,
    pub libtorch: PathBuf,
}

impl Env {
    pub fn print_paths(&self) {
        println!("project      {}", self.root.display());
        println!("venv         {}", self.venv.display());
        println!("python       {}", self.python.display());
        println!("libtorch     {}", self.libtorch.display());
        println!("DDPM_HOME    {}", self.home.display());
    }
}

/// The project root (xtask lives in `<root>/xtask`).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask has a parent").to_path_buf()
}

/// The target directory cargo builds into.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root().join("target"))
}

/// 64-bit FNV-1a: a stable key for the cache directory (std's hasher may change between releases).
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

fn cache_dir() -> Result<PathBuf, String> {
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|x| !x.is_empty()) {
        return Ok(PathBuf::from(x).join("ddpm-rs"));
    }
    let home = std::env::var_os("HOME").ok_or("neither XDG_CACHE_HOME nor HOME is set")?;
    Ok(PathBuf::from(home).join(".cache/ddpm-rs"))
}

fn bootstrap_python() -> Result<(String, String), String> {
    let exe = std::env::var("DDPM_BOOTSTRAP_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(&exe)
        .args(["-c", "import sys; print('%d.%d' % sys.version_info[:2])"])
        .output()
        .map_err(|e| format!("cannot run {exe} ({e}): install Python 3.10 or newer"))?;
    if !out.status.success() {
        return Err(format!("{exe} failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    let version = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let minor: u32 = version.split('.').nth(1).and_then(|m| m.parse().ok()).unwrap_or(0);
    if !version.starts_with("3.") || minor < 10 {
        return Err(format!("{exe} is Python {version}; PyTorch 2.11 needs Python 3.10 or newer"));
    }
    Ok((exe, version))
}

fn status(cmd: &mut Command, what: &str) -> Result<(), String> {
    let st = cmd.status().map_err(|e| format!("{what}: {e}"))?;
    if st.success() { Ok(()) } else { Err(format!("{what} failed ({st})")) }
}

/// The venv's torch package directory (its `lib/` holds libtorch), found without importing torch.
fn find_torch_dir(venv: &Path) -> Option<PathBuf> {
    let lib = venv.join("lib");
    for entry in fs::read_dir(&lib).ok()?.flatten() {
        let torch = entry.path().join("site-packages/torch");
        if torch.join("lib/libtorch_cpu.so").exists() {
            return Some(torch);
        }
    }
    None
}

/// Points `link` at `target`, replacing an older link; returns whether it changed.
fn set_link(link: &Path, target: &Path) -> Result<bool, String> {
    if fs::read_link(link).ok().as_deref() == Some(target) {
        return Ok(false);
    }
    let _ = fs::remove_file(link);
    std::os::unix::fs::symlink(target, link)
        .map_err(|e| format!("linking {} -> {}: {e}", link.display(), target.display()))?;
    Ok(true)
}

/// Creates the environment when missing (idempotent; quick when present) and returns its paths.
pub fn ensure() -> Result<Env, String> {
    let root = root();
    let requirements = root.join("scripts/requirements.txt");
    let req = fs::read(&requirements).map_err(|e| format!("{}: {e}", requirements.display()))?;
    let (bootstrap, py_version) = bootstrap_python()?;
    // The venv is keyed by the torch version and Python version (so checkouts share it);
    // the stamp inside holds the hash of the requirements it was last brought up to date with.
    let torch = String::from_utf8_lossy(&req)
        .lines()
        .find_map(|l| l.trim().strip_prefix("torch==").map(str::to_owned))
        .ok_or_else(|| format!("{} pins no torch==VERSION", requirements.display()))?;
    let stamp_key = format!("{:016x}", fnv1a64(&req));
    let venv = match std::env::var_os("DDPM_VENV").filter(|v| !v.is_empty()) {
        Some(v) => PathBuf::from(v),
        None => cache_dir()?.join(format!("venv-torch{torch}-py{py_version}")),
    };
    let python = venv.join("bin/python");
    let stamp = venv.join(".ddpm-ready");
    if fs::read_to_string(&stamp).ok().as_deref() != Some(stamp_key.as_str()) {
        let parent = venv.parent().ok_or("venv path has no parent")?;
        fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        // One set-up at a time per environment (two checkouts may share it).
        let name = venv.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let lock_path = parent.join(format!(".lock-{name}"));
        let lock =
            fs::File::create(&lock_path).map_err(|e| format!("{}: {e}", lock_path.display()))?;
        lock.lock().map_err(|e| format!("locking {}: {e}", lock_path.display()))?;
        if fs::read_to_string(&stamp).ok().as_deref() != Some(stamp_key.as_str()) {
            install(&bootstrap, &venv, &python, &requirements, &torch)?;
            fs::write(&stamp, &stamp_key).map_err(|e| format!("{}: {e}", stamp.display()))?;
        }
    }
    let libtorch = find_torch_dir(&venv)
        .ok_or_else(|| format!("no torch package with libtorch_cpu.so under {}", venv.display()))?;

    let home = root.join(".ddpm");
    fs::create_dir_all(home.join("data")).map_err(|e| format!("{}: {e}", home.display()))?;
    set_link(&home.join("venv"), &venv)?;
    if set_link(&home.join("libtorch"), &libtorch)? && target_dir().exists() {
        // torch-sys caches the libtorch it was built against: rebuild it against the new one.
        for profile in [&[][..], &["--release"][..]] {
            let _ = Command::new(cargo())
                .args(["clean", "-q", "-p", "torch-sys"])
                .args(profile)
                .status();
        }
    }
    let env = Env { root, home, venv, python, libtorch };
    export_digits(&env)?;
    ensure_chromium();
    ensure_fashion_mnist();
    Ok(env)
}

/// The command that installs the browser the report test renders with.
pub const CHROMIUM_INSTALL: &str = "apt-get install -y chromium";

/// Chromium for the report test: `$DDPM_CHROMIUM`, else the first of `chromium`,
/// `chromium-browser`, `google-chrome-stable`, `google-chrome` on PATH (the test searches the
/// same way).
pub fn find_chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("DDPM_CHROMIUM").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    ["chromium", "chromium-browser", "google-chrome-stable", "google-chrome"]
        .iter()
        .find_map(|name| find_on_path(name))
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Whether we may install Debian packages (root, with apt-get).
fn can_apt() -> bool {
    is_root() && find_on_path("apt-get").is_some()
}

/// `apt-get install -y PACKAGE`, after one `apt-get update` if the first try fails (a fresh
/// machine may have no package lists yet).
fn apt_install(package: &str) -> bool {
    let apt = |args: &[&str]| {
        Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success())
    };
    apt(&["install", "-y", package]) || (apt(&["update"]) && apt(&["install", "-y", package]))
}

/// Installs Debian's `chromium` when it is missing and we may (root, with apt-get); otherwise
/// names the command to run. Never an error: only the report test needs a browser, and it
/// fails with the same command when there is none.
fn ensure_chromium() {
    if find_chromium().is_some() {
        return;
    }
    if !can_apt() {
        eprintln!(
            "xtask: Chromium is missing; the run-report test needs it: run `sudo {CHROMIUM_INSTALL}` \
             (Debian/Ubuntu), or point DDPM_CHROMIUM at a Chromium or Chrome binary"
        );
        return;
    }
    eprintln!("xtask: installing Debian's chromium for the run-report test ({CHROMIUM_INSTALL})");
    let installed = apt_install("chromium");
    if !installed || find_chromium().is_none() {
        eprintln!(
            "xtask: could not install chromium; the run-report test will fail until \
             `{CHROMIUM_INSTALL}` succeeds"
        );
    }
}

/// The command that installs Fashion-MNIST (ddpm-data's `fashion::INSTALL`; xtask depends
/// on no workspace crate, so the path and package are spelled here too).
pub const FASHION_INSTALL: &str = "apt-get install -y dataset-fashion-mnist";
const FASHION_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// Installs Debian's `dataset-fashion-mnist` when its files are missing and we may (root, with
/// apt-get); otherwise prints one line naming the command. Never an error: only Fashion-MNIST
/// runs and their tests need it, and they fail naming the package when it is absent.
fn ensure_fashion_mnist() {
    let present = || Path::new(FASHION_DIR).join("t10k-labels-idx1-ubyte.gz").is_file();
    if present() {
        return;
    }
    if !can_apt() {
        eprintln!(
            "xtask: Fashion-MNIST is missing ({FASHION_DIR}); its runs and tests need it: run \
             `sudo {FASHION_INSTALL}` (Debian/Ubuntu), or point data.path / --data at a copy"
        );
        return;
    }
    eprintln!("xtask: installing Debian's dataset-fashion-mnist ({FASHION_INSTALL})");
    if !apt_install("dataset-fashion-mnist") || !present() {
        eprintln!(
            "xtask: could not install dataset-fashion-mnist; Fashion-MNIST runs and tests will \
             fail until `{FASHION_INSTALL}` succeeds"
        );
    }
}

fn install(
    bootstrap: &str,
    venv: &Path,
    python: &Path,
    requirements: &Path,
    torch: &str,
) -> Result<(), String> {
    if python.exists() {
        eprintln!("xtask: bringing {} up to date with scripts/requirements.txt", venv.display());
    } else {
        eprintln!(
            "xtask: setting up the Python environment in {} (PyTorch {torch} with CUDA libraries, \
             about 5 GB, a few minutes, once)",
            venv.display()
        );
    }
    if !python.exists() {
        status(Command::new(bootstrap).arg("-m").arg("venv").arg(venv), "creating the venv")?;
    }
    status(
        Command::new(python)
            .args([
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "--progress-bar",
                "off",
                "-r",
            ])
            .arg(requirements),
        "pip install -r scripts/requirements.txt",
    )?;
    let out = Command::new(python)
        .args([
            "-c",
            "import torch, diffusers, pytorch_fid, sklearn, scipy; print(torch.__version__)",
        ])
        .output()
        .map_err(|e| format!("checking the venv: {e}"))?;
    let version = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || !version.starts_with(torch) {
        return Err(format!(
            "the venv at {} does not import torch {torch} and the reference packages: {}{}",
            venv.display(),
            version.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

/// Exports scikit-learn's 8x8 digits once into `.ddpm/data/digits.bin` for the `digits` data set.
fn export_digits(env: &Env) -> Result<(), String> {
    let out = env.home.join("data/digits.bin");
    if out.exists() {
        return Ok(());
    }
    let tmp = out.with_extension("bin.tmp");
    status(
        Command::new(&env.python).arg(env.root.join("scripts/export_digits.py")).arg(&tmp),
        "exporting the digits data set (scripts/export_digits.py)",
    )?;
    fs::rename(&tmp, &out).map_err(|e| format!("{}: {e}", out.display()))?;
    let _ = std::io::stderr().flush();
    Ok(())
}

/// The cargo that runs us.
pub fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}
