fn main() {
    // Only the tensor feature links libtorch; the default build needs none.
    if std::env::var_os("CARGO_FEATURE_TCH").is_some() {
        ddpm_build::link_libtorch();
    }
}
