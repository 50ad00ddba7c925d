//! Two ranks on this machine (Gloo over loopback, one intra-op thread each), launched as
//! torchrun would: each test re-runs this test executable twice, filtered to itself, with
//! RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR and MASTER_PORT set; in the
//! children the same test function plays its rank's part (rank 0 serves the TCPStore, as
//! without torchrun's agent). The parent bounds each child in time and checks that both ran
//! and how they exited.

use ddpm_dist::{Dist, DistEnv, DistOptions, FeatureMoments, GradReducer};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tch::{Device, Kind, Tensor};

const CHILD: &str = "DDPM_DIST_TEST_CHILD";
/// What a child prints when its part ran to the end (a filter that matched no test would
/// also exit 0).
const DONE: &str = "DDPM_DIST_CHILD_DONE";

/// In a child: this rank's group, one intra-op thread. `None` in the parent.
fn child_dist(timeout: Duration, failure_grace: Duration) -> Option<Dist> {
    std::env::var_os(CHILD)?;
    tch::set_num_threads(1);
    let env = DistEnv::from_env().expect("torchrun-style environment");
    let dist = Dist::init(&env, Device::Cpu, DistOptions { timeout, failure_grace })
        .expect("joining the group");
    assert_eq!((dist.rank(), dist.world_size()), (env.rank, 2));
    Some(dist)
}

fn done(dist: &Dist) {
    println!("{DONE} rank={}", dist.rank());
}

struct Exit {
    code: Option<i32>,
    output: String,
}

/// Runs `test` as 2 ranks and returns how each exited, killing both after `limit`.
fn run_ranks(test: &str, limit: Duration) -> Vec<Exit> {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = ddpm_testkit::temp_dir(test);
    let mut children: Vec<(Child, std::path::PathBuf)> = (0..2)
        .map(|rank| {
            let log = dir.join(format!("rank{rank}.log"));
            let file = std::fs::File::create(&log).unwrap();
            let child = Command::new(std::env::current_exe().unwrap())
                .args([test, "--exact", "--nocapture", "--test-threads=1"])
                .env(CHILD, "1")
                .env("RANK", rank.to_string())
                .env("WORLD_SIZE", "2")
                .env("LOCAL_RANK", rank.to_string())
                .env("LOCAL_WORLD_SIZE", "2")
                .env("MASTER_ADDR", "127.0.0.1")
                .env("MASTER_PORT", port.to_string())
                .env_remove("TORCHELASTIC_USE_AGENT_STORE")
                .env_remove("TORCHELASTIC_RESTART_COUNT")
                .env_remove("GLOO_SOCKET_IFNAME")
                .env("OMP_NUM_THREADS", "1")
                .stdin(Stdio::null())
                .stdout(file.try_clone().unwrap())
                .stderr(file)
                .spawn()
                .unwrap();
            (child, log)
        })
        .collect();
    let start = Instant::now();
    let mut codes: Vec<Option<Option<i32>>> = vec![None, None];
    while codes.iter().any(Option::is_none) {
        for (i, (child, _)) in children.iter_mut().enumerate() {
            if codes[i].is_none()
                && let Some(status) = child.try_wait().unwrap()
            {
                codes[i] = Some(status.code());
            }
        }
        if start.elapsed() > limit {
            for (child, _) in &mut children {
                let _ = child.kill();
                let _ = child.wait();
            }
            let logs: Vec<String> = children.iter().map(|(_, log)| read(log)).collect();
            panic!("{test}: ranks still running after {limit:?}, killed:\n{}", logs.join("\n"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let exits = children
        .iter()
        .zip(codes)
        .map(|((_, log), code)| Exit { code: code.unwrap(), output: read(log) })
        .collect();
    let _ = std::fs::remove_dir_all(&dir);
    // What the survivors of the failure tests saw (shown with --nocapture).
    for e in &exits as &[Exit] {
        for line in e.output.lines().filter(|l| l.contains(" got, after ")) {
            println!("{test}: {line}");
        }
    }
    exits
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Both ranks ran their part to the end and exited 0.
fn assert_both_done(test: &str, exits: &[Exit]) {
    for (rank, e) in exits.iter().enumerate() {
        assert!(
            e.code == Some(0) && e.output.contains(&format!("{DONE} rank={rank}")),
            "{test}: rank {rank} exited {:?}:\n{}",
            e.code,
            e.output
        );
    }
}

const LIMIT: Duration = Duration::from_secs(60);
const TIMEOUT: Duration = Duration::from_secs(30);
const GRACE: Duration = Duration::from_secs(2);

#[test]
fn all_reduce_gives_exact_sums_and_broadcast_copies_rank0() {
    let Some(dist) = child_dist(TIMEOUT, GRACE) else {
        let test = "all_reduce_gives_exact_sums_and_broadcast_copies_rank0";
        return assert_both_done(test, &run_ranks(test, LIMIT));
    };
    let r = dist.rank() as f64;
    // Mixed dtypes and shapes: one collective per dtype.
    let a = Tensor::from_slice(&[1.0f32 + r as f32, 0.25, -3.0]);
    let b = Tensor::from_slice(&[10.0f32 * (r as f32 + 1.0), 7.0, 0.5, 1e-8]).view([2, 2]);
    let c = Tensor::from_slice(&[0.1f64 + r]);
    let d = Tensor::from_slice(&[1i64 << (40 + dist.rank()), 5]);
    dist.all_reduce_sum(&[
        a.shallow_clone(),
        b.shallow_clone(),
        c.shallow_clone(),
        d.shallow_clone(),
    ])
    .unwrap();
    assert_eq!(dist.collectives(), 3, "f32, f64 and i64 groups");
    assert_eq!(Vec::<f32>::try_from(&a).unwrap(), vec![3.0, 0.5, -6.0]);
    assert_eq!(Vec::<f32>::try_from(b.view([-1])).unwrap(), vec![30.0, 14.0, 1.0, 2e-8]);
    assert_eq!(Vec::<f64>::try_from(&c).unwrap(), vec![0.1 + 1.1]);
    assert_eq!(Vec::<i64>::try_from(&d).unwrap(), vec![(1 << 40) + (1 << 41), 10]);

    // Rank 0's weights reach rank 1, including leaf parameters that require grad.
    let w = Tensor::full([3, 2], r + 1.0, (Kind::Float, Device::Cpu)).set_requires_grad(true);
    let v = Tensor::arange(5, (Kind::Double, Device::Cpu)) * (r + 1.0);
    dist.broadcast_parameters(&[w.shallow_clone(), v.shallow_clone()]).unwrap();
    assert_eq!(Vec::<f32>::try_from(w.view([-1])).unwrap(), vec![1.0; 6]);
    assert_eq!(Vec::<f64>::try_from(&v).unwrap(), vec![0.0, 1.0, 2.0, 3.0, 4.0]);
    assert!(w.requires_grad(), "still a parameter");
    // Host values and bytes: rank 0's everywhere.
    let mine = [7 + dist.rank() as i64, -(1 << 50)];
    assert_eq!(dist.broadcast_i64s(&mine).unwrap(), vec![7, -(1 << 50)]);
    let text = if dist.is_main() { "rank 0's state".as_bytes() } else { &[] };
    assert_eq!(dist.broadcast_bytes(text).unwrap(), b"rank 0's state");
    assert_eq!(dist.broadcast_bytes(&[]).unwrap(), Vec::<u8>::new());
    // Rows of different counts (3 on rank 0, 1 on rank 1), gathered in rank order.
    let rows = if dist.is_main() {
        Tensor::arange(6, (Kind::Float, Device::Cpu)).view([3, 2])
    } else {
        Tensor::from_slice(&[10f32, 11.]).view([1, 2])
    };
    let all = dist.all_gather_rows(&rows).unwrap();
    assert_eq!(all.size(), vec![4, 2]);
    assert_eq!(
        Vec::<f32>::try_from(all.view([-1])).unwrap(),
        vec![0., 1., 2., 3., 4., 5., 10., 11.]
    );
    // The same to rank 0 alone: rank 1 holds nothing of rank 0's.
    match dist.gather_rows(&rows).unwrap() {
        Some(all) if dist.is_main() => assert_eq!(
            Vec::<f32>::try_from(all.view([-1])).unwrap(),
            vec![0., 1., 2., 3., 4., 5., 10., 11.]
        ),
        None if !dist.is_main() => {}
        other => panic!("rank {}: {other:?}", dist.rank()),
    }
    dist.barrier().unwrap();
    done(&dist);
}

/// Gradients of a rank: deterministic in (rank, step), so each rank can compute the other's.
fn grads_of(rank: usize, step: i64, shapes: &[(Vec<i64>, Kind)]) -> Vec<Tensor> {
    shapes
        .iter()
        .enumerate()
        .map(|(i, (shape, kind))| {
            tch::manual_seed(1000 * step + 10 * i as i64 + rank as i64);
            Tensor::randn(shape.as_slice(), (*kind, Device::Cpu))
        })
        .collect()
}

#[test]
fn bucketed_gradient_mean_equals_the_mean_of_the_ranks_gradients() {
    let Some(dist) = child_dist(TIMEOUT, GRACE) else {
        let test = "bucketed_gradient_mean_equals_the_mean_of_the_ranks_gradients";
        return assert_both_done(test, &run_ranks(test, LIMIT));
    };
    // 8.4M f32 (33.6 MB, over one 25 MiB bucket) plus small and f64 tensors.
    let shapes: Vec<(Vec<i64>, Kind)> = vec![
        (vec![128, 3, 3, 3], Kind::Float),
        (vec![1024, 4096], Kind::Float),
        (vec![7], Kind::Double),
        (vec![512, 8192], Kind::Float),
        (vec![3], Kind::Float),
    ];
    let params: Vec<Tensor> = shapes
        .iter()
        .map(|(s, k)| Tensor::zeros(s.as_slice(), (*k, Device::Cpu)).set_requires_grad(true))
        .collect();
    let reducer = GradReducer::new(&params).unwrap();
    assert_eq!(reducer.num_buckets(), 3, "{:?}", reducer.bucket_numels());
    for step in 0..2 {
        // Set this rank's gradients through autograd, as backward() would.
        let mine = grads_of(dist.rank(), step, &shapes);
        for p in &params {
            let g = p.grad();
            if g.defined() {
                let _ = g.shallow_clone().zero_();
            }
        }
        let loss = params
            .iter()
            .zip(&mine)
            .map(|(p, g)| (p * g).sum(Kind::Double))
            .fold(Tensor::from(0f64), |a, b| a + b);
        loss.backward();
        let before = dist.collectives();
        reducer.all_reduce_mean(&dist, &params).unwrap();
        assert_eq!(dist.collectives() - before, 3, "one all-reduce per bucket");
        let (g0, g1) = (grads_of(0, step, &shapes), grads_of(1, step, &shapes));
        for (i, p) in params.iter().enumerate() {
            let want = (&g0[i] + &g1[i]) / 2.0;
            // (a + b) / 2 in the dtype is what both orders of summation give for two ranks.
            let diff = (p.grad() - &want).abs().max().double_value(&[]);
            assert_eq!(diff, 0.0, "parameter {i}, step {step}: max |diff| {diff}");
        }
    }
    // Small buckets: many collectives, the same result.
    let small = GradReducer::with_bucket_cap(&params, 1 << 20).unwrap();
    // The three tensors above 1 MiB get a bucket each; the small f32 and the f64 one more each.
    assert_eq!(small.num_buckets(), 5, "{:?}", small.bucket_numels());
    let before: Vec<Tensor> = params.iter().map(|p| p.grad().copy()).collect();
    small.all_reduce_mean(&dist, &params).unwrap();
    for (p, b) in params.iter().zip(&before) {
        assert_eq!(p.grad().ne_tensor(b).sum(Kind::Int64).int64_value(&[]), 0, "mean of equals");
    }
    done(&dist);
}

#[test]
fn sharded_feature_moments_equal_single_process_statistics() {
    let Some(dist) = child_dist(TIMEOUT, GRACE) else {
        let test = "sharded_feature_moments_equal_single_process_statistics";
        return assert_both_done(test, &run_ranks(test, LIMIT));
    };
    // Inception-like features: non-negative, mean and spread of the same order.
    let (n, d) = (1001, 64);
    tch::manual_seed(11);
    let all = (Tensor::randn([n, d], (Kind::Float, Device::Cpu)) * 0.6 + 0.4).relu();
    let mine =
        all.narrow(0, dist.shard(n as usize).start as i64, dist.shard(n as usize).len() as i64);
    let mut m = FeatureMoments::new(d, Device::Cpu);
    for batch in mine.split(100, 0) {
        m.add(&batch).unwrap();
    }
    assert_eq!(m.count(), if dist.rank() == 0 { 501 } else { 500 });
    m.all_reduce(&dist).unwrap();
    assert_eq!(m.count(), n);
    let (mu, sigma) = m.mean_cov().unwrap();
    // The single-process statistics, two-pass (pytorch-fid's np.mean and np.cov).
    let x = all.to_kind(Kind::Double);
    let mu_ref = x.mean_dim([0i64].as_slice(), false, None::<Kind>);
    let c = &x - &mu_ref;
    let sigma_ref = c.tr().matmul(&c) / (n - 1) as f64;
    let rel = |a: &Tensor, b: &Tensor| {
        (a - b).abs().max().double_value(&[]) / b.abs().max().double_value(&[])
    };
    assert!(rel(&mu, &mu_ref) < 1e-12, "mu: {}", rel(&mu, &mu_ref));
    assert!(rel(&sigma, &sigma_ref) < 1e-12, "sigma: {}", rel(&sigma, &sigma_ref));
    done(&dist);
}

/// The error a surviving rank gets, and how long it took.
fn failing_all_reduce(dist: &Dist) -> (String, Duration) {
    let t = Tensor::ones([1000], (Kind::Float, Device::Cpu));
    let start = Instant::now();
    let e = dist.all_reduce_sum(std::slice::from_ref(&t)).expect_err("the peer is gone");
    (e.to_string(), start.elapsed())
}

#[test]
fn a_rank_that_exits_is_named_by_the_survivor_without_a_hang() {
    let Some(dist) = child_dist(TIMEOUT, GRACE) else {
        let test = "a_rank_that_exits_is_named_by_the_survivor_without_a_hang";
        let exits = run_ranks(test, LIMIT);
        assert_eq!(exits[1].code, Some(17), "rank 1 exits on purpose:\n{}", exits[1].output);
        assert!(exits[0].code == Some(0) && exits[0].output.contains(DONE), "{}", exits[0].output);
        return;
    };
    dist.barrier().unwrap();
    if dist.rank() == 1 {
        std::process::exit(17);
    }
    let (msg, took) = failing_all_reduce(&dist);
    println!("rank 0 got, after {took:?}: {msg}");
    // Reported at once (the connection closed), not after the 30 s timeout.
    assert!(took < Duration::from_secs(15), "{took:?}: {msg}");
    assert!(msg.starts_with("all_reduce #1 failed on rank 0 of 2: rank 1 did not report"), "{msg}");
    assert!(msg.contains("libtorch: "), "c10d's own error follows: {msg}");
    assert!(!msg.contains('\n'), "one line: {msg}");
    // The group does not recover: later collectives are refused at once.
    let e = dist.barrier().unwrap_err().to_string();
    assert!(
        e.starts_with("barrier refused: the process group failed earlier (all_reduce #1"),
        "{e}"
    );
    done(&dist);
}

#[test]
fn the_store_host_exiting_is_named_by_the_survivor_without_a_hang() {
    let Some(dist) = child_dist(TIMEOUT, GRACE) else {
        let test = "the_store_host_exiting_is_named_by_the_survivor_without_a_hang";
        let exits = run_ranks(test, LIMIT);
        assert_eq!(exits[0].code, Some(17), "rank 0 exits on purpose:\n{}", exits[0].output);
        assert!(exits[1].code == Some(0) && exits[1].output.contains(DONE), "{}", exits[1].output);
        return;
    };
    // The survivor is in the gradient reducer's pipeline of started all-reduces (3 buckets).
    let params: Vec<Tensor> = (0..3)
        .map(|_| Tensor::ones([300_000], (Kind::Float, Device::Cpu)).set_requires_grad(true))
        .collect();
    params.iter().map(|p| p.sum(Kind::Float)).fold(Tensor::from(0f32), |a, b| a + b).backward();
    let reducer = GradReducer::with_bucket_cap(&params, 1 << 20).unwrap();
    assert_eq!(reducer.num_buckets(), 3);
    dist.barrier().unwrap();
    if dist.rank() == 0 {
        std::process::exit(17);
    }
    let start = Instant::now();
    let msg = reducer.all_reduce_mean(&dist, &params).unwrap_err().to_string();
    let took = start.elapsed();
    println!("rank 1 got, after {took:?}: {msg}");
    assert!(took < Duration::from_secs(15), "{took:?}: {msg}");
    assert!(
        msg.starts_with("all_reduce #1 failed on rank 1 of 2: the TCPStore served by rank 0"),
        "{msg}"
    );
    assert!(msg.contains("that process has exited"), "{msg}");
    done(&dist);
}

#[test]
fn a_hung_rank_times_out_with_an_error_naming_it() {
    let timeout = Duration::from_secs(3);
    let Some(dist) = child_dist(timeout, GRACE) else {
        let test = "a_hung_rank_times_out_with_an_error_naming_it";
        return assert_both_done(test, &run_ranks(test, LIMIT));
    };
    dist.barrier().unwrap();
    if dist.rank() == 1 {
        // Alive but elsewhere for longer than the timeout and the survivor's grace period,
        // then too late: rank 0 has given up and exited.
        std::thread::sleep(timeout + GRACE + Duration::from_secs(3));
        let (msg, took) = failing_all_reduce(&dist);
        println!("rank 1 got, after {took:?}: {msg}");
        assert!(msg.starts_with("all_reduce #1 failed on rank 1 of 2"), "{msg}");
        return done(&dist);
    }
    let (msg, took) = failing_all_reduce(&dist);
    println!("rank 0 got, after {took:?}: {msg}");
    assert!(took >= timeout - Duration::from_millis(100), "not before the timeout: {took:?}");
    assert!(took < timeout + GRACE + Duration::from_secs(5), "{took:?}");
    assert!(msg.starts_with("all_reduce #1 failed on rank 0 of 2: rank 1 did not report"), "{msg}");
    assert!(msg.to_lowercase().contains("timed out"), "{msg}");
    done(&dist);
}
