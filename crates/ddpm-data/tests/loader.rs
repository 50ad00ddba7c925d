//! The loader is reproducible, resumes exactly, shards disjointly, and flips half the images.

use ddpm_data::loader::{epoch_permutation, flips};
use ddpm_data::{Batch, Dataset, ImageSet, Loader, LoaderOptions, LoaderState};
use proptest::prelude::*;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// N images of 1x1x4: pixel 0 is the index, pixel 3 is 255, so no image is its own mirror.
fn indexed(n: usize) -> Arc<Dataset> {
    assert!(n <= 255);
    let pixels = (0..n).flat_map(|i| [i as u8, 0, 0, 255]).collect();
    Arc::new(Dataset::Images(ImageSet {
        n,
        channels: 1,
        height: 1,
        width: 4,
        pixels,
        max_value: 255,
        labels: Some((0..n as u32).collect()),
        num_classes: n,
        name: "indexed".into(),
    }))
}

/// The index encoded in an unflipped or flipped image of [`indexed`], and whether it is flipped.
fn decode(img: &[f32]) -> (i64, bool) {
    let byte = |v: f32| ((v + 1.0) * 127.5).round() as i64;
    if img[3] == 1.0 { (byte(img[0]), false) } else { (byte(img[3]), true) }
}

fn opts(batch_size: usize, rank: usize, world: usize, flip: bool) -> LoaderOptions {
    LoaderOptions {
        batch_size,
        seed: 5,
        rank,
        world_size: world,
        random_flip: flip,
        drop_last: true,
        prefetch: 2,
    }
}

fn take(d: &Arc<Dataset>, o: LoaderOptions, from: LoaderState, k: usize) -> Vec<Batch> {
    let mut l = Loader::new(d.clone(), o, from).unwrap();
    (0..k).map(|_| l.next_batch()).collect()
}

#[test]
fn same_seed_same_batches_other_seed_other_batches() {
    let d = indexed(100);
    let a = take(&d, opts(8, 0, 1, true), LoaderState::default(), 30);
    assert_eq!(a, take(&d, opts(8, 0, 1, true), LoaderState::default(), 30));
    let other = take(&d, LoaderOptions { seed: 6, ..opts(8, 0, 1, true) }, Default::default(), 30);
    assert_ne!(a, other);
    assert!(a.iter().all(|b| b.shape == [8, 1, 1, 4] && b.x.len() == 32));
    // Labels travel with their images.
    for b in &a {
        let ids: Vec<i64> = b.x.chunks(4).map(|img| decode(img).0).collect();
        assert_eq!(&ids, b.labels.as_ref().unwrap());
    }
}

#[test]
fn resuming_from_state_after_continues_the_same_stream() {
    let d = indexed(100);
    let a = take(&d, opts(8, 0, 1, true), LoaderState::default(), 40);
    // 100 / 8 = 12 batches per epoch: batch 12 starts epoch 1.
    assert_eq!(a[10].state_after, LoaderState { epoch: 0, position: 11 });
    assert_eq!(a[11].state_after, LoaderState { epoch: 1, position: 0 });
    for k in [0, 5, 10, 11, 17, 23] {
        let resumed = take(&d, opts(8, 0, 1, true), a[k].state_after, 10);
        assert_eq!(resumed[..], a[k + 1..k + 11], "resume after batch {k}");
    }
}

#[test]
fn epochs_visit_every_index_once_then_reshuffle() {
    let d = indexed(96);
    let a = take(&d, opts(8, 0, 1, false), LoaderState::default(), 24);
    let epoch = |bs: &[Batch]| -> Vec<i64> {
        bs.iter().flat_map(|b| b.x.chunks(4).map(|img| decode(img).0)).collect()
    };
    let (e0, e1) = (epoch(&a[..12]), epoch(&a[12..]));
    let mut sorted = e0.clone();
    sorted.sort();
    assert_eq!(sorted, (0..96).collect::<Vec<_>>());
    assert_ne!(e0, e1);
    let want: Vec<i64> = epoch_permutation(96, 5, 1).iter().map(|&i| i as i64).collect();
    assert_eq!(e1, want);
}

#[test]
fn ranks_are_disjoint_and_cover_the_epoch() {
    // 67 images over 2 ranks: 33 each (one left over); batches of 11 use all 33.
    for (world, batch) in [(2, 11), (3, 5)] {
        let (n, per_rank) = (67usize, 67 / world);
        let steps = per_rank / batch;
        let d = indexed(n);
        let perm = epoch_permutation(n, 5, 0);
        let mut union = HashSet::new();
        for rank in 0..world {
            let bs = take(&d, opts(batch, rank, world, false), LoaderState::default(), steps + 1);
            assert_eq!(bs[steps - 1].state_after, LoaderState { epoch: 1, position: 0 });
            let ids: Vec<i64> =
                bs[..steps].iter().flat_map(|b| b.x.chunks(4).map(|i| decode(i).0)).collect();
            // Rank r takes permutation positions r, r + W, r + 2W, ...
            let want: Vec<i64> =
                (0..steps * batch).map(|j| perm[rank + world * j] as i64).collect();
            assert_eq!(ids, want, "rank {rank} of {world}");
            let before = union.len();
            union.extend(ids);
            assert_eq!(union.len(), before + steps * batch, "rank {rank} overlaps another");
        }
        if batch * world * steps == world * per_rank {
            assert_eq!(union.len(), world * (n / world));
        }
    }
}

#[test]
fn flips_mirror_about_half_the_images_whatever_the_sharding() {
    let d = indexed(200);
    let Dataset::Images(set) = &*d else { unreachable!() };
    let mut by_index = HashMap::new();
    let mut flipped = 0;
    for b in take(&d, opts(8, 0, 1, true), LoaderState::default(), 25) {
        for img in b.x.chunks(4) {
            let (i, f) = decode(img);
            let original = set.image_f32(i as usize);
            let mirrored: Vec<f32> = original.iter().rev().copied().collect();
            assert_eq!(img, if f { &mirrored[..] } else { &original[..] });
            flipped += f as usize;
            by_index.insert(i, f);
        }
    }
    assert_eq!(by_index.len(), 200);
    assert!((70..=130).contains(&flipped), "{flipped} of 200 flipped");
    // Two ranks with another batch size flip the same images.
    for rank in 0..2 {
        for b in take(&d, opts(4, rank, 2, true), LoaderState::default(), 25) {
            for img in b.x.chunks(4) {
                let (i, f) = decode(img);
                assert_eq!(by_index[&i], f, "image {i} on rank {rank}");
            }
        }
    }
    // The flip of position k is the documented coin.
    let perm = epoch_permutation(200, 5, 0);
    for (k, &i) in perm.iter().enumerate() {
        assert_eq!(by_index[&(i as i64)], flips(5, 0, k as u64));
    }
    let plain = take(&d, opts(8, 0, 1, false), LoaderState::default(), 25);
    assert!(plain.iter().all(|b| b.x.chunks(4).all(|img| !decode(img).1)));
}

#[test]
fn dropping_a_loader_stops_its_thread() {
    let d = indexed(50);
    // A producer blocked on a full queue, and one never read from.
    let mut l = Loader::new(d.clone(), opts(5, 0, 1, false), LoaderState::default()).unwrap();
    l.next_batch();
    std::thread::sleep(std::time::Duration::from_millis(20));
    drop(l);
    drop(Loader::new(d, opts(5, 0, 1, false), LoaderState::default()).unwrap());
}

#[test]
fn loader_state_round_trips_through_serde() {
    let s = LoaderState { epoch: 3, position: 17 };
    let text = toml::to_string(&s).unwrap();
    assert_eq!(toml::from_str::<LoaderState>(&text).unwrap(), s);
}

#[test]
fn batches_too_big_for_the_data_are_refused() {
    let e = Loader::new(indexed(10), opts(11, 0, 1, false), LoaderState::default()).unwrap_err();
    assert!(e.to_string().contains("batch size 11"), "{e}");
    let e = Loader::new(indexed(10), opts(6, 1, 2, false), LoaderState::default()).unwrap_err();
    assert!(e.to_string().contains("5 samples per rank"), "{e}");
}

proptest! {
    #[test]
    fn scaling_maps_zero_to_minus_one_and_max_to_one(max in 1u8..=255, a in 0u8..=255, b in 0u8..=255) {
        let (a, b) = (a.min(max), b.min(max));
        let set = ImageSet { n: 1, channels: 1, height: 1, width: 4, pixels: vec![0, max, a, b], max_value: max, labels: None, num_classes: 0, name: "p".into() };
        let x = set.image_f32(0);
        prop_assert_eq!(x[0], -1.0);
        prop_assert!((x[1] - 1.0).abs() < 1e-6, "{}", x[1]);
        prop_assert!(x.iter().all(|v| (-1.0..=1.0 + 1e-6).contains(v)));
        if a < b { prop_assert!(x[2] < x[3]); }
        if a == b { prop_assert_eq!(x[2], x[3]); }
        // The loader applies the same scaling.
        let d = Arc::new(Dataset::Images(set.clone()));
        let batch = Loader::new(d, LoaderOptions { batch_size: 1, ..Default::default() }, LoaderState::default()).unwrap().next_batch();
        prop_assert_eq!(batch.x, x);
    }
}
