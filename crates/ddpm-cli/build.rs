fn main() {
    // The schedule tool uses no libtorch, but in a workspace build ddpm-core's `tch` feature is
    // unified on, so the binary may link it: give it the path to find it.
    ddpm_build::rpath_libtorch();
}
