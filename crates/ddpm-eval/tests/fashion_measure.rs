//! The Fashion-MNIST measure on the real files (Debian's `dataset-fashion-mnist`): the feature
//! network reaches 90 % test accuracy and is cached (the one test here that may train it, about
//! a minute on 2 threads, once per `$DDPM_HOME`); the test images measured against themselves
//! score zero, noisier copies score more, in order, and the floor (training images) lies between.

use ddpm_eval::fashion::{self, fashion_distance, fd_and_kid};
use ddpm_eval::fashion_classifier::{FashionClassifier, cache_key, cache_paths};
use ddpm_eval::images;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

#[test]
fn the_feature_network_reaches_90_percent_is_cached_and_the_measure_has_a_floor() {
    let train = ddpm_data::fashion::load(None, "train", None).unwrap();
    let test = ddpm_data::fashion::load(None, "test", None).unwrap();
    let started = Instant::now();
    let clf = FashionClassifier::trained(&train, &test, Device::Cpu).unwrap();
    let first = started.elapsed().as_secs_f64();
    println!(
        "classifier: test accuracy {:.4}, trained in {:.1} s (this call {first:.1} s)",
        clf.record.test_accuracy, clf.record.train_seconds
    );
    assert!(clf.record.test_accuracy >= 0.90, "{:?}", clf.record);
    let (weights, record) = cache_paths(&cache_key(&train, &test));
    assert!(weights.is_file() && record.is_file(), "{}", weights.display());
    let started = Instant::now();
    let again = FashionClassifier::trained(&train, &test, Device::Cpu).unwrap();
    assert!(started.elapsed().as_secs_f64() < 20.0, "the second call loads the cache");
    assert_eq!(again.record, clf.record);
    assert_eq!(again.accuracy(&test), clf.record.test_accuracy, "the cached weights are the same");

    // The whole protocol: the test split against itself is zero; the padded form reads the same.
    let x = images::from_dataset(&test);
    let d = fashion_distance(&x, None, Device::Cpu).unwrap();
    println!("{}", d.summary());
    assert_eq!((d.n, d.kid_subsets, d.kid_subset_size), (10_000, 100, 1000));
    // f32 features: zero to a few 1e-6 in the scaled space.
    assert!(d.fd.abs() < 1e-4, "{d:?}");
    // KID is unbiased: training images against test images are zero within the subsets'
    // standard error (std / sqrt(100)). The test set against itself is slightly negative
    // (independently drawn subsets share about 100 of their 1,000 images; see kid.rs).
    assert!(d.kid_mean <= 0.0 && d.kid_mean > -0.01, "{d:?}");
    assert!(d.floor_kid.abs() < 4.0 * d.floor_kid_std / 10.0 + 1e-4, "{d:?}");
    assert!(d.floor_kid_std < 0.05, "the kernel's scale: {d:?}");
    // FD is biased upwards at finite n; training images are another draw: the floor is above 0.
    assert!(d.floor_fd > 1e-3, "{d:?}");
    let padded = x.constant_pad_nd([2, 2, 2, 2]);
    assert_eq!(fashion_distance(&padded, None, Device::Cpu).unwrap(), d);
    // A measurement's cache builds the reference side once and gives the same numbers.
    let cache = fashion::FashionCache::default();
    let built = cache.get(None, Device::Cpu).unwrap();
    assert!(std::rc::Rc::ptr_eq(&built, &cache.get(None, Device::Cpu).unwrap()), "built once");
    assert_eq!(built.distance(&padded).unwrap(), d);
    assert_eq!(built.scale, fashion::feature_scale(&clf.features_of(&x)));
    // Class accuracy: the test images asked for their own labels score the network's test
    // accuracy; asked for the next class, about none of them.
    let labels: Vec<i64> = test.labels.as_ref().unwrap().iter().map(|&l| l as i64).collect();
    let acc = built.class_accuracy(&padded, &labels).unwrap();
    assert!((acc - clf.record.test_accuracy).abs() < 1e-9, "{acc} vs {:?}", clf.record);
    let next: Vec<i64> = labels.iter().map(|l| (l + 1) % 10).collect();
    assert!(built.class_accuracy(&x, &next).unwrap() < 0.1);
    let e = built.class_accuracy(&x, &labels[..10]).unwrap_err().to_string();
    assert!(e.contains("10000 samples for 10 classes"), "{e}");
    // Read batch by batch (a batch that does not divide 10,000: a short last one), the same.
    let set = ddpm_eval::samples::Samples::Memory(padded.shallow_clone());
    let streamed = built.class_accuracy_of(&set, &labels, 333).unwrap();
    assert!((streamed - acc).abs() < 1e-12, "{streamed} vs {acc}");
    let e = built.class_accuracy_of(&set, &labels[..10], 333).unwrap_err().to_string();
    assert!(e.contains("10000 samples for 10 classes"), "{e}");

    // Noisier copies of 2,000 test images are farther from the test split, in order.
    let reference = clf.features_of(&x);
    let scale = fashion::feature_scale(&reference);
    let reference = reference / scale;
    tch::manual_seed(0);
    let noise = Tensor::randn([2000, 1, 28, 28], (Kind::Float, Device::Cpu));
    let base = x.narrow(0, 0, 2000);
    let mut last = (0.0, f64::NEG_INFINITY);
    for sigma in [0.0, 0.05, 0.1, 0.2, 0.4] {
        let noisy = (&base + &noise * sigma).clamp(0.0, 1.0);
        let (fd, kid) = fd_and_kid(&(clf.features_of(&noisy) / scale), &reference).unwrap();
        println!("noise {sigma}: FD {fd:.3} KID {:.5}", kid.mean);
        assert!(fd > last.0 && kid.mean > last.1, "noise {sigma}: FD {fd}, KID {kid:?}");
        last = (fd, kid.mean);
    }
    assert!(last.0 > 10.0 * d.floor_fd, "heavy noise {} vs floor {}", last.0, d.floor_fd);
}
