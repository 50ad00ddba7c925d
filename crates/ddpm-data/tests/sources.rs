//! Every data source reads what it should, and bad input gets an error naming the file.

use ddpm_core::rng::SplitMix64;
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
    assert_eq!((d.len(), d.sample_shape(), d.num_classes()), (1797, vec![1, 8, 8], 10));
    let Dataset::Images(s) = d else { panic!("digits are images") };
    assert_eq!(s.max_value, 16);
    assert_eq!(*s.pixels.iter().max().unwrap(), 16);
    assert_eq!(*s.pixels.iter().min().unwrap(), 0);
    let labels = s.labels.as_ref().unwrap();
    for c in 0..10 {
        let count = labels.iter().filter(|&&l| l == c).count();
        assert!((170..=190).contains(&count), "class {c}: {count}");
    }
    // sklearn's first digit is a 0 whose top-left corner is blank.
    assert_eq!((labels[0], s.image(0)[0]), (0, 0));
    let x = s.image_f32(0);
    assert!(x.iter().all(|v| (-1.0..=1.0).contains(v)));
    assert_eq!(x[0], -1.0);
    let big = digits::load(&path, Some(32)).unwrap();
    assert_eq!((big.height, big.width, big.n), (32, 32, 1797));
    for (y, x) in [(0, 0), (3, 5), (7, 7)] {
        for (dy, dx) in [(0, 0), (3, 3)] {
            assert_eq!(big.image(9)[(4 * y + dy) * 32 + 4 * x + dx], s.image(9)[y * 8 + x]);
        }
    }
    assert!(digits::load(&path, Some(12)).unwrap_err().to_string().contains("image_size"));
}

const CIFAR_FILES: [&str; 6] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
    "test_batch.bin",
];

/// Writes `records` random records per file; returns each file's (labels, pixels).
fn write_cifar(dir: &Path, records: usize) -> Vec<(Vec<u32>, Vec<u8>)> {
    std::fs::create_dir_all(dir).unwrap();
    let mut r = SplitMix64::new(11);
    CIFAR_FILES
        .iter()
        .map(|name| {
            let (mut bytes, mut labels, mut pixels) = (Vec::new(), Vec::new(), Vec::new());
            for _ in 0..records {
                let label = r.below(10) as u8;
                let img: Vec<u8> = (0..3072).map(|_| r.next_u64() as u8).collect();
                bytes.push(label);
                bytes.extend_from_slice(&img);
                labels.push(label as u32);
                pixels.extend(img);
            }
            std::fs::write(dir.join(name), bytes).unwrap();
            (labels, pixels)
        })
        .collect()
}

#[test]
fn cifar_binary_reads_back_exactly() {
    let dir = temp_dir("cifar");
    // The release's own folder name inside the given directory is accepted too.
    let written = write_cifar(&dir.join("cifar-10-batches-bin"), 3);
    let s = cifar::load(&dir, "train").unwrap();
    assert_eq!((s.n, s.channels, s.height, s.width, s.max_value), (15, 3, 32, 32, 255));
    let labels: Vec<u32> = written[..5].iter().flat_map(|(l, _)| l.clone()).collect();
    let pixels: Vec<u8> = written[..5].iter().flat_map(|(_, p)| p.clone()).collect();
    assert_eq!(s.labels.as_ref(), Some(&labels));
    assert_eq!(s.pixels, pixels);
    let c = config_from_arg(dir.to_str().unwrap());
    assert_eq!(c.dataset, "cifar10");
    let (t, _) = load(&DataConfig { split: "test".into(), ..c }).unwrap();
    let Dataset::Images(t) = t else { panic!("cifar is images") };
    assert_eq!((t.n, &t.pixels, t.labels.unwrap()), (3, &written[5].1, written[5].0.clone()));
}

#[test]
fn truncated_or_missing_cifar_files_are_named() {
    let dir = temp_dir("cifar-bad");
    write_cifar(&dir, 3);
    let f = dir.join("data_batch_3.bin");
    let bytes = std::fs::read(&f).unwrap();
    std::fs::write(&f, &bytes[..bytes.len() - 100]).unwrap();
    let e = cifar::load(&dir, "train").unwrap_err();
    let DataError::Truncated { path, size, expected } = &e else { panic!("{e}") };
    assert_eq!((path.as_path(), *size, *expected), (f.as_path(), 3 * 3073 - 100, 3073));
    let msg = e.to_string();
    assert!(msg.contains("data_batch_3.bin") && msg.contains("9119") && msg.contains("3073"));
    assert!(cifar::load(&dir, "test").is_ok());
    std::fs::remove_file(dir.join("data_batch_5.bin")).unwrap();
    let e = cifar::load(&dir, "train").unwrap_err();
    assert!(matches!(e, DataError::NotFound { .. }) && e.to_string().contains("data_batch_5.bin"));
}

fn solid(path: &Path, w: u32, h: u32, rgb: [u8; 3]) {
    image::RgbImage::from_pixel(w, h, image::Rgb(rgb)).save(path).unwrap();
}

#[test]
fn image_folders_resize_crop_and_label_by_subfolder() {
    let dir = temp_dir("folder");
    for sub in ["cats", "dogs", "emus"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    // 40x20, left half red, right half blue: resized to 16x8, the centre crop keeps columns
    // 4..12, so half red, half blue.
    let halves = image::RgbImage::from_fn(40, 20, |x, _| {
        image::Rgb(if x < 20 { [255, 0, 0] } else { [0, 0, 255] })
    });
    halves.save(dir.join("cats/a.png")).unwrap();
    solid(&dir.join("dogs/b.jpg"), 16, 64, [10, 200, 30]);
    solid(&dir.join("dogs/c.PNG"), 8, 8, [200, 10, 30]);
    solid(&dir.join("emus/d.JPEG"), 3, 5, [90, 90, 250]);
    let (s, report) = folder::load(&dir, 8, 3, false).unwrap();
    assert_eq!(report.skipped, 0);
    assert_eq!((s.n, s.channels, s.height, s.width, s.num_classes), (4, 3, 8, 8, 3));
    assert_eq!(s.labels.as_ref().unwrap(), &vec![0, 1, 1, 2]);
    let rgb = |img: &[u8], y: usize, x: usize| [0, 1, 2].map(|c| img[c * 64 + y * 8 + x]);
    for y in 0..8 {
        assert_eq!(rgb(s.image(0), y, 0), [255, 0, 0], "row {y}");
        assert_eq!(rgb(s.image(0), y, 7), [0, 0, 255], "row {y}");
    }
    // A solid PNG keeps its colour exactly; JPEG within its loss; upscaling works too.
    assert!(s.image(2).chunks(64).zip([200, 10, 30]).all(|(p, v)| p.iter().all(|&x| x == v)));
    for (img, want) in [(s.image(1), [10, 200, 30]), (s.image(3), [90, 90, 250])] {
        for (plane, v) in img.chunks(64).zip(want) {
            assert!(plane.iter().all(|&x| x.abs_diff(v) <= 4), "{plane:?} vs {v}");
        }
    }
    let (g, _) = folder::load(&dir, 4, 1, false).unwrap();
    assert_eq!((g.channels, g.height, g.pixels.len()), (1, 4, 4 * 16));
    // Luma of (200, 10, 30): 0.2126 * 200 + 0.7152 * 10 + 0.0722 * 30 = 51.9.
    assert!(g.image(2).iter().all(|&p| p.abs_diff(52) <= 1), "{:?}", g.image(2));

    // An image outside the class folders makes the set unlabeled; deeper nesting is searched.
    std::fs::create_dir_all(dir.join("emus/young")).unwrap();
    solid(&dir.join("emus/young/e.png"), 8, 8, [1, 2, 3]);
    let (s, _) = folder::load(&dir, 8, 3, false).unwrap();
    assert_eq!((s.n, &s.labels, s.num_classes), (5, &None, 0));
    assert_eq!(&s.image(4)[..1], &[1]);
    let c = config_from_arg(dir.to_str().unwrap());
    assert_eq!(c.dataset, "folder");
    let (d, _) = load(&DataConfig { image_size: Some(16), ..c }).unwrap();
    assert_eq!(d.sample_shape(), vec![3, 16, 16]);
}

#[test]
fn a_corrupt_image_is_named_or_skipped_and_counted() {
    let dir = temp_dir("folder-bad");
    for sub in ["a", "b"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    solid(&dir.join("a/1.png"), 8, 8, [1, 1, 1]);
    solid(&dir.join("b/3.png"), 8, 8, [3, 3, 3]);
    let mut r = SplitMix64::new(1);
    let junk: Vec<u8> = (0..500).map(|_| r.next_u64() as u8).collect();
    std::fs::File::create(dir.join("a/2.png")).unwrap().write_all(&junk).unwrap();
    let e = folder::load(&dir, 8, 3, false).unwrap_err();
    let DataError::Corrupt { path, .. } = &e else { panic!("{e}") };
    assert!(path.ends_with("a/2.png"));
    assert!(e.to_string().contains("2.png") && e.to_string().contains("cannot decode"), "{e}");
    let (s, report) = folder::load(&dir, 8, 3, true).unwrap();
    assert_eq!((s.n, report.skipped), (2, 1));
    assert!(report.skipped_examples[0].ends_with("a/2.png"));
    assert_eq!((s.image(0)[0], s.image(1)[0]), (1, 3), "kept images close up in order");
    assert_eq!(s.labels, Some(vec![0, 1]));
    let c = DataConfig { skip_bad_images: true, ..config_from_arg(dir.to_str().unwrap()) };
    assert_eq!(load(&c).unwrap().1.skipped, 1);
}

#[test]
fn empty_or_missing_folders_and_bad_configs_are_named() {
    let dir = temp_dir("empty");
    std::fs::write(dir.join("notes.txt"), "no images").unwrap();
    let e = folder::load(&dir, 8, 3, false).unwrap_err();
    assert!(matches!(e, DataError::Empty { .. }) && e.to_string().contains("no .png"), "{e}");
    assert!(e.to_string().contains(dir.to_str().unwrap()), "{e}");
    // A folder whose only image is unreadable is empty once it is skipped.
    std::fs::write(dir.join("x.jpg"), "not a jpeg").unwrap();
    let e = folder::load(&dir, 8, 3, true).unwrap_err();
    assert!(matches!(e, DataError::Empty { .. }), "{e}");
    let e = folder::load(&dir, 8, 2, false).unwrap_err();
    assert!(e.to_string().starts_with("data.channels") && e.to_string().contains("got 2"), "{e}");
    let e = load(&config_from_arg("/no/such/place")).unwrap_err();
    assert!(matches!(e, DataError::NotFound { .. }) && e.to_string().contains("/no/such/place"));
    let e = load(&DataConfig { dataset: "imagenet".into(), ..Default::default() }).unwrap_err();
    assert!(e.to_string().contains("data.dataset") && e.to_string().contains("imagenet"), "{e}");
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

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

#[test]
fn mnist_idx_plain_and_gzipped() {
    let dir = temp_dir("mnist");
    let pixels: Vec<u8> = (0..3 * 28 * 28).map(|i| (i % 251) as u8).collect();
    std::fs::write(dir.join("train-images-idx3-ubyte"), idx(2051, &[3, 28, 28], &pixels)).unwrap();
    std::fs::write(dir.join("train-labels-idx1-ubyte.gz"), gzip(&idx(2049, &[3], &[7, 0, 9])))
        .unwrap();
    let s = mnist::load(&dir, "train", None).unwrap();
    assert_eq!((s.n, s.channels, s.height, s.width, s.num_classes), (3, 1, 28, 28, 10));
    assert_eq!((s.labels.clone().unwrap(), &s.pixels), (vec![7, 0, 9], &pixels));
    let p = mnist::load(&dir, "train", Some(32)).unwrap();
    assert_eq!((p.height, p.width, p.image(0)[0], p.image(0)[2 * 32 + 2]), (32, 32, 0, pixels[0]));
    assert_eq!(p.image(2)[(2 + 27) * 32 + 2 + 27], pixels[3 * 784 - 1]);
    assert_eq!(p.image(2)[31 * 32 + 31], 0);
    assert!(mnist::load(&dir, "train", Some(31)).unwrap_err().to_string().contains("got 31"));
    let c = config_from_arg(dir.to_str().unwrap());
    assert_eq!(c.dataset, "mnist");
    assert!(!c.random_flip_default(), "a mirrored digit is another glyph");

    // The test split, gzipped under the plain names (recognised by the gzip magic).
    let t: Vec<u8> = (0..2 * 784).map(|i| (i % 7) as u8).collect();
    std::fs::write(dir.join("t10k-images-idx3-ubyte"), gzip(&idx(2051, &[2, 28, 28], &t))).unwrap();
    std::fs::write(dir.join("t10k-labels-idx1-ubyte"), gzip(&idx(2049, &[2], &[1, 2]))).unwrap();
    let (d, _) = load(&DataConfig { split: "test".into(), ..c }).unwrap();
    let Dataset::Images(s) = d else { panic!("mnist is images") };
    assert_eq!((s.n, s.pixels, s.labels), (2, t, Some(vec![1, 2])));
}

#[test]
fn mnist_count_mismatch_truncation_and_bad_magic_are_named() {
    let dir = temp_dir("mnist-bad");
    let pixels = vec![5u8; 3 * 28 * 28];
    let images = dir.join("train-images-idx3-ubyte");
    let labels = dir.join("train-labels-idx1-ubyte");
    std::fs::write(&images, idx(2051, &[3, 28, 28], &pixels)).unwrap();
    std::fs::write(&labels, idx(2049, &[4], &[1, 2, 3, 4])).unwrap();
    let e = mnist::load(&dir, "train", None).unwrap_err();
    let DataError::Mismatch { images: i, num_images, labels: l, num_labels } = &e else {
        panic!("{e}")
    };
    assert_eq!((i, *num_images, l, *num_labels), (&images, 3, &labels, 4));
    let msg = e.to_string();
    assert!(msg.contains("3 images") && msg.contains("4 labels"), "{msg}");
    assert!(msg.contains("train-images-idx3-ubyte") && msg.contains("train-labels-idx1-ubyte"));

    std::fs::write(&labels, idx(2049, &[3], &[1, 2, 3])).unwrap();
    std::fs::write(&images, idx(2051, &[3, 28, 28], &pixels[..100])).unwrap();
    let e = mnist::load(&dir, "train", None).unwrap_err();
    assert!(matches!(e, DataError::TooShort { size: 116, needed: 2368, .. }), "{e}");
    assert!(e.to_string().contains("train-images-idx3-ubyte"), "{e}");

    // Images and labels swapped.
    std::fs::write(&images, idx(2049, &[3], &[1, 2, 3])).unwrap();
    let e = mnist::load(&dir, "train", None).unwrap_err();
    assert!(matches!(e, DataError::Corrupt { .. }), "{e}");
    assert!(e.to_string().contains("train-images-idx3-ubyte: IDX magic 2049"), "{e}");

    std::fs::write(&images, idx(2051, &[3, 28, 28], &pixels)).unwrap();
    std::fs::write(&labels, idx(2049, &[3], &[1, 12, 3])).unwrap();
    assert!(mnist::load(&dir, "train", None).unwrap_err().to_string().contains("label 12"));
    std::fs::remove_file(&labels).unwrap();
    let e = mnist::load(&dir, "train", None).unwrap_err();
    assert!(matches!(e, DataError::NotFound { .. }) && e.to_string().contains("labels-idx1"));
    let e = mnist::load(&dir, "test", None).unwrap_err();
    assert!(e.to_string().contains("t10k-images-idx3-ubyte"), "{e}");
}

#[test]
fn toy_sets_load_by_name_with_their_size_and_seed() {
    for name in ["swissroll", "gaussians8", "moons"] {
        let c = DataConfig { num_points: 500, seed: 3, ..config_from_arg(name) };
        let (d, _) = load(&c).unwrap();
        assert_eq!((d.len(), d.sample_shape(), d.num_classes()), (500, vec![2], 0), "{name}");
        assert_eq!(d, load(&c).unwrap().0);
        assert_ne!(d, load(&DataConfig { seed: 4, ..c.clone() }).unwrap().0);
        assert!(!c.random_flip_default());
    }
}
