//! Per-image Gaussian noise that does not depend on how images are batched.
//!
//! Image i's k-th draw is a pure function of (seed, i, k): a counter-based generator (the
//! SplitMix64 output function applied to a per-image key and a counter) evaluated in int64
//! tensor ops, then Box-Muller. One job of n images and the same n split into shards, or into
//! other batch sizes, draw exactly the same noise for every image, on any device, with a few
//! elementwise kernels per draw whatever the batch.

use ddpm_core::rng::derive_seed;
use ddpm_nets::placement::Placed;
use tch::{Device, Kind, Tensor};

// Constants enter the kernels as scalars, never as host tensors copied to the device per draw.

/// Logical right shift of int64 tensors (torch's `>>` on int64 is arithmetic).
fn shr(x: &Tensor, k: i64) -> Tensor {
    x.bitwise_right_shift_tensor_scalar(k).bitwise_and((1i64 << (64 - k)) - 1)
}

/// SplitMix64's finaliser on int64 tensors (wrapping arithmetic, like the CPU version).
fn mix(z: &Tensor) -> Tensor {
    let z = z.bitwise_xor_tensor(&shr(z, 30)) * (0xBF58_476D_1CE4_E5B9u64 as i64);
    let z = z.bitwise_xor_tensor(&shr(&z, 27)) * (0x94D0_49BB_1331_11EBu64 as i64);
    z.bitwise_xor_tensor(&shr(&z, 31))
}

/// Uniform (0, 1] floats (f64) from 53 random bits of each int64.
fn to_unit(bits: &Tensor) -> Tensor {
    (shr(bits, 11).to_kind(Kind::Double) + 1.0) * (1.0 / (1u64 << 53) as f64)
}

/// Noise streams for a batch of images with global indices `indices`.
#[derive(Debug)]
pub struct ImageNoise {
    /// Per-image keys, [B] int64 on the device.
    keys: Tensor,
    /// Elements per image.
    numel: i64,
    shape: Vec<i64>,
    device: Device,
    /// Draws taken so far (each image's stream position).
    pub draws: i64,
}

impl ImageNoise {
    /// Streams for images `indices` (their positions in the whole job) under `seed`;
    /// `sample_shape` is one image's shape ([C, H, W] or [dim]).
    pub fn new(seed: u64, indices: &[u64], sample_shape: &[i64], device: Device) -> Self {
        let keys: Vec<i64> = indices.iter().map(|&i| derive_seed(seed, &[i]) as i64).collect();
        let mut shape = vec![indices.len() as i64];
        shape.extend_from_slice(sample_shape);
        Self {
            keys: Tensor::from_slice(&keys).to_device(device),
            numel: sample_shape.iter().product(),
            shape,
            device,
            draws: 0,
        }
    }

    /// Streams for the `count` rows `first`, `first + stride`, ... of a larger batch under
    /// `seed` (the training loss's eps: rank r of W holds global rows r, r + W, ...), with the
    /// keys computed on the device from the row numbers, so no host tensor is copied per step
    /// and the cost is that of these rows alone. Row k's stream is a pure function of (seed,
    /// k), so any split of the batch into rows draws the same numbers; it differs from
    /// [`ImageNoise::new`]'s stream of index k.
    pub fn for_rows(
        seed: u64,
        first: u64,
        stride: u64,
        count: usize,
        sample_shape: &[i64],
        device: Device,
    ) -> Self {
        let _guard = tch::no_grad_guard();
        let golden = 0x9E37_79B9_7F4A_7C15u64 as i64;
        let rows =
            Tensor::arange(count as i64, (Kind::Int64, device)) * stride as i64 + first as i64;
        let keys = mix(&((rows + 1) * golden + seed as i64));
        let mut shape = vec![count as i64];
        shape.extend_from_slice(sample_shape);
        Self { keys, numel: sample_shape.iter().product(), shape, device, draws: 0 }
    }

    /// The next standard normal tensor [B, ...sample_shape] (f32).
    pub fn draw(&mut self) -> Tensor {
        let _guard = tch::no_grad_guard();
        let n = self.numel;
        // Counter of element j in draw k: 2 (k n + j) and 2 (k n + j) + 1 for Box-Muller's pair.
        let j = Tensor::arange(n, (Kind::Int64, self.device));
        let base = (j + self.draws * n) * 2;
        let keys = self.keys.unsqueeze(1);
        let golden = 0x9E37_79B9_7F4A_7C15u64 as i64;
        let u1 = to_unit(&mix(&(mix(&(&keys + &base * golden)) + 1)));
        let u2 = to_unit(&mix(&(mix(&(&keys + (&base + 1) * golden)) + 2)));
        self.draws += 1;
        let r = (u1.log() * -2.0).sqrt();
        let z = r * (u2 * (2.0 * std::f64::consts::PI)).cos();
        z.to_kind(Kind::Float).view(self.shape.as_slice())
    }
}

impl Placed for ImageNoise {
    fn placed_tensors(&self) -> Vec<(String, &Tensor)> {
        vec![("noise/keys".into(), &self.keys)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noise_does_not_depend_on_batching() {
        let shape = [1i64, 4, 4];
        let mut all = ImageNoise::new(7, &[0, 1, 2, 3], &shape, Device::Cpu);
        let mut a = ImageNoise::new(7, &[0, 1], &shape, Device::Cpu);
        let mut b = ImageNoise::new(7, &[2, 3], &shape, Device::Cpu);
        for _ in 0..3 {
            let whole = all.draw();
            let parts = Tensor::cat(&[a.draw(), b.draw()], 0);
            assert!(whole.equal(&parts));
        }
        // Rows of a batch split as ranks split it (rank r: rows r, r + W, ...) draw the rows of
        // the whole batch.
        let whole = ImageNoise::for_rows(9, 0, 1, 6, &shape, Device::Cpu).draw();
        let rank1 = ImageNoise::for_rows(9, 1, 3, 2, &shape, Device::Cpu).draw();
        assert!(rank1.equal(&Tensor::cat(&[whole.get(1), whole.get(4)], 0).view([2, 1, 4, 4])));
        let mean = whole.mean(Kind::Double).double_value(&[]);
        let std = whole.std(true).double_value(&[]);
        assert!(mean.abs() < 0.35 && (std - 1.0).abs() < 0.3, "{mean} {std}");
        let mut other_seed = ImageNoise::new(8, &[0], &shape, Device::Cpu);
        let mut same_seed = ImageNoise::new(7, &[0], &shape, Device::Cpu);
        assert!(!other_seed.draw().equal(&same_seed.draw()));
    }

    #[test]
    fn noise_is_standard_normal() {
        let mut n = ImageNoise::new(1, &(0..64).collect::<Vec<_>>(), &[3, 32, 32], Device::Cpu);
        let z = n.draw().to_kind(Kind::Double);
        let mean = z.mean(Kind::Double).double_value(&[]);
        let var = z.var(true).double_value(&[]);
        let kurt = (z.pow_tensor_scalar(4)).mean(Kind::Double).double_value(&[]);
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((var - 1.0).abs() < 0.01, "var {var}");
        assert!((kurt - 3.0).abs() < 0.05, "fourth moment {kurt}");
        // Successive draws and neighbouring images are uncorrelated.
        let z2 = n.draw().to_kind(Kind::Double);
        let corr = (&z * &z2).mean(Kind::Double).double_value(&[]);
        assert!(corr.abs() < 0.01, "corr {corr}");
        let c01 = (z.get(0) * z.get(1)).mean(Kind::Double).double_value(&[]);
        assert!(c01.abs() < 0.05, "image corr {c01}");
    }
}
