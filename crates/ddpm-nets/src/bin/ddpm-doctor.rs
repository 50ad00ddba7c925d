//! `ddpm-doctor`: what libtorch this binary really loaded, and whether CUDA and cuDNN work.
//!
//! Exits 1 with an explanation when the environment is broken: libtorch is not 2.11.0, a
//! tensor operation fails, or a GPU is present but this binary cannot use it (the classic
//! `--as-needed` link that drops libtorch_cuda.so).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tch::{Cuda, Device, Kind, Tensor};

/// The libtorch_cpu.so mapped into this process, from /proc/self/maps.
fn loaded_libtorch() -> Option<PathBuf> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| p.ends_with("/libtorch_cpu.so"))
        .map(PathBuf::from)
}

/// torch's version string from `version.py` beside the loaded library's `lib/` directory.
fn torch_version(lib: &Path) -> Option<String> {
    let version_py = lib.parent()?.parent()?.join("version.py");
    let text = std::fs::read_to_string(version_py).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("__version__ = "))
        .map(|v| v.trim().trim_matches(|c| c == '\'' || c == '"').to_owned())
}

fn gpu_names() -> Vec<String> {
    std::process::Command::new("nvidia-smi")
        .args(["--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().map(str::to_owned).collect())
        .unwrap_or_default()
}

fn main() -> ExitCode {
    let mut broken = Vec::new();
    let lib = loaded_libtorch();
    let version = lib.as_deref().and_then(torch_version);
    println!(
        "libtorch     {}",
        lib.as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "not found in /proc/self/maps".into())
    );
    println!("torch        {}", version.as_deref().unwrap_or("unknown"));
    match version.as_deref() {
        Some(v) if v.starts_with("2.11.0") => {}
        other => {
            broken.push(format!("tch 0.24 needs libtorch 2.11.0, this binary loaded {other:?}"))
        }
    }
    println!("cpu threads  {} (intra-op), {} logical cores", tch::get_num_threads(), num_cores());

    let cpu_ok = std::panic::catch_unwind(|| {
        let x = Tensor::arange(10, (Kind::Float, Device::Cpu));
        x.dot(&x).double_value(&[])
    });
    match cpu_ok {
        Ok(285.0) => println!("cpu tensors  ok"),
        Ok(v) => broken.push(format!("a CPU dot product gave {v}, expected 285")),
        Err(_) => broken.push("a CPU tensor operation panicked".into()),
    }

    let cuda = Cuda::is_available();
    println!("cuda         {}", if cuda { "available" } else { "not available" });
    println!(
        "cudnn        {}",
        if Cuda::cudnn_is_available() { "available" } else { "not available" }
    );
    println!("gpu count    {}", Cuda::device_count());
    let gpus = gpu_names();
    for (i, g) in gpus.iter().enumerate() {
        println!("gpu {i}        {g}");
    }
    if cuda {
        let ok = std::panic::catch_unwind(|| {
            let x = Tensor::ones([1024, 1024], (Kind::Float, Device::Cuda(0)));
            x.matmul(&x).sum(Kind::Float).double_value(&[])
        });
        match ok {
            Ok(v) if v == 1024.0 * 1024.0 * 1024.0 => {
                println!("cuda tensors ok (1024x1024 matmul)")
            }
            Ok(v) => broken.push(format!("a CUDA matmul gave {v}")),
            Err(_) => broken.push("a CUDA tensor operation panicked".into()),
        }
    } else if !gpus.is_empty() || Path::new("/dev/nvidia0").exists() {
        broken.push(
            "a GPU is present but this binary cannot use CUDA: libtorch_cuda.so was not linked \
             (check that the crate's build.rs calls ddpm_build::link_libtorch) or the driver is too old"
                .into(),
        );
    }
    if broken.is_empty() {
        println!("status       ok");
        ExitCode::SUCCESS
    } else {
        for b in &broken {
            eprintln!("broken: {b}");
        }
        ExitCode::from(1)
    }
}

fn num_cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}
