use std::path::{Path, PathBuf};

fn main() {
    ddpm_build::link_libtorch();
    println!("cargo:rerun-if-changed=csrc/shim.cpp");
    println!("cargo:rerun-if-changed=csrc/dist.cpp");
    println!("cargo:rerun-if-changed=csrc/gloo_decls");
    println!("cargo:rerun-if-env-changed=CPLUS_INCLUDE_PATH");
    let (torch, cuda) = ddpm_build::libtorch_includes();
    if torch.is_empty() {
        return;
    }
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .pic(true)
        .warnings(false)
        .flag("-std=c++17")
        .flag("-D_GLIBCXX_USE_CXX11_ABI=1")
        .includes(&torch)
        .file("csrc/shim.cpp");
    let lib = ddpm_build::libtorch_lib_dir().unwrap();
    let cuda_libtorch = lib.join("libtorch_cuda.so").exists();
    if !cuda.is_empty() && cuda_libtorch {
        build.define("DDPM_WITH_CUDA", None).includes(&cuda);
    }
    build.compile("ddpm_shim");
    build_dist(&torch, &cuda, &lib, cuda_libtorch);
}

/// csrc/dist.cpp: c10d with Gloo always, with NCCL when its headers and a CUDA libtorch exist.
fn build_dist(torch: &[PathBuf], cuda: &[PathBuf], lib: &Path, cuda_libtorch: bool) {
    // For the test that guards our gloo stand-ins against a changed ProcessGroupGloo.hpp.
    let c10d = torch[0].join("torch/csrc/distributed/c10d");
    println!("cargo:rustc-env=DDPM_C10D_INCLUDE={}", c10d.display());
    let mut dist = cc::Build::new();
    dist.cpp(true)
        .pic(true)
        .warnings(false)
        .flag("-std=c++17")
        .flag("-D_GLIBCXX_USE_CXX11_ABI=1")
        .define("USE_C10D_GLOO", None)
        .include("csrc/gloo_decls")
        .includes(torch)
        .file("csrc/dist.cpp");
    match nccl_include(lib, cuda, cuda_libtorch) {
        Ok(nccl) => {
            dist.define("USE_C10D_NCCL", None).includes(cuda).include(nccl);
            println!("cargo:rustc-env=DDPM_NCCL_MISSING=");
        }
        // Told at run time by the error of a CUDA process group, not as a warning on every build.
        Err(why) => println!("cargo:rustc-env=DDPM_NCCL_MISSING={why}"),
    }
    dist.compile("ddpm_shim_dist");
}

/// The directory holding `nccl.h` when ProcessGroupNCCL.hpp can be compiled here: a CUDA
/// libtorch, NCCL's headers from the venv's nvidia-nccl wheel, the CUDA runtime headers, and
/// CCCL's `nv/target` (included by cuda_fp16.h; the nvidia-cuda-cccl wheel, or a toolkit on
/// CPLUS_INCLUDE_PATH). Otherwise why not, in one line.
fn nccl_include(lib: &Path, cuda: &[PathBuf], cuda_libtorch: bool) -> Result<PathBuf, String> {
    if !cuda_libtorch {
        return Err("libtorch has no libtorch_cuda.so".into());
    }
    if cuda.is_empty() {
        return Err("the venv has no CUDA runtime headers (nvidia/*/include)".into());
    }
    let site = lib.parent().and_then(Path::parent).ok_or("libtorch is not inside a venv")?;
    // Installing the header wheels (`cargo xtask setup`) rebuilds the shim with NCCL.
    println!("cargo:rerun-if-changed={}", site.join("nvidia").display());
    let nccl = site.join("nvidia/nccl/include");
    if !nccl.join("nccl.h").exists() {
        return Err(format!("{} does not exist", nccl.join("nccl.h").display()));
    }
    let extra = std::env::var_os("CPLUS_INCLUDE_PATH").unwrap_or_default();
    let mut dirs = cuda.to_vec();
    dirs.extend(std::env::split_paths(&extra));
    if !dirs.iter().any(|d| d.join("nv/target").exists()) {
        return Err("CCCL's nv/target header is missing (pip package nvidia-cuda-cccl)".into());
    }
    Ok(nccl)
}
