//! The evaluator against pytorch-fid (`scripts/ref_fid.py`, `scripts/convert_inception.py`):
//! features from the same (random) weights and images, the Frechet distance, statistics files,
//! the Inception Score; FID's sanity (a set against itself, and with noise added); bad input.

use ddpm_eval::fid::Stats;
use ddpm_eval::inception_score::inception_score;
use ddpm_eval::{FidInception, frechet_distance};
use ddpm_io::npy;
use ddpm_testkit::{run_json, run_script, temp_dir};
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// Random pytorch-fid weights saved like the real file, converted by our converter.
fn weights(dir: &Path) -> PathBuf {
    let pth = dir.join("w.pth");
    let st = dir.join("w.safetensors");
    run_script("ref_fid.py", &["weights", pth.to_str().unwrap(), "--seed", "1"]);
    let out = run_script("convert_inception.py", &[pth.to_str().unwrap(), st.to_str().unwrap()]);
    assert!(out.contains("472 tensors"), "{out}");
    st
}

fn images(n: i64, size: i64) -> Tensor {
    let mut rng = ddpm_core::rng::SplitMix64::new(5);
    let v: Vec<f32> = (0..n * 3 * size * size).map(|_| rng.next_f64() as f32).collect();
    Tensor::from_slice(&v).view([n, 3, size, size])
}

fn read(path: &Path, key: &str) -> Tensor {
    let (shape, v) = npy::read_array(path, key).unwrap();
    let shape: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
    Tensor::from_slice(&v).view(shape.as_slice())
}

/// Every image's pool3, logits and (when asked) spatial features, `batch` images per call.
struct Features {
    pool3: Tensor,
    logits: Tensor,
    spatial: Option<Tensor>,
}

fn features(net: &FidInception, x: &Tensor, batch: i64, spatial: bool) -> Features {
    let n = x.size()[0];
    let outs: Vec<_> = (0..n)
        .step_by(batch as usize)
        .map(|f| net.forward_with_spatial(&x.narrow(0, f, batch.min(n - f)), spatial))
        .collect();
    let cat = |v: Vec<Tensor>| Tensor::cat(&v, 0);
    Features {
        pool3: cat(outs.iter().map(|o| o.pool3.shallow_clone()).collect()),
        logits: cat(outs.iter().map(|o| o.logits.shallow_clone()).collect()),
        spatial: spatial.then(|| {
            cat(outs.iter().map(|o| o.spatial.as_ref().unwrap().shallow_clone()).collect())
        }),
    }
}

fn rel(a: &Tensor, b: &Tensor) -> f64 {
    ((a - b).abs().max() / b.abs().max()).double_value(&[])
}

#[test]
#[ignore = "needs the Python venv: run `cargo xtask test`"]
fn features_and_logits_match_pytorch_fid_at_batch_sizes_1_and_7() {
    let dir = temp_dir("inception");
    let converted = weights(&dir);
    let net = FidInception::load(&converted, Device::Cpu).unwrap();
    // pytorch-fid reads the original (pickled) file.
    let w = dir.join("w.pth");
    let x = images(7, 32);
    let img_path = dir.join("x.npy");
    npy::write_npy(&img_path, &[7, 3, 32, 32], &Vec::<f32>::try_from(x.flatten(0, -1)).unwrap())
        .unwrap();
    for batch in [1, 7] {
        let out = dir.join(format!("f{batch}.npz"));
        run_script(
            "ref_fid.py",
            &[
                "features",
                w.to_str().unwrap(),
                img_path.to_str().unwrap(),
                out.to_str().unwrap(),
                "--batch",
                &batch.to_string(),
            ],
        );
        let f = features(&net, &x, batch, false);
        let (theirs_pool, theirs_logits) = (read(&out, "pool3"), read(&out, "logits"));
        let d = rel(&f.pool3, &theirs_pool);
        assert!(d <= 1e-4, "batch {batch}: pool3 relative difference {d:e}");
        assert!(rel(&f.logits, &theirs_logits) <= 1e-4, "batch {batch}: logits");
        assert!(theirs_pool.std(true).double_value(&[]) > 1e-3, "features are not degenerate");
    }
    // A 299x299 input is not resized (the identity case of the bilinear resize).
    let big = images(1, 299);
    let p = dir.join("big.npy");
    npy::write_npy(&p, &[1, 3, 299, 299], &Vec::<f32>::try_from(big.flatten(0, -1)).unwrap())
        .unwrap();
    let out = dir.join("big.npz");
    run_script(
        "ref_fid.py",
        &[
            "features",
            w.to_str().unwrap(),
            p.to_str().unwrap(),
            out.to_str().unwrap(),
            "--batch",
            "1",
        ],
    );
    let f = net.forward(&big);
    assert!(rel(&f.pool3, &read(&out, "pool3")) <= 1e-4);
}

/// sFID's features: the first 7 channels of Mixed_6d.branch1x1 after its BN and ReLU (TF's
/// `mixed_6/conv:0`, see `ddpm_eval::inception`), NHWC-flattened, against a forward hook on that
/// module of pytorch-fid's network with the same random weights.
#[test]
#[ignore = "needs the Python venv: run `cargo xtask test`"]
fn spatial_features_match_a_hook_on_pytorch_fids_mixed_6d_branch1x1() {
    let dir = temp_dir("spatial");
    let converted = weights(&dir);
    let net = FidInception::load(&converted, Device::Cpu).unwrap();
    let w = dir.join("w.pth");
    let x = images(5, 40);
    let img_path = dir.join("x.npy");
    npy::write_npy(&img_path, &[5, 3, 40, 40], &Vec::<f32>::try_from(x.flatten(0, -1)).unwrap())
        .unwrap();
    let out = dir.join("s.npz");
    run_script(
        "ref_fid.py",
        &[
            "features",
            w.to_str().unwrap(),
            img_path.to_str().unwrap(),
            out.to_str().unwrap(),
            "--batch",
            "2",
            "--spatial",
        ],
    );
    let f = features(&net, &x, 2, true);
    let ours = f.spatial.expect("spatial features were asked for");
    let theirs = read(&out, "spatial");
    assert_eq!(ours.size(), [5, ddpm_eval::inception::SPATIAL_DIM]);
    assert_eq!(theirs.size(), [5, 2023]);
    let d = rel(&ours, &theirs);
    eprintln!("spatial features: max |ours - pytorch-fid| / max |pytorch-fid| = {d:e}");
    assert!(d <= 1e-4, "spatial relative difference {d:e}");
    // After the ReLU: non-negative, and not all zero.
    assert!(ours.min().double_value(&[]) >= 0.0);
    assert!(theirs.std(true).double_value(&[]) > 1e-3, "features are not degenerate");
    // Asking for them changes nothing else; not asking gives none.
    let plain = features(&net, &x, 2, false);
    assert!(plain.spatial.is_none());
    assert!(plain.pool3.equal(&f.pool3) && plain.logits.equal(&f.logits));
}

/// Feature sets shaped like Inception's (non-negative, correlated, 2048-d) with fewer samples
/// than dimensions (singular covariances) and more (full rank).
fn feature_set(n: i64, d: i64, seed: i64, shift: f64) -> Tensor {
    let _g = ddpm_nets::torch_rng_lock();
    tch::manual_seed(seed);
    let z = Tensor::randn([n, 64], (Kind::Double, Device::Cpu));
    let proj = Tensor::randn([64, d], (Kind::Double, Device::Cpu)) / 8.0;
    (z.matmul(&proj) + shift + Tensor::randn([n, d], (Kind::Double, Device::Cpu)) * 0.05).relu()
}

#[test]
#[ignore = "needs the Python venv: run `cargo xtask test`"]
fn frechet_distance_matches_pytorch_fid_including_singular_covariances() {
    let dir = temp_dir("frechet");
    for (n, d, label) in [
        (300, 2048, "singular, 2048-d"),
        (3000, 512, "full rank, 512-d"),
        (200, 512, "singular, 512-d"),
    ] {
        let (a, b) = (feature_set(n, d, 1, 0.0), feature_set(n, d, 2, 0.05));
        let (pa, pb) = (dir.join(format!("a{n}{d}.npz")), dir.join(format!("b{n}{d}.npz")));
        let (sa, sb) = (Stats::from_features(&a).unwrap(), Stats::from_features(&b).unwrap());
        sa.save(&pa).unwrap();
        sb.save(&pb).unwrap();
        let theirs =
            run_json("ref_fid.py", &["frechet", pa.to_str().unwrap(), pb.to_str().unwrap()]);
        let theirs = theirs["fid"].as_f64().unwrap();
        let ours = frechet_distance(&sa, &sb).unwrap();
        let r = ((ours - theirs) / theirs).abs();
        assert!(r <= 1e-6, "{label}: ours {ours} vs pytorch-fid {theirs} (relative {r:e})");
    }
}

#[test]
#[ignore = "needs the Python venv: run `cargo xtask test`"]
fn statistics_files_interoperate_with_pytorch_fid() {
    let dir = temp_dir("stats-npz");
    let f = feature_set(50, 16, 3, 0.0);
    let feats = dir.join("f.npy");
    npy::write_npy(
        &feats,
        &[50, 16],
        &Vec::<f32>::try_from(f.to_kind(Kind::Float).flatten(0, -1)).unwrap(),
    )
    .unwrap();
    let theirs_path = dir.join("theirs.npz");
    run_script("ref_fid.py", &["stats", feats.to_str().unwrap(), theirs_path.to_str().unwrap()]);
    let theirs = Stats::load(&theirs_path).unwrap();
    let ours = Stats::from_features(&f.to_kind(Kind::Float)).unwrap();
    assert!(rel(&ours.mu, &theirs.mu) < 1e-6 && rel(&ours.sigma, &theirs.sigma) < 1e-6);
    // Ours, read by pytorch-fid's code: the distance of a file to itself is 0.
    let ours_path = dir.join("ours.npz");
    ours.save(&ours_path).unwrap();
    let d = run_json(
        "ref_fid.py",
        &["frechet", ours_path.to_str().unwrap(), theirs_path.to_str().unwrap()],
    );
    assert!(d["fid"].as_f64().unwrap().abs() < 1e-6);
}

/// A statistics file with spatial statistics: pytorch-fid's own loader still reads `mu` and
/// `sigma` from it, and NumPy finds `mu_s`/`sigma_s` where guided-diffusion's evaluator looks.
#[test]
#[ignore = "needs the Python venv: run `cargo xtask test`"]
fn statistics_with_spatial_statistics_stay_readable_by_pytorch_fid() {
    let dir = temp_dir("stats-spatial");
    let (pool, spatial) = (feature_set(40, 16, 5, 0.0), feature_set(40, 6, 6, 0.1));
    let ours = Stats::from_features_with_spatial(&pool, &spatial).unwrap();
    let path = dir.join("ref.npz");
    ours.save(&path).unwrap();
    let theirs = run_json("ref_fid.py", &["load", path.to_str().unwrap()]);
    let flat = |t: &Tensor| Vec::<f64>::try_from(t.flatten(0, -1)).unwrap();
    let sp = ours.spatial.as_ref().unwrap();
    for (key, want) in
        [("mu", &ours.mu), ("sigma", &ours.sigma), ("mu_s", &sp.mu), ("sigma_s", &sp.sigma)]
    {
        assert_eq!(ddpm_testkit::f64s(&theirs[key]), flat(want), "{key}");
    }
    // Without spatial statistics there is no mu_s.
    Stats::from_features(&pool).unwrap().save(&path).unwrap();
    let theirs = run_json("ref_fid.py", &["load", path.to_str().unwrap()]);
    assert!(theirs["mu_s"].is_null() && theirs["sigma"].is_array());
    // The reference-features file is a float16 array NumPy reads as such.
    let fpath = dir.join("features.npz");
    ddpm_eval::feature_file::save_features(&fpath, &pool).unwrap();
    let theirs = run_json("ref_fid.py", &["load-features", fpath.to_str().unwrap()]);
    assert_eq!(theirs["dtype"], "float16");
    assert_eq!(theirs["shape"], serde_json::json!([40, 16]));
    let half = pool.to_kind(Kind::Half).to_kind(Kind::Double);
    assert_eq!(ddpm_testkit::f64s(&theirs["values"]), flat(&half));
    assert!(
        ddpm_eval::feature_file::load_features(&fpath).unwrap().to_kind(Kind::Double).equal(&half)
    );
}

#[test]
#[ignore = "needs the Python venv: run `cargo xtask test`"]
fn inception_score_matches_a_numpy_statement() {
    let dir = temp_dir("is");
    let _g = ddpm_nets::torch_rng_lock();
    tch::manual_seed(9);
    let logits = Tensor::randn([200, 1008], (Kind::Float, Device::Cpu)) * 3.0;
    drop(_g);
    let p = dir.join("l.npy");
    npy::write_npy(&p, &[200, 1008], &Vec::<f32>::try_from(logits.flatten(0, -1)).unwrap())
        .unwrap();
    let theirs = run_json("ref_fid.py", &["is", p.to_str().unwrap()]);
    let (m, s) = inception_score(&logits, 10);
    assert!((m - theirs["mean"].as_f64().unwrap()).abs() < 1e-9, "{m} vs {theirs}");
    assert!((s - theirs["std"].as_f64().unwrap()).abs() < 1e-9);
}

#[test]
#[ignore = "needs the Python venv: run `cargo xtask test`"]
fn fid_of_a_set_with_itself_is_zero_and_grows_with_noise() {
    let dir = temp_dir("fid-noise");
    let net = FidInception::load(&weights(&dir), Device::Cpu).unwrap();
    let x = images(12, 16);
    let feats = |t: &Tensor| features(&net, t, 12, false).pool3;
    let base = Stats::from_features(&feats(&x)).unwrap();
    let self_fid = frechet_distance(&base, &Stats::from_features(&feats(&x)).unwrap()).unwrap();
    assert!(self_fid.abs() < 1e-6, "{self_fid}");
    let mut last = 0.0;
    for sigma in [0.05, 0.15, 0.4] {
        let _g = ddpm_nets::torch_rng_lock();
        tch::manual_seed(3);
        let noisy = (&x + Tensor::randn_like(&x) * sigma).clamp(0.0, 1.0);
        drop(_g);
        let fid = frechet_distance(&base, &Stats::from_features(&feats(&noisy)).unwrap()).unwrap();
        assert!(fid > last, "sigma {sigma}: FID {fid} not above {last}");
        last = fid;
    }
}

#[test]
fn missing_weights_say_which_file_and_how_to_convert() {
    let e = FidInception::load(Path::new("/no/such/w.safetensors"), Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("/no/such/w.safetensors")
            && e.contains("pt_inception-2015-12-05-6726825d.pth")
            && e.contains("convert-inception"),
        "{e}"
    );
}

#[test]
fn statistics_of_the_wrong_shape_are_refused() {
    let dir = temp_dir("bad-stats");
    let s = Stats {
        mu: Tensor::zeros([3], (Kind::Double, Device::Cpu)),
        sigma: Tensor::zeros([2, 2], (Kind::Double, Device::Cpu)),
        spatial: None,
    };
    let p = dir.join("bad.npz");
    s.save(&p).unwrap();
    let e = Stats::load(&p).unwrap_err().to_string();
    assert!(e.contains("bad.npz") && e.contains("[3]") && e.contains("[2, 2]"), "{e}");
    let ok = Stats {
        mu: Tensor::zeros([3], (Kind::Double, Device::Cpu)),
        sigma: Tensor::eye(3, (Kind::Double, Device::Cpu)),
        spatial: None,
    };
    let other = Stats {
        mu: Tensor::zeros([4], (Kind::Double, Device::Cpu)),
        sigma: Tensor::eye(4, (Kind::Double, Device::Cpu)),
        spatial: None,
    };
    assert!(frechet_distance(&ok, &other).unwrap_err().to_string().contains("3 and 4"));
}

#[test]
fn an_image_folder_of_mixed_sizes_is_refused_by_name() {
    let dir = temp_dir("mixed");
    image::RgbImage::new(8, 8).save(dir.join("a.png")).unwrap();
    image::RgbImage::new(16, 8).save(dir.join("b.png")).unwrap();
    let e = ddpm_eval::images::from_folder(&dir).unwrap_err().to_string();
    assert!(e.contains("b.png") && e.contains("16x8") && e.contains("8x8"), "{e}");
}
