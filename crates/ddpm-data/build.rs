fn main() {
    // ddpm-data needs no libtorch, but in a workspace build its test binaries link the
    // libtorch-enabled ddpm-core (feature unification): give them the path to find it.
    ddpm_build::rpath_libtorch();
}
