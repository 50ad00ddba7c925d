//! Build-script helper shared by every crate that links libtorch.
//!
//! Two linker problems bite tch programs on Linux:
//! - the binary does not find `libtorch*.so` at run time unless the user
//!   exports `LD_LIBRARY_PATH`; we add an rpath to the libtorch in use;
//! - rustc links with `--as-needed`, so `libtorch_cuda.so`, from which no
//!   symbol is referenced directly, is dropped from the binary's DT_NEEDED list
//!   and `tch::Cuda::is_available()` silently answers false on a GPU machine.
//!   We force it in with `--no-as-needed`.
//!
//! Call [`link_libtorch`] from `build.rs`. It applies to every target of the
//! calling package (bins, tests, benches, examples).

use std::env;
use std::path::{Path, PathBuf};

/// The libtorch `lib` directory in use, from `LIBTORCH` (set by the workspace's
/// `.cargo/config.toml` to the venv's torch package), canonicalised so the
/// rpath survives the `.ddpm` link being moved.
pub fn libtorch_lib_dir() -> Option<PathBuf> {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    let root = env::var_os("LIBTORCH")?;
    let lib = Path::new(&root).join("lib");
    lib.canonicalize().ok()
}

/// Emits the rpath and the `--no-as-needed` CUDA link for the calling package.
///
/// Without `LIBTORCH` this does nothing: torch-sys's own build script then
/// fails with its explanation, which is the clearer message.
pub fn link_libtorch() {
    let Some(lib) = libtorch_lib_dir() else {
        println!(
            "cargo:warning=LIBTORCH is not set or does not exist; run `cargo xtask setup` first"
        );
        return;
    };
    println!("cargo:rerun-if-changed={}", lib.display());
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    for cuda_lib in ["torch_cuda", "c10_cuda"] {
        if lib.join(format!("lib{cuda_lib}.so")).exists() {
            println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-l{cuda_lib},--as-needed");
        }
    }
}

/// Only the rpath to libtorch, for a package that never uses libtorch itself but whose test
/// binaries may link it anyway: in a workspace build, cargo's feature unification can turn on
/// a dependency's libtorch feature (ddpm-core's `tch`). Adds no library to the link.
pub fn rpath_libtorch() {
    if let Some(lib) = libtorch_lib_dir() {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    }
}

/// Include directories of the libtorch in use, for C++ shims built with `cc`:
/// libtorch's own headers, and the CUDA runtime headers that the CUDA wheels ship under
/// `site-packages/nvidia/*/include` (empty for a CPU-only libtorch).
pub fn libtorch_includes() -> (Vec<PathBuf>, Vec<PathBuf>) {
    let Some(lib) = libtorch_lib_dir() else { return (vec![], vec![]) };
    let root = lib.parent().expect("lib has a parent").to_path_buf();
    let torch = vec![root.join("include"), root.join("include/torch/csrc/api/include")];
    let mut cuda = Vec::new();
    if let Some(site) = root.parent()
        && let Ok(entries) = std::fs::read_dir(site.join("nvidia"))
    {
        for e in entries.flatten() {
            let inc = e.path().join("include");
            if inc.join("cuda_runtime_api.h").exists() {
                cuda.push(inc);
            }
        }
    }
    (torch, cuda)
}
