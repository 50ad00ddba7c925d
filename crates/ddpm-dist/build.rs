fn main() {
    ddpm_build::link_libtorch();
}
