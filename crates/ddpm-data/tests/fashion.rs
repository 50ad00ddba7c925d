//! Fashion-MNIST as Debian's `dataset-fashion-mnist` installs it: the reader against an
//! independent numpy decode of the same `.gz` files (`scripts/ref_fashion.py`: every pixel and
//! label equal, 6,000 images per class in train and 1,000 in test), and damaged copies named in
//! one line with the package.

use ddpm_data::{DataConfig, Dataset, fashion, load};
use ddpm_testkit::{NEEDS_VENV, assert_one_line_naming, run_json, temp_dir};
use std::path::Path;

fn packaged() -> &'static Path {
    let dir = Path::new(fashion::DEFAULT_DIR);
    assert!(
        dir.join("train-images-idx3-ubyte.gz").is_file(),
        "{} is missing: run `{}` (or `cargo xtask setup` as root)",
        dir.display(),
        fashion::INSTALL
    );
    dir
}

#[test]
#[ignore = "needs the Python venv: run `cargo xtask test`"]
fn the_reader_equals_a_numpy_decode_of_the_packaged_files() {
    let _ = NEEDS_VENV;
    let dir = packaged();
    let out = temp_dir("fashion-numpy");
    let theirs = run_json("ref_fashion.py", &[dir.to_str().unwrap(), out.to_str().unwrap()]);
    for (split, per_class) in fashion::PER_CLASS {
        let c = DataConfig {
            dataset: "fashion-mnist".into(),
            split: split.into(),
            ..Default::default()
        };
        let Dataset::Images(s) = load(&c).unwrap().0 else { panic!("fashion-mnist is images") };
        let n = if split == "train" { 60_000 } else { 10_000 };
        assert_eq!((s.n, s.channels, s.height, s.width, s.num_classes), (n, 1, 28, 28, 10));
        assert_eq!(s.name, "fashion-mnist");
        let shape: Vec<u64> = theirs[split]["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        assert_eq!(shape, vec![n as u64, 28, 28], "{split}");
        let pixels = std::fs::read(out.join(format!("{split}-pixels.u8"))).unwrap();
        let labels = std::fs::read(out.join(format!("{split}-labels.u8"))).unwrap();
        assert!(s.pixels == pixels, "{split}: pixels differ from numpy's decode");
        let ours: Vec<u8> = s.labels.as_ref().unwrap().iter().map(|&l| l as u8).collect();
        assert!(ours == labels, "{split}: labels differ from numpy's decode");
        let counts: Vec<u64> = theirs[split]["counts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        assert_eq!(counts, vec![per_class as u64; 10], "{split}: numpy's class counts");
        for k in 0..10u32 {
            let count = s.labels.as_ref().unwrap().iter().filter(|&&l| l == k).count();
            assert_eq!(count, per_class, "{split}: class {k} ({})", fashion::CLASSES[k as usize]);
        }
    }
    // Padding to 32x32 keeps every pixel, 2 black ones on each side.
    let c = DataConfig {
        dataset: "fashion-mnist".into(),
        split: "test".into(),
        image_size: Some(32),
        ..Default::default()
    };
    let Dataset::Images(p) = load(&c).unwrap().0 else { panic!("images") };
    let t = fashion::load(None, "test", None).unwrap();
    assert_eq!((p.height, p.width), (32, 32));
    assert_eq!(p.image(7)[(2 + 13) * 32 + 2 + 11], t.image(7)[13 * 28 + 11]);
    assert_eq!(p.image(7)[32 + 1], 0);
}

#[test]
fn a_cut_or_altered_copy_is_named_in_one_line_with_the_package() {
    let dir = packaged();
    let copy = temp_dir("fashion-bad");
    for name in ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"] {
        std::fs::copy(dir.join(name), copy.join(name)).unwrap();
    }
    let good = fashion::load(Some(&copy), "test", None).unwrap();
    assert_eq!(good.n, 10_000);
    let images = copy.join("t10k-images-idx3-ubyte.gz");
    let bytes = std::fs::read(&images).unwrap();
    let check = |what: &str, file: &str| {
        let e = fashion::load(Some(&copy), "test", None).unwrap_err().to_string();
        assert_one_line_naming(what, &e, file);
        assert!(e.contains(fashion::PACKAGE), "{what}: {e}");
    };
    // Cut: the gzip stream ends early.
    std::fs::write(&images, &bytes[..bytes.len() / 2]).unwrap();
    check("cut in half", "t10k-images-idx3-ubyte.gz");
    // Altered: a byte inside the compressed stream (gzip's CRC catches it).
    let mut altered = bytes.clone();
    altered[bytes.len() / 3] ^= 0x55;
    std::fs::write(&images, &altered).unwrap();
    check("one byte altered", "t10k-images-idx3-ubyte.gz");
    // Not gzip at all and not IDX.
    std::fs::write(&images, b"<html>not found</html>").unwrap();
    check("a web page", "t10k-images-idx3-ubyte.gz");
    std::fs::remove_file(&images).unwrap();
    // Missing: the name looked for first (plain, then .gz).
    check("missing", "t10k-images-idx3-ubyte");
    // The labels of the other split are missing too: the error names that file.
    let e = fashion::load(Some(&copy), "train", None).unwrap_err().to_string();
    assert_one_line_naming("train missing", &e, "train-images-idx3-ubyte");
}
