//! Fault injection into data files: a CIFAR-10 batch and an MNIST IDX file (images and labels),
//! one byte changed and the file cut at 20 offsets each. Loading is never a panic; it is either
//! an error of one line naming the file, or a data set whose damage is confined to the one byte
//! that was changed.
//!
//! Neither format has a checksum, so a changed pixel byte, or a label byte changed into another
//! valid class, cannot be detected by any reader: for those the test asserts what can be
//! asserted — the structure (count, shape, every other byte and label where it was) and that the
//! label stays a class. Everything structural is detected: labels out of range, cut files (a
//! CIFAR-10 batch cut at a record boundary shows only as shorter than its siblings; the test
//! split's single file cut so cannot be told from a shorter file), and any change to an IDX
//! header (magic, counts that disagree with the labels, sizes other than 28 x 28, a file shorter
//! than its header says).

use ddpm_data::{ImageSet, cifar, mnist};
use ddpm_testkit::{assert_one_line_naming, fault_offsets, flipped, no_panic, temp_dir};
use std::path::Path;

/// What can differ between a good load and a load of the file with byte `at` changed.
#[derive(Debug, PartialEq)]
enum Damage {
    Pixel(usize),
    Label(usize),
}

/// The positions where two loads differ (pixels by index, labels by image).
fn differences(a: &ImageSet, b: &ImageSet) -> Vec<Damage> {
    assert_eq!((a.n, a.channels, a.height, a.width), (b.n, b.channels, b.height, b.width));
    let mut d: Vec<Damage> =
        (0..a.pixels.len()).filter(|&i| a.pixels[i] != b.pixels[i]).map(Damage::Pixel).collect();
    let (la, lb) = (a.labels.as_ref().unwrap(), b.labels.as_ref().unwrap());
    d.extend((0..a.n).filter(|&i| la[i] != lb[i]).map(Damage::Label));
    d
}

fn write_cifar(dir: &Path) -> Vec<u8> {
    std::fs::create_dir_all(dir).unwrap();
    let mut r = ddpm_core::rng::SplitMix64::new(8);
    let mut third = Vec::new();
    for i in 1..=5 {
        let bytes: Vec<u8> = (0..3)
            .flat_map(|_| {
                let mut rec = vec![r.below(10) as u8];
                rec.extend((0..3072).map(|_| r.next_u64() as u8));
                rec
            })
            .collect();
        std::fs::write(dir.join(format!("data_batch_{i}.bin")), &bytes).unwrap();
        if i == 3 {
            third = bytes;
        }
    }
    third
}

#[test]
fn a_damaged_cifar_batch_is_refused_by_name_or_damaged_only_where_changed() {
    let dir = temp_dir("faults-cifar");
    let good = write_cifar(&dir);
    let file = dir.join("data_batch_3.bin");
    let original = cifar::load(&dir, "train").unwrap();
    // Records of batches 1 and 2 come first.
    let base = 2 * 3;
    let mut refused = 0;
    for at in fault_offsets(good.len(), 1, 3) {
        let what = format!("byte {at} changed");
        std::fs::write(&file, flipped(&good, at)).unwrap();
        match no_panic(&what, || cifar::load(&dir, "train")) {
            Err(e) => {
                assert_one_line_naming(&what, &e.to_string(), "data_batch_3.bin");
                assert_eq!(at % cifar::RECORD, 0, "{what}: only a label byte can be refused");
                refused += 1;
            }
            Ok(s) => {
                let (record, within) = (base + at / cifar::RECORD, at % cifar::RECORD);
                let want = if within == 0 {
                    Damage::Label(record)
                } else {
                    Damage::Pixel(record * 3072 + within - 1)
                };
                assert_eq!(differences(&original, &s), vec![want], "{what}");
                assert!(s.labels.as_ref().unwrap().iter().all(|&l| l < 10), "{what}");
            }
        }
        let what = format!("cut at {at}");
        std::fs::write(&file, &good[..at]).unwrap();
        let e = no_panic(&what, || cifar::load(&dir, "train")).unwrap_err().to_string();
        assert_one_line_naming(&what, &e, "data_batch_3.bin");
        refused += 1;
    }
    // Cut at a record boundary: shorter than its siblings.
    std::fs::write(&file, &good[..2 * cifar::RECORD]).unwrap();
    let e = cifar::load(&dir, "train").unwrap_err().to_string();
    assert!(
        e.contains("data_batch_3.bin") && e.contains("2 records") && e.contains("holds 3"),
        "{e}"
    );
    assert!(refused >= 20, "{refused}");
}

fn idx(magic: u32, dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut v = magic.to_be_bytes().to_vec();
    dims.iter().for_each(|d| v.extend(d.to_be_bytes()));
    v.extend_from_slice(data);
    v
}

#[test]
fn damaged_mnist_idx_files_are_refused_by_name_or_damaged_only_where_changed() {
    let dir = temp_dir("faults-mnist");
    let mut r = ddpm_core::rng::SplitMix64::new(4);
    let pixels: Vec<u8> = (0..4 * 784).map(|_| r.next_u64() as u8).collect();
    let (images, labels) = (idx(2051, &[4, 28, 28], &pixels), idx(2049, &[4], &[3, 1, 4, 1]));
    let (ip, lp) = (dir.join("train-images-idx3-ubyte"), dir.join("train-labels-idx1-ubyte"));
    std::fs::write(&ip, &images).unwrap();
    std::fs::write(&lp, &labels).unwrap();
    let original = mnist::load(&dir, "train", None).unwrap();
    let mut refused = 0;
    for (path, good, header) in [(&ip, &images, 16), (&lp, &labels, 8)] {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let offsets =
            if header == 8 { (0..12).collect() } else { fault_offsets(good.len(), 16, 9) };
        for at in offsets {
            let what = format!("{name}: byte {at} changed");
            std::fs::write(path, flipped(good, at)).unwrap();
            match no_panic(&what, || mnist::load(&dir, "train", None)) {
                Err(e) => {
                    assert_one_line_naming(&what, &e.to_string(), &name);
                    refused += 1;
                }
                Ok(s) => {
                    assert!(at >= header, "{what}: a changed header was read as good");
                    let want = if header == 8 {
                        Damage::Label(at - header)
                    } else {
                        Damage::Pixel(at - header)
                    };
                    assert_eq!(differences(&original, &s), vec![want], "{what}");
                }
            }
            let what = format!("{name}: cut at {at}");
            std::fs::write(path, &good[..at]).unwrap();
            let e = no_panic(&what, || mnist::load(&dir, "train", None)).unwrap_err().to_string();
            assert_one_line_naming(&what, &e, &name);
            std::fs::write(path, good).unwrap();
        }
    }
    assert!(refused >= 14, "{refused}");
}
