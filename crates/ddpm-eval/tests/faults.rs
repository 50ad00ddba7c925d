//! Fault injection into a pytorch-fid statistics file (`.npz`, deflate-compressed as `fid-stats`
//! writes it, and stored): one byte changed, and the file cut, at 20 offsets each (local
//! headers, compressed data, the central directory). `Stats::load` is always either an error of
//! one line naming the file or exactly the original `mu` and `sigma`: never a panic, never
//! damaged numbers. The zip format's CRC-32 of every entry is what catches a changed data byte
//! (the zip reader verifies it when an entry is read to its end).

use ddpm_eval::Stats;
use ddpm_testkit::{assert_one_line_naming, fault_offsets, flipped, no_panic, temp_dir};
use tch::{Device, Kind, Tensor};

fn values(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.to_kind(Kind::Double).flatten(0, -1)).unwrap()
}

#[test]
fn damaged_statistics_files_are_refused_by_name_and_never_read_as_good() {
    let dir = temp_dir("faults-stats");
    tch::manual_seed(3);
    let features = Tensor::randn([40, 16], (Kind::Double, Device::Cpu));
    let stats = Stats::from_features(&features).unwrap();
    let (mu, sigma) = (values(&stats.mu), values(&stats.sigma));
    for compressed in [true, false] {
        let path = dir.join(if compressed { "deflated.npz" } else { "stored.npz" });
        if compressed {
            stats.save(&path).unwrap();
        } else {
            let arrays = [("mu", &[16usize][..], &mu[..]), ("sigma", &[16, 16][..], &sigma[..])];
            ddpm_io::npy::write_npz(&path, &arrays, false).unwrap();
        }
        let good = std::fs::read(&path).unwrap();
        let damaged = dir.join("damaged.npz");
        let (mut refused, mut harmless) = (0, 0);
        // The first local header is 30 bytes plus the entry's name.
        for at in fault_offsets(good.len(), 38, 5) {
            for (what, bytes) in [
                (format!("{path:?}: byte {at} changed"), flipped(&good, at)),
                (format!("{path:?}: cut at {at}"), good[..at].to_vec()),
            ] {
                std::fs::write(&damaged, &bytes).unwrap();
                match no_panic(&what, || Stats::load(&damaged)) {
                    Err(e) => {
                        assert_one_line_naming(&what, &e.to_string(), "damaged.npz");
                        refused += 1;
                    }
                    Ok(s) => {
                        assert_eq!(values(&s.mu), mu, "{what}: damaged mu read as good");
                        assert_eq!(values(&s.sigma), sigma, "{what}: damaged sigma read as good");
                        harmless += 1;
                    }
                }
            }
        }
        // Cuts are always caught; a changed byte only where zip keeps a copy it does not use
        // (a local header's timestamp, say) can pass, and then the values are right.
        assert!(refused >= 30, "{path:?}: {refused} refused, {harmless} harmless");
    }
}
