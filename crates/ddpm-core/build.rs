//! Only the `tch` feature links libtorch; the default build needs no build script work at all.
//! With `tch`, the test binaries get an rpath to the libtorch in `LIBTORCH` so they run without
//! `LD_LIBRARY_PATH`. This is a two-line subset of `ddpm-build::rpath_libtorch`, written out here
//! so that the crate has no build-dependency on a crate that is not published.
fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    if std::env::var_os("CARGO_FEATURE_TCH").is_none() {
        return;
    }
    if let Some(lib) = std::env::var_os("LIBTORCH")
        .and_then(|root| std::path::Path::new(&root).join("lib").canonicalize().ok())
    {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    }
}
