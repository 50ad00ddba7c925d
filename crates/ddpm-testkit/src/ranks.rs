//! Running our binaries as data-parallel ranks on this machine, the two ways users launch them:
//! [`spawn_ranks`] starts W processes with exactly the variables torchrun gives its workers
//! (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT; rank 0 then serves
//! the store, as under `srun` or a hand-written launcher), so tests run without the venv and
//! know every rank's process id; [`torchrun`] runs the venv's own torchrun. Each rank runs one
//! intra-op thread and writes its stdout and stderr to `rank<r>.log`.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free TCP port on the loopback interface (for MASTER_PORT).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

/// W processes of one job.
#[derive(Debug)]
pub struct Ranks {
    children: Vec<Child>,
    logs: Vec<PathBuf>,
    started: Instant,
}

/// How a rank ended.
#[derive(Debug, Clone)]
pub struct Exit {
    /// The exit status (None when killed by a signal).
    pub code: Option<i32>,
    /// What it printed (stdout and stderr).
    pub output: String,
    /// When it had exited, counted from the launch (to within the 20 ms polling).
    pub after: Duration,
    /// When its exit was seen.
    pub at: Instant,
}

/// Starts `exe args...` as ranks 0..world of one job on this machine, with `envs` added to
/// their environment, logs in `dir`.
pub fn spawn_ranks<S: AsRef<OsStr>>(
    exe: &Path,
    args: &[S],
    world: usize,
    dir: &Path,
    envs: &[(&str, &str)],
) -> Ranks {
    let port = free_port().to_string();
    spawn_with(exe, args, world, dir, envs, |rank| {
        vec![
            ("RANK", rank.to_string()),
            ("WORLD_SIZE", world.to_string()),
            ("LOCAL_RANK", rank.to_string()),
            ("LOCAL_WORLD_SIZE", world.to_string()),
            ("MASTER_ADDR", "127.0.0.1".into()),
            ("MASTER_PORT", port.clone()),
        ]
    })
}

/// As [`spawn_ranks`], with the variables `srun --ntasks=world` gives its tasks on one node
/// (SLURM_JOB_ID, SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, SLURM_NODEID,
/// SLURM_TASKS_PER_NODE, SLURM_JOB_NODELIST) and MASTER_PORT, and none of torchrun's.
pub fn spawn_srun_tasks<S: AsRef<OsStr>>(
    exe: &Path,
    args: &[S],
    world: usize,
    dir: &Path,
    envs: &[(&str, &str)],
) -> Ranks {
    let port = free_port().to_string();
    spawn_with(exe, args, world, dir, envs, |rank| {
        vec![
            ("SLURM_JOB_ID", "4242".into()),
            ("SLURM_PROCID", rank.to_string()),
            ("SLURM_NTASKS", world.to_string()),
            ("SLURM_LOCALID", rank.to_string()),
            ("SLURM_NODEID", "0".into()),
            ("SLURM_TASKS_PER_NODE", world.to_string()),
            ("SLURM_JOB_NODELIST", "localhost".into()),
            ("MASTER_PORT", port.clone()),
        ]
    })
}

const LAUNCHER_VARS: &[&str] = &[
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
    "MASTER_ADDR",
    "MASTER_PORT",
    "TORCHELASTIC_USE_AGENT_STORE",
    "TORCHELASTIC_RESTART_COUNT",
    "GLOO_SOCKET_IFNAME",
    "SLURM_JOB_ID",
    "SLURM_PROCID",
    "SLURM_NTASKS",
    "SLURM_NTASKS_PER_NODE",
    "SLURM_LOCALID",
    "SLURM_NODEID",
    "SLURM_TASKS_PER_NODE",
    "SLURM_JOB_NODELIST",
    "SLURM_NODELIST",
];

fn spawn_with<S: AsRef<OsStr>>(
    exe: &Path,
    args: &[S],
    world: usize,
    dir: &Path,
    envs: &[(&str, &str)],
    launcher: impl Fn(usize) -> Vec<(&'static str, String)>,
) -> Ranks {
    let mut children = Vec::new();
    let mut logs = Vec::new();
    for rank in 0..world {
        let log = dir.join(format!("rank{rank}.log"));
        let file = std::fs::File::create(&log).expect("rank log");
        let mut cmd = Command::new(exe);
        cmd.args(args);
        for v in LAUNCHER_VARS {
            cmd.env_remove(v);
        }
        let child = cmd
            .envs(launcher(rank))
            .env("OMP_NUM_THREADS", "1")
            .env("RUST_LOG", "info")
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log handle"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", exe.display()));
        children.push(child);
        logs.push(log);
    }
    Ranks { children, logs, started: Instant::now() }
}

impl Ranks {
    /// The process id of rank `r`.
    pub fn pid(&self, r: usize) -> u32 {
        self.children[r].id()
    }

    /// What rank `r` has printed so far.
    pub fn output(&self, r: usize) -> String {
        std::fs::read_to_string(&self.logs[r]).unwrap_or_default()
    }

    /// Sends `signal` (e.g. "TERM", "KILL") to rank `r`.
    pub fn signal(&self, r: usize, signal: &str) {
        let ok = Command::new("kill")
            .args([format!("-{signal}"), self.pid(r).to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -{signal} rank {r}");
    }

    /// Waits for every rank; after `limit` kills them all and panics with their output.
    pub fn wait(mut self, limit: Duration) -> Vec<Exit> {
        let n = self.children.len();
        let mut ended: Vec<Option<(Option<i32>, Instant)>> = vec![None; n];
        while ended.iter().any(Option::is_none) {
            for (i, child) in self.children.iter_mut().enumerate() {
                if ended[i].is_none()
                    && let Some(status) = child.try_wait().expect("wait for a rank")
                {
                    ended[i] = Some((status.code(), Instant::now()));
                }
            }
            if self.started.elapsed() > limit {
                for child in &mut self.children {
                    let _ = child.kill();
                    let _ = child.wait();
                }
                let logs: Vec<String> =
                    (0..n).map(|r| format!("rank {r}:\n{}", self.output(r))).collect();
                panic!("ranks still running after {limit:?}, killed:\n{}", logs.join("\n"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        ended
            .into_iter()
            .enumerate()
            .map(|(r, e)| {
                let (code, at) = e.expect("ended");
                Exit { code, output: self.output(r), after: at - self.started, at }
            })
            .collect()
    }
}

impl Drop for Ranks {
    fn drop(&mut self) {
        // A test that panicked while its ranks ran leaves no processes behind.
        for child in &mut self.children {
            if child.try_wait().ok().flatten().is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// The venv's torchrun (panics with the set-up instructions when the venv is missing).
pub fn torchrun_exe() -> PathBuf {
    crate::python().with_file_name("torchrun")
}

/// The process ids of the processes whose parent is `parent`.
pub fn children_of(parent: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            // /proc/PID/stat: "pid (comm) state ppid ..."; comm may hold spaces, so split after ')'.
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let after = stat.rsplit_once(')').map(|(_, s)| s).unwrap_or("");
            after.split_whitespace().nth(1).and_then(|p| p.parse::<u32>().ok()) == Some(parent)
        })
        .collect()
}

/// The child of `parent` (e.g. torchrun) that runs rank `rank`, read from its environment.
pub fn rank_child(parent: u32, rank: usize) -> Option<u32> {
    let want = format!("RANK={rank}");
    children_of(parent).into_iter().find(|pid| {
        std::fs::read(format!("/proc/{pid}/environ"))
            .unwrap_or_default()
            .split(|&b| b == 0)
            .any(|kv| kv == want.as_bytes())
    })
}
