//! Launched by the venv's own torchrun, as users launch us: `torchrun --no-python` starts our
//! binary, which reads the variables torchrun sets and joins the group through torchrun's
//! agent store; `--max-restarts` restarts a failed job into a fresh store namespace.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs the venv's torchrun with `args` and returns (exit code, stdout, stderr); panics after
/// `limit`.
fn torchrun(args: &[&str], limit: Duration) -> (Option<i32>, String, String) {
    let torchrun = ddpm_testkit::python().with_file_name("torchrun");
    let dir = ddpm_testkit::temp_dir("torchrun");
    let (out, err) = (dir.join("stdout"), dir.join("stderr"));
    let mut child = Command::new(&torchrun)
        .args(args)
        .env_remove("RANK")
        .env_remove("WORLD_SIZE")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("running {}: {e}", torchrun.display()));
    let start = Instant::now();
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "torchrun {args:?} still running after {limit:?}:\n{}",
                std::fs::read_to_string(&err).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let read = |p| std::fs::read_to_string(p).unwrap_or_default();
    let result = (code, read(&out), read(&err));
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// The JSON lines `ddpm-dist-bench check` printed, by rank.
fn checks(stdout: &str) -> Vec<serde_json::Value> {
    let mut v: Vec<serde_json::Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["check"] == "ok")
        .collect();
    v.sort_by_key(|v| v["rank"].as_u64());
    v
}

const BIN: &str = env!("CARGO_BIN_EXE_ddpm-dist-bench");

#[test]
#[ignore = "needs the Python venv: run `cargo xtask test`"]
fn torchrun_no_python_launches_two_ranks_of_our_binary() {
    let args = ["--standalone", "--nproc-per-node", "2", "--no-python", BIN, "check"];
    let (code, out, err) = torchrun(&args, Duration::from_secs(120));
    assert_eq!(code, Some(0), "{err}");
    let ranks = checks(&out);
    assert_eq!(ranks.len(), 2, "{out}\n{err}");
    for (rank, v) in ranks.iter().enumerate() {
        assert_eq!(v["rank"], rank as u64);
        assert_eq!(v["local_rank"], rank as u64);
        assert_eq!((v["world_size"].as_u64(), v["local_world_size"].as_u64()), (Some(2), Some(2)));
        assert_eq!(v["backend"], "gloo");
        assert_eq!(v["agent_store"], true, "torchrun's agent serves the store");
        assert_eq!(v["sum"], 3.0);
    }
}

/// PyTorch 2.11's own `init_process_group("gloo")` fails this way: the restarted ranks read
/// the dead attempt's Gloo addresses from the agent's store, which outlives restarts. Our
/// per-attempt store prefix keeps the attempts apart.
#[test]
#[ignore = "needs the Python venv: run `cargo xtask test`"]
fn torchrun_max_restarts_rejoins_after_a_rank_fails() {
    let args = [
        "--standalone",
        "--nproc-per-node",
        "2",
        "--max-restarts",
        "1",
        "--no-python",
        BIN,
        "check",
        "--fail-rank",
        "1",
        "--fail-attempt",
        "0",
        "--timeout-s",
        "60",
    ];
    let (code, out, err) = torchrun(&args, Duration::from_secs(180));
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("rank 1: exiting with status 3 on purpose (restart 0)"), "{err}");
    let ranks = checks(&out);
    assert_eq!(ranks.len(), 2, "{out}\n{err}");
    for v in &ranks {
        assert_eq!(v["restart_count"], 1, "only the restarted attempt finishes: {v}");
    }
}
