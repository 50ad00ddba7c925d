//! Every data source reads what it should, and bad input gets an error naming the file.

use ddpm_data::{
    DataConfig, DataError, Dataset, cifar, config_from_arg, digits, folder, load, mnist,
};
use ddpm_testkit::temp_dir;
use std::io::Write;
use std::path::Path;

#[test]
fn digits_are_sklearns_1797_8x8_images() {
    let path = digits::default_path();
    assert!(path.exists(), "{} is missing: run `cargo xtask setup`", path.display());
    let (d, _) = load(&DataConfig::default()).unwrap();
    let Dataset::Images(s) = d else { panic!("digits are images") };
    assert_eq!((s.n, s.channels, s.height, s.width, s.num_classes), (1797, 1, 8, 8, 10));
    assert_eq!(s.max_value, 16);
    assert_eq!(*s.pixels.iter().max().unwrap(), 16);
    let labels = s.labels.as_ref().unwrap();
    for c in 0..10 {
        let count = labels.iter().filter(|&&l| l == c).count();
        assert!((170..=190).contains(&count), "class {c}: {count}");
    }
    let x = s.image_f32(0);
    assert!(x.iter().all(|v| (-1.0..=1.0).contains(v)));
    let big = digits::load(&path, Some(16)).unwrap();
    assert_eq!((big.height, big.width), (16, 16));
    assert_eq!(big.image(0)[0], s.image(0)[0]);
    assert!(digits::load(&path, Some(12)).unwrap_err().to_string().contains("image_size"));
}

fn write_cifar(dir: &Path, records: usize) {
    for name in [
        "data_batch_1.bin",
        "data_batch_2.bin",
        "data_batch_3.bin",
        "data_batch_4.bin",
        "data_batch_5.bin",
        "test_batch.bin",
    ] {
        let mut bytes = Vec::new();
        for r in 0..records {
            bytes.push((r % 10) as u8);
            bytes.extend((0..3072).map(|i| ((i + r) % 256) as u8));
        }
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

#[test]
fn cifar_binary_round_trips_and_truncation_is_named() {
    let dir = temp_dir("cifar");
    write_cifar(&dir, 3);
    let s = cifar::load(&dir, "train").unwrap();
    assert_eq!((s.n, s.channels, s.height), (15, 3, 32));
    assert_eq!(s.labels.as_ref().unwrap()[..4], [0, 1, 2, 0]);
    assert_eq!(s.image(1)[0], 1);
    assert_eq!(s.image(1)[1024], (1024 + 1) as u8, "green plane follows red");
    assert_eq!(cifar::load(&dir, "test").unwrap().n, 3);
    assert_eq!(config_from_arg(dir.to_str().unwrap()).dataset, "cifar10");
    // Truncate one file by 100 bytes.
    let f = dir.join("data_batch_3.bin");
    let bytes = std::fs::read(&f).unwrap();
    std::fs::write(&f, &bytes[..bytes.len() - 100]).unwrap();
    let e = cifar::load(&dir, "train").unwrap_err();
    assert!(matches!(e, DataError::Truncated { .. }));
    let msg = e.to_string();
    assert!(msg.contains("data_batch_3.bin") && msg.contains("3073"), "{msg}");
    std::fs::remove_file(dir.join("data_batch_5.bin")).unwrap();
    assert!(cifar::load(&dir, "train").unwrap_err().to_string().contains("data_batch_5.bin"));
}

fn solid(path: &Path, w: u32, h: u32, rgb: [u8; 3]) {
    image::RgbImage::from_pixel(w, h, image::Rgb(rgb)).save(path).unwrap();
}

#[test]
fn image_folders_resize_crop_label_and_report_bad_files() {
    let dir = temp_dir("folder");
    std::fs::create_dir_all(dir.join("cats")).unwrap();
    std::fs::create_dir_all(dir.join("dogs")).unwrap();
    solid(&dir.join("cats/a.png"), 40, 20, [200, 10, 30]);
    solid(&dir.join("dogs/b.jpg"), 16, 64, [10, 200, 30]);
    solid(&dir.join("dogs/c.PNG"), 8, 8, [0, 0, 255]);
    let (s, report) = folder::load(&dir, 8, 3, false).unwrap();
    assert_eq!(report.skipped, 0);
    assert_eq!((s.n, s.channels, s.height, s.width, s.num_classes), (3, 3, 8, 8, 2));
    assert_eq!(s.labels.as_ref().unwrap(), &vec![0, 1, 1]);
    // A solid PNG keeps its colour exactly through resize and crop.
    assert_eq!((s.image(0)[0], s.image(0)[64], s.image(0)[128]), (200, 10, 30));
    assert_eq!(s.image(2)[128], 255);
    let (g, _) = folder::load(&dir, 4, 1, false).unwrap();
    assert_eq!(g.channels, 1);

    let mut f = std::fs::File::create(dir.join("dogs/broken.png")).unwrap();
    f.write_all(b"\x89PNG\r\n\x1a\nthis is not a png").unwrap();
    let e = folder::load(&dir, 8, 3, false).unwrap_err();
    assert!(matches!(e, DataError::Corrupt { .. }));
    assert!(e.to_string().contains("broken.png"), "{e}");
    let (s, report) = folder::load(&dir, 8, 3, true).unwrap();
    assert_eq!((s.n, report.skipped), (3, 1));
    assert!(report.skipped_examples[0].ends_with("broken.png"));
}

#[test]
fn empty_or_missing_folders_are_named() {
    let dir = temp_dir("empty");
    std::fs::write(dir.join("notes.txt"), "no images").unwrap();
    let e = folder::load(&dir, 8, 3, false).unwrap_err();
    assert!(matches!(e, DataError::Empty { .. }) && e.to_string().contains("no .png"), "{e}");
    let e = load(&config_from_arg("/no/such/place")).unwrap_err();
    assert!(e.to_string().contains("/no/such/place"), "{e}");
    let e = load(&DataConfig { dataset: "imagenet".into(), ..Default::default() }).unwrap_err();
    assert!(e.to_string().contains("data.dataset"), "{e}");
    let e = load(&DataConfig { dataset: "cifar10".into(), ..Default::default() }).unwrap_err();
    assert!(e.to_string().contains("data.path"), "{e}");
}

fn idx(magic: u32, dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut v = magic.to_be_bytes().to_vec();
    for d in dims {
        v.extend(d.to_be_bytes());
    }
    v.extend_from_slice(data);
    v
}

#[test]
fn mnist_idx_plain_and_gzipped() {
    let dir = temp_dir("mnist");
    let pixels: Vec<u8> = (0..3 * 28 * 28).map(|i| (i % 251) as u8).collect();
    std::fs::write(dir.join("train-images-idx3-ubyte"), idx(2051, &[3, 28, 28], &pixels)).unwrap();
    let labels = idx(2049, &[3], &[7, 0, 9]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&labels).unwrap();
    std::fs::write(dir.join("train-labels-idx1-ubyte.gz"), gz.finish().unwrap()).unwrap();
    let s = mnist::load(&dir, "train", None).unwrap();
    assert_eq!((s.n, s.height, s.labels.clone().unwrap()), (3, 28, vec![7, 0, 9]));
    assert_eq!(s.image(1)[5], pixels[784 + 5]);
    let p = mnist::load(&dir, "train", Some(32)).unwrap();
    assert_eq!((p.height, p.image(0)[0], p.image(0)[2 * 32 + 2]), (32, 0, pixels[0]));
    assert_eq!(config_from_arg(dir.to_str().unwrap()).dataset, "mnist");
    // Four labels for three images.
    std::fs::remove_file(dir.join("train-labels-idx1-ubyte.gz")).unwrap();
    std::fs::write(dir.join("train-labels-idx1-ubyte"), idx(2049, &[4], &[1, 2, 3, 4])).unwrap();
    let e = mnist::load(&dir, "train", None).unwrap_err();
    assert!(matches!(e, DataError::Mismatch(_)));
    let msg = e.to_string();
    assert!(msg.contains("3 images") && msg.contains("4 labels"), "{msg}");
    std::fs::write(dir.join("train-images-idx3-ubyte"), idx(2051, &[3, 28, 28], &pixels[..100]))
        .unwrap();
    assert!(
        mnist::load(&dir, "train", None)
            .unwrap_err()
            .to_string()
            .contains("train-images-idx3-ubyte")
    );
}
