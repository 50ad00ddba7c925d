//! The loader is reproducible, resumes exactly, shards disjointly, and flips half the images.

use ddpm_data::{Dataset, ImageSet, Loader, LoaderOptions, LoaderState};
use proptest::prelude::*;
use std::collections::HashSet;
use std::sync::Arc;

/// N images of 1x1x4 whose first pixel encodes the index and which are not mirror-symmetric.
fn indexed(n: usize) -> Arc<Dataset> {
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

fn opts(rank: usize, world: usize, flip: bool) -> LoaderOptions {
    LoaderOptions {
        batch_size: 8,
        seed: 5,
        rank,
        world_size: world,
        random_flip: flip,
        drop_last: true,
        prefetch: 2,
    }
}

fn take(l: &mut Loader, k: usize) -> Vec<ddpm_data::Batch> {
    (0..k).map(|_| l.next_batch()).collect()
}

#[test]
fn same_seed_same_batches_and_exact_resume() {
    let d = indexed(100);
    let a =
        take(&mut Loader::new(d.clone(), opts(0, 1, true), LoaderState::default()).unwrap(), 30);
    let b =
        take(&mut Loader::new(d.clone(), opts(0, 1, true), LoaderState::default()).unwrap(), 30);
    assert_eq!(a, b);
    // 100 / 8 = 12 batches per epoch: batch 12 starts epoch 1.
    assert_eq!(a[11].state_after, LoaderState { epoch: 1, position: 0 });
    for k in [0, 5, 11, 17] {
        let resumed =
            take(&mut Loader::new(d.clone(), opts(0, 1, true), a[k].state_after).unwrap(), 8);
        assert_eq!(resumed[..], a[k + 1..k + 9], "resume after batch {k}");
    }
}

#[test]
fn ranks_are_disjoint_and_cover_the_epoch() {
    let d = indexed(64);
    let mut seen = Vec::new();
    for rank in 0..2 {
        let batches = take(
            &mut Loader::new(d.clone(), opts(rank, 2, false), LoaderState::default()).unwrap(),
            4,
        );
        let ids: HashSet<i64> = batches.iter().flat_map(|b| b.labels.clone().unwrap()).collect();
        assert_eq!(ids.len(), 32);
        seen.push(ids);
    }
    assert!(seen[0].is_disjoint(&seen[1]));
    assert_eq!(seen[0].len() + seen[1].len(), 64);
}

#[test]
fn flips_mirror_about_half_the_images() {
    let d = indexed(200);
    let batches = take(&mut Loader::new(d, opts(0, 1, true), LoaderState::default()).unwrap(), 25);
    let mut flipped = 0;
    for b in &batches {
        for img in b.x.chunks(4) {
            // Unflipped rows end with the 255 pixel; mirrored ones start with it.
            if img[0] == 1.0 {
                flipped += 1;
                assert!(img[3] < 1.0, "the index pixel moved to the end");
            } else {
                assert_eq!(img[3], 1.0);
            }
        }
    }
    assert!((70..=130).contains(&flipped), "{flipped} of 200");
}

#[test]
fn batches_too_big_for_the_data_are_refused() {
    let e = Loader::new(
        indexed(10),
        LoaderOptions { batch_size: 11, ..opts(0, 1, false) },
        LoaderState::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("batch size 11"), "{e}");
}

proptest! {
    #[test]
    fn scaling_maps_zero_to_minus_one_and_max_to_one(max in 1u8..=255, a in 0u8..=255, b in 0u8..=255) {
        let (a, b) = (a.min(max), b.min(max));
        let set = ImageSet { n: 1, channels: 1, height: 1, width: 4, pixels: vec![0, max, a, b], max_value: max, labels: None, num_classes: 0, name: "p".into() };
        let x = set.image_f32(0);
        prop_assert_eq!(x[0], -1.0);
        prop_assert!((x[1] - 1.0).abs() < 1e-6);
        if a < b { prop_assert!(x[2] < x[3]); }
    }
}
