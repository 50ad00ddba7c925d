fn main() {
    ddpm_build::link_libtorch();
    println!("cargo:rerun-if-changed=csrc/shim.cpp");
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
    if !cuda.is_empty() && lib.join("libtorch_cuda.so").exists() {
        build.define("DDPM_WITH_CUDA", None).includes(&cuda);
    }
    build.compile("ddpm_shim");
}
