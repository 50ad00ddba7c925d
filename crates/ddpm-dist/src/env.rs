//! The launcher's description of the process group, from environment variables.
//!
//! torchrun (torch/distributed/elastic/agent/server/local_elastic_agent.py, `_start_workers`)
//! gives every worker RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT,
//! TORCHELASTIC_RESTART_COUNT and TORCHELASTIC_USE_AGENT_STORE; `--no-python` runs our binary
//! directly. [`DistEnv::from_env`] reads them as `init_process_group("env://")` does
//! (torch/distributed/rendezvous.py), and checks them against each other.
//!
//! Without WORLD_SIZE there is no launcher: a single process. [`DistEnv::from_slurm_env`] maps
//! the variables srun gives each task to the same fields, for jobs launched by srun alone.

use crate::error::{EnvError, SRUN_HINT, TORCHRUN_HINT};
use ddpm_shim::dist::GlooDevice;
use tch::Device;

/// torchrun's default `--master-port`.
pub const DEFAULT_MASTER_PORT: u16 = 29500;

/// Where the ranks meet: the TCPStore that holds the rendezvous keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendezvous {
    /// MASTER_ADDR: the store's host (rank 0's node, or torchrun's agent).
    pub addr: String,
    /// MASTER_PORT.
    pub port: u16,
    /// TORCHELASTIC_USE_AGENT_STORE=True: torchrun's agent already serves the store at
    /// MASTER_ADDR:MASTER_PORT and every rank is its client; otherwise rank 0 serves it
    /// (torch/distributed/rendezvous.py, `_create_c10d_store`).
    pub agent_store: bool,
}

/// One process's place in the job, as the launcher described it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DistEnv {
    /// RANK: this process among all, 0..world_size.
    pub rank: usize,
    /// WORLD_SIZE: processes in the job.
    pub world_size: usize,
    /// LOCAL_RANK: this process among those on its node; its GPU is `cuda:LOCAL_RANK`.
    pub local_rank: usize,
    /// LOCAL_WORLD_SIZE: processes on this node.
    pub local_world_size: usize,
    /// MASTER_ADDR and MASTER_PORT; `None` for a process without a launcher (or one launched
    /// with WORLD_SIZE=1 but without them), which forms no group.
    pub rendezvous: Option<Rendezvous>,
    /// TORCHELASTIC_RESTART_COUNT: how many times torchrun has restarted the workers (0 first).
    pub restart_count: u32,
    /// GLOO_SOCKET_IFNAME: the network interfaces Gloo binds (else the hostname's address).
    pub gloo_device: GlooDevice,
}

impl DistEnv {
    /// A process without a launcher: rank 0 of 1.
    pub fn single() -> Self {
        Self {
            rank: 0,
            world_size: 1,
            local_rank: 0,
            local_world_size: 1,
            rendezvous: None,
            restart_count: 0,
            gloo_device: GlooDevice::Default,
        }
    }

    /// From this process's environment: torchrun's variables, or else those of a task that
    /// `srun` started (see [`DistEnv::from_launcher_vars`]).
    pub fn from_env() -> Result<Self, EnvError> {
        Self::from_launcher_vars(os_var)
    }

    /// Which launcher started this process, from `var(name)`:
    /// - torchrun (RANK or WORLD_SIZE set; also `srun torchrun ...`, whose workers torchrun
    ///   describes): [`DistEnv::from_vars`];
    /// - srun with more than one task and no torchrun (SLURM_JOB_ID, SLURM_PROCID and
    ///   SLURM_NTASKS > 1): [`DistEnv::from_slurm_vars`], so `srun --ntasks-per-node=8
    ///   ddpm-train train ...` forms one group of every task instead of starting independent
    ///   trainers on one run directory; a task whose variables cannot describe the group is
    ///   refused, naming the variable;
    /// - otherwise a single process (a Slurm job of one task included).
    pub fn from_launcher_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, EnvError> {
        let torchrun = var("WORLD_SIZE").is_some() || var("RANK").is_some();
        let slurm_tasks = match (var("SLURM_JOB_ID"), var("SLURM_PROCID"), var("SLURM_NTASKS")) {
            (Some(_), Some(_), Some(n)) => parse("SLURM_NTASKS", &n)?,
            _ => 1,
        };
        if !torchrun && slurm_tasks > 1 {
            return Self::from_slurm_vars(var);
        }
        Self::from_vars(var)
    }

    /// From torchrun's variables as `var(name)` returns them.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, EnvError> {
        let restart_count = match var("TORCHELASTIC_RESTART_COUNT") {
            Some(v) => parse("TORCHELASTIC_RESTART_COUNT", &v)? as u32,
            None => 0,
        };
        let gloo_device = gloo_device(&var);
        let Some(ws) = var("WORLD_SIZE") else {
            if let Some(rank) = var("RANK") {
                return Err(EnvError::Missing {
                    var: "WORLD_SIZE",
                    set_var: "RANK",
                    set_value: rank,
                    hint: TORCHRUN_HINT,
                });
            }
            return Ok(Self { restart_count, gloo_device, ..Self::single() });
        };
        let world_size = parse("WORLD_SIZE", &ws)?;
        let required = |name: &'static str| {
            let value = var(name).ok_or_else(|| EnvError::Missing {
                var: name,
                set_var: "WORLD_SIZE",
                set_value: ws.clone(),
                hint: TORCHRUN_HINT,
            })?;
            parse(name, &value)
        };
        let rank = required("RANK")?;
        let local_rank = required("LOCAL_RANK")?;
        let local_world_size = required("LOCAL_WORLD_SIZE")?;
        check_ranks(
            ("RANK", rank),
            ("WORLD_SIZE", world_size),
            ("LOCAL_RANK", local_rank),
            ("LOCAL_WORLD_SIZE", local_world_size),
        )?;
        // torchrun always sets MASTER_ADDR and MASTER_PORT; with them, even one process forms a
        // (one-rank) group, as `init_process_group` does under `torchrun --nproc-per-node 1`,
        // so the Gloo or NCCL path of a multi-rank job can be run on one device. More than one
        // process needs them.
        let missing = |v| EnvError::Missing {
            var: v,
            set_var: "WORLD_SIZE",
            set_value: ws.clone(),
            hint: TORCHRUN_HINT,
        };
        let rendezvous = match (var("MASTER_ADDR"), var("MASTER_PORT")) {
            (Some(addr), Some(port)) => Some(Rendezvous {
                addr: host("MASTER_ADDR", addr)?,
                port: port_number(&port)?,
                agent_store: var("TORCHELASTIC_USE_AGENT_STORE").as_deref() == Some("True"),
            }),
            (None, _) if world_size > 1 => return Err(missing("MASTER_ADDR")),
            (_, None) if world_size > 1 => return Err(missing("MASTER_PORT")),
            _ => None,
        };
        Ok(Self {
            rank,
            world_size,
            local_rank,
            local_world_size,
            rendezvous,
            restart_count,
            gloo_device,
        })
    }

    /// From the variables srun sets for each task, mapped the way torchrun would set its own:
    /// RANK = SLURM_PROCID, WORLD_SIZE = SLURM_NTASKS, LOCAL_RANK = SLURM_LOCALID,
    /// LOCAL_WORLD_SIZE = SLURM_NTASKS_PER_NODE (else this node's entry of
    /// SLURM_TASKS_PER_NODE), MASTER_ADDR = MASTER_ADDR if set, else the first host of
    /// SLURM_JOB_NODELIST; MASTER_PORT = MASTER_PORT if set, else torchrun's default 29500.
    /// Rank 0 serves the store. For `srun --ntasks-per-node=G ddpm-train ...` (one task per
    /// GPU) without torchrun.
    pub fn from_slurm_env() -> Result<Self, EnvError> {
        Self::from_slurm_vars(os_var)
    }

    /// [`DistEnv::from_slurm_env`] over `var(name)`.
    pub fn from_slurm_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, EnvError> {
        let job = var("SLURM_JOB_ID").ok_or(EnvError::NotInSlurm)?;
        let missing = |name: &'static str| EnvError::Missing {
            var: name,
            set_var: "SLURM_JOB_ID",
            set_value: job.clone(),
            hint: SRUN_HINT,
        };
        let required = |name: &'static str| parse(name, &var(name).ok_or_else(|| missing(name))?);
        let rank = required("SLURM_PROCID")?;
        let world_size = required("SLURM_NTASKS")?;
        let local_rank = required("SLURM_LOCALID")?;
        let (lws_var, local_world_size) = match var("SLURM_NTASKS_PER_NODE") {
            Some(v) => ("SLURM_NTASKS_PER_NODE", parse("SLURM_NTASKS_PER_NODE", &v)?),
            None => {
                let node = required("SLURM_NODEID")?;
                let tasks =
                    var("SLURM_TASKS_PER_NODE").ok_or_else(|| missing("SLURM_TASKS_PER_NODE"))?;
                let per_node = tasks_per_node(&tasks)?;
                let n = *per_node.get(node).ok_or(EnvError::NodeNotListed {
                    node,
                    nodes: per_node.len(),
                    list: tasks.clone(),
                })?;
                ("SLURM_TASKS_PER_NODE", n)
            }
        };
        check_ranks(
            ("SLURM_PROCID", rank),
            ("SLURM_NTASKS", world_size),
            ("SLURM_LOCALID", local_rank),
            (lws_var, local_world_size),
        )?;
        let rendezvous = if world_size > 1 {
            let addr = match var("MASTER_ADDR") {
                Some(a) => host("MASTER_ADDR", a)?,
                None => {
                    let (name, list) = match var("SLURM_JOB_NODELIST") {
                        Some(l) => ("SLURM_JOB_NODELIST", l),
                        None => ("SLURM_NODELIST", var("SLURM_NODELIST").unwrap_or_default()),
                    };
                    first_host(name, &list)?
                }
            };
            let port = match var("MASTER_PORT") {
                Some(p) => port_number(&p)?,
                None => DEFAULT_MASTER_PORT,
            };
            Some(Rendezvous { addr, port, agent_store: false })
        } else {
            None
        };
        Ok(Self {
            rank,
            world_size,
            local_rank,
            local_world_size,
            rendezvous,
            restart_count: 0,
            gloo_device: gloo_device(&var),
        })
    }

    /// More than one process.
    pub fn is_distributed(&self) -> bool {
        self.world_size > 1
    }

    /// This rank's GPU, `cuda:LOCAL_RANK` (torchrun's convention; with CUDA_VISIBLE_DEVICES
    /// narrowed per rank, use `cuda:0` instead).
    pub fn cuda_device(&self) -> Device {
        Device::Cuda(self.local_rank)
    }

    /// This process's device for a requested `auto`, `cpu`, `cuda` or `cuda:N` (`what` names
    /// the argument in errors): as requested without a group; in a group, CUDA means
    /// `cuda:LOCAL_RANK` (torchrun's convention: one GPU per process, NCCL), so `auto` and
    /// `cuda` pick it and an explicit `cuda:N` must be it; `cpu` stays the CPU (Gloo).
    pub fn device(&self, requested: &str, what: &str) -> Result<Device, String> {
        let device = ddpm_nets::parse_device(requested, what)?;
        if self.rendezvous.is_none() || !device.is_cuda() {
            return Ok(device);
        }
        let own = format!("cuda:{}", self.local_rank);
        if requested.starts_with("cuda:") && requested != own {
            return Err(format!(
                "{what} {requested}: under torchrun each rank uses cuda:LOCAL_RANK ({own} for \
                 this rank); pass cuda or auto"
            ));
        }
        ddpm_nets::parse_device(&own, "LOCAL_RANK's device")
    }

    /// The store namespace of this attempt. torchrun keeps one store across restarts
    /// (`--max-restarts`), so an attempt's keys must not meet the previous attempt's: torch
    /// <= 2.3 prefixed `/worker/attempt_{TORCHELASTIC_RESTART_COUNT}` for the same reason.
    pub fn store_prefix(&self) -> String {
        format!("ddpm/attempt_{}", self.restart_count)
    }
}

fn os_var(name: &str) -> Option<String> {
    std::env::var_os(name).map(|v| v.to_string_lossy().into_owned())
}

fn gloo_device(var: &impl Fn(&str) -> Option<String>) -> GlooDevice {
    match var("GLOO_SOCKET_IFNAME") {
        Some(names) if !names.trim().is_empty() => GlooDevice::Interfaces(
            names.split(',').map(str::trim).filter(|n| !n.is_empty()).map(String::from).collect(),
        ),
        _ => GlooDevice::Default,
    }
}

fn parse(var: &'static str, value: &str) -> Result<usize, EnvError> {
    let bad = || EnvError::NotAnInteger { var, value: value.to_string() };
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    value.parse::<u32>().map(|v| v as usize).map_err(|_| bad())
}

fn check_ranks(
    rank: (&'static str, usize),
    world_size: (&'static str, usize),
    local_rank: (&'static str, usize),
    local_world_size: (&'static str, usize),
) -> Result<(), EnvError> {
    for (var, value) in [world_size, local_world_size] {
        if value == 0 {
            return Err(EnvError::Zero { var });
        }
    }
    let less = |(var, value): (&'static str, usize), (bound_var, bound): (&'static str, usize)| {
        if value < bound { Ok(()) } else { Err(EnvError::NotLess { var, value, bound_var, bound }) }
    };
    let at_most = |(var, value): (&'static str, usize),
                   (bound_var, bound): (&'static str, usize)| {
        if value <= bound {
            Ok(())
        } else {
            Err(EnvError::Exceeds { var, value, bound_var, bound })
        }
    };
    less(rank, world_size)?;
    less(local_rank, local_world_size)?;
    at_most(local_world_size, world_size)?;
    // Ranks are numbered so that the processes before this one on its node all have lower
    // ranks (torchrun: rank = node offset + local rank; Slurm: any task distribution).
    at_most(local_rank, rank)
}

fn port_number(value: &str) -> Result<u16, EnvError> {
    match value.parse::<u16>() {
        Ok(p) if p > 0 && value.bytes().all(|b| b.is_ascii_digit()) => Ok(p),
        _ => Err(EnvError::BadPort { value: value.to_string() }),
    }
}

fn host(var: &'static str, value: String) -> Result<String, EnvError> {
    let trimmed = value.trim();
    if trimmed.is_empty() || trimmed.contains(char::is_whitespace) {
        return Err(EnvError::NoHost { var, value });
    }
    Ok(trimmed.to_string())
}

/// The first host of a Slurm hostlist: `node[07-09,12],gpu1` -> `node07`,
/// `rack[1-2]-n[3,5]` -> `rack1-n3` (each bracket group contributes its first value, zero
/// padding kept).
fn first_host(var: &'static str, list: &str) -> Result<String, EnvError> {
    let bad = || EnvError::Slurm { var, value: list.to_string(), what: "host list" };
    let mut host = String::new();
    let mut chars = list.trim().chars();
    while let Some(c) = chars.next() {
        match c {
            ',' => break,
            '[' => {
                let group: String = chars.by_ref().take_while(|&c| c != ']').collect();
                let first = group.split(',').next().unwrap_or("");
                let first = first.split('-').next().unwrap_or("");
                if first.is_empty() || !first.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad());
                }
                host.push_str(first);
            }
            ']' => return Err(bad()),
            c => host.push(c),
        }
    }
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(bad());
    }
    Ok(host)
}

/// SLURM_TASKS_PER_NODE expanded to one count per node: `2(x3),1` -> [2, 2, 2, 1].
fn tasks_per_node(value: &str) -> Result<Vec<usize>, EnvError> {
    let bad = || EnvError::Slurm {
        var: "SLURM_TASKS_PER_NODE",
        value: value.to_string(),
        what: "tasks-per-node list",
    };
    let num = |s: &str| -> Result<usize, EnvError> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        s.parse().map_err(|_| bad())
    };
    let mut out = Vec::new();
    for item in value.split(',') {
        let (count, repeat) = match item.split_once("(x") {
            Some((c, r)) => (num(c)?, num(r.strip_suffix(')').ok_or_else(bad)?)?),
            None => (num(item)?, 1),
        };
        out.extend(std::iter::repeat_n(count, repeat));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> =
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |name| map.get(name).cloned()
    }

    const TORCHRUN_2: &[(&str, &str)] = &[
        ("RANK", "1"),
        ("WORLD_SIZE", "2"),
        ("LOCAL_RANK", "1"),
        ("LOCAL_WORLD_SIZE", "2"),
        ("MASTER_ADDR", "127.0.0.1"),
        ("MASTER_PORT", "29500"),
        ("TORCHELASTIC_RESTART_COUNT", "0"),
        ("TORCHELASTIC_USE_AGENT_STORE", "True"),
    ];

    /// Edits of TORCHRUN_2: ("VAR", Some(value)) sets, ("VAR", None) removes.
    type Changes<'a> = &'a [(&'a str, Option<&'a str>)];

    /// TORCHRUN_2 with `changes` applied: ("VAR", Some(value)) sets, ("VAR", None) removes.
    fn torchrun_with(changes: &[(&str, Option<&str>)]) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> =
            TORCHRUN_2.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        for (k, val) in changes {
            v.retain(|(name, _)| name != k);
            if let Some(val) = val {
                v.push((k.to_string(), val.to_string()));
            }
        }
        v
    }

    fn parse_torchrun(changes: &[(&str, Option<&str>)]) -> Result<DistEnv, EnvError> {
        let v = torchrun_with(changes);
        let pairs: Vec<(&str, &str)> = v.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        DistEnv::from_vars(vars(&pairs))
    }

    #[test]
    fn torchrun_variables_describe_the_group() {
        let env = parse_torchrun(&[("TORCHELASTIC_RESTART_COUNT", Some("3"))]).unwrap();
        assert_eq!(
            env,
            DistEnv {
                rank: 1,
                world_size: 2,
                local_rank: 1,
                local_world_size: 2,
                rendezvous: Some(Rendezvous {
                    addr: "127.0.0.1".into(),
                    port: 29500,
                    agent_store: true
                }),
                restart_count: 3,
                gloo_device: GlooDevice::Default,
            }
        );
        assert!(env.is_distributed());
        assert_eq!(env.cuda_device(), Device::Cuda(1));
        assert_eq!(env.store_prefix(), "ddpm/attempt_3");
    }

    #[test]
    fn good_environments() {
        // (rank, world size, local rank, local world size, agent store if a rendezvous)
        type Expected = (usize, usize, usize, usize, Option<bool>);
        let cases: &[(Changes, Expected)] = &[
            (&[], (1, 2, 1, 2, Some(true))),
            (&[("TORCHELASTIC_USE_AGENT_STORE", Some("False"))], (1, 2, 1, 2, Some(false))),
            (&[("TORCHELASTIC_USE_AGENT_STORE", None)], (1, 2, 1, 2, Some(false))),
            // Two nodes of two: rank 3 is local rank 1 of node 1.
            (&[("RANK", Some("3")), ("WORLD_SIZE", Some("4"))], (3, 4, 1, 2, Some(true))),
            // WORLD_SIZE=1 without a store address: a single process, no group.
            (
                &[
                    ("RANK", Some("0")),
                    ("WORLD_SIZE", Some("1")),
                    ("LOCAL_RANK", Some("0")),
                    ("LOCAL_WORLD_SIZE", Some("1")),
                    ("MASTER_ADDR", None),
                ],
                (0, 1, 0, 1, None),
            ),
            // torchrun --nproc-per-node 1 (MASTER_ADDR and MASTER_PORT set): a one-rank group.
            (
                &[
                    ("RANK", Some("0")),
                    ("WORLD_SIZE", Some("1")),
                    ("LOCAL_RANK", Some("0")),
                    ("LOCAL_WORLD_SIZE", Some("1")),
                ],
                (0, 1, 0, 1, Some(true)),
            ),
        ];
        for (changes, (r, ws, lr, lws, agent)) in cases {
            let env = parse_torchrun(changes).unwrap_or_else(|e| panic!("{changes:?}: {e}"));
            assert_eq!(
                (env.rank, env.world_size, env.local_rank, env.local_world_size),
                (*r, *ws, *lr, *lws),
                "{changes:?}"
            );
            assert_eq!(env.rendezvous.as_ref().map(|r| r.agent_store), *agent, "{changes:?}");
        }
        let none = DistEnv::from_vars(vars(&[("TORCHELASTIC_RESTART_COUNT", "2")])).unwrap();
        assert_eq!(none, DistEnv { restart_count: 2, ..DistEnv::single() });
        assert!(!none.is_distributed());
        let ifs = parse_torchrun(&[("GLOO_SOCKET_IFNAME", Some("eth0, ib0"))]).unwrap();
        assert_eq!(ifs.gloo_device, GlooDevice::Interfaces(vec!["eth0".into(), "ib0".into()]));
    }

    #[test]
    fn bad_environments_are_one_line_errors_naming_the_variable() {
        let launch = "launch with torchrun, which sets RANK, WORLD_SIZE, LOCAL_RANK, \
                      LOCAL_WORLD_SIZE, MASTER_ADDR and MASTER_PORT";
        let cases: &[(Changes, String)] = &[
            (&[("RANK", None)], format!("RANK is not set, but WORLD_SIZE=2 is: {launch}")),
            (&[("WORLD_SIZE", None)], format!("WORLD_SIZE is not set, but RANK=1 is: {launch}")),
            (
                &[("LOCAL_RANK", None)],
                format!("LOCAL_RANK is not set, but WORLD_SIZE=2 is: {launch}"),
            ),
            (
                &[("LOCAL_WORLD_SIZE", None)],
                format!("LOCAL_WORLD_SIZE is not set, but WORLD_SIZE=2 is: {launch}"),
            ),
            (
                &[("MASTER_ADDR", None)],
                format!("MASTER_ADDR is not set, but WORLD_SIZE=2 is: {launch}"),
            ),
            (
                &[("MASTER_PORT", None)],
                format!("MASTER_PORT is not set, but WORLD_SIZE=2 is: {launch}"),
            ),
            (&[("RANK", Some("one"))], "RANK=\"one\" is not a non-negative integer".into()),
            (&[("RANK", Some("-1"))], "RANK=\"-1\" is not a non-negative integer".into()),
            (&[("RANK", Some(""))], "RANK=\"\" is not a non-negative integer".into()),
            (
                &[("WORLD_SIZE", Some("2.0"))],
                "WORLD_SIZE=\"2.0\" is not a non-negative integer".into(),
            ),
            (
                &[("LOCAL_RANK", Some("99999999999"))],
                "LOCAL_RANK=\"99999999999\" is not a non-negative integer".into(),
            ),
            (
                &[("TORCHELASTIC_RESTART_COUNT", Some("x"))],
                "TORCHELASTIC_RESTART_COUNT=\"x\" is not a non-negative integer".into(),
            ),
            (&[("WORLD_SIZE", Some("0"))], "WORLD_SIZE=0 must be at least 1".into()),
            (&[("LOCAL_WORLD_SIZE", Some("0"))], "LOCAL_WORLD_SIZE=0 must be at least 1".into()),
            (&[("RANK", Some("2"))], "RANK=2 must be less than WORLD_SIZE=2".into()),
            (
                &[("LOCAL_RANK", Some("2"))],
                "LOCAL_RANK=2 must be less than LOCAL_WORLD_SIZE=2".into(),
            ),
            (
                &[("LOCAL_WORLD_SIZE", Some("4")), ("LOCAL_RANK", Some("0"))],
                "LOCAL_WORLD_SIZE=4 must not exceed WORLD_SIZE=2".into(),
            ),
            (&[("RANK", Some("0"))], "LOCAL_RANK=1 must not exceed RANK=0".into()),
            (
                &[("MASTER_PORT", Some("70000"))],
                "MASTER_PORT=\"70000\" is not a TCP port (1 to 65535)".into(),
            ),
            (
                &[("MASTER_PORT", Some("0"))],
                "MASTER_PORT=\"0\" is not a TCP port (1 to 65535)".into(),
            ),
            (
                &[("MASTER_PORT", Some("+80"))],
                "MASTER_PORT=\"+80\" is not a TCP port (1 to 65535)".into(),
            ),
            (
                &[("MASTER_ADDR", Some(" "))],
                "MASTER_ADDR=\" \" names no host: set it to the address of rank 0's node".into(),
            ),
        ];
        for (changes, want) in cases {
            let got = parse_torchrun(changes).map(|e| format!("{e:?}")).unwrap_err().to_string();
            assert_eq!(&got, want, "{changes:?}");
            assert!(!got.contains('\n'), "{got}");
        }
    }

    const SLURM_2X2: &[(&str, &str)] = &[
        ("SLURM_JOB_ID", "4242"),
        ("SLURM_PROCID", "3"),
        ("SLURM_NTASKS", "4"),
        ("SLURM_LOCALID", "1"),
        ("SLURM_NODEID", "1"),
        ("SLURM_TASKS_PER_NODE", "2(x2)"),
        ("SLURM_JOB_NODELIST", "gpu[07-08]"),
    ];

    #[test]
    fn slurm_variables_map_as_torchrun_would_set_them() {
        let env = DistEnv::from_slurm_vars(vars(SLURM_2X2)).unwrap();
        assert_eq!((env.rank, env.world_size, env.local_rank, env.local_world_size), (3, 4, 1, 2));
        assert_eq!(
            env.rendezvous,
            Some(Rendezvous { addr: "gpu07".into(), port: 29500, agent_store: false })
        );
        let mut with = SLURM_2X2.to_vec();
        with.extend([("MASTER_PORT", "12345"), ("MASTER_ADDR", "10.0.0.1")]);
        let env = DistEnv::from_slurm_vars(vars(&with)).unwrap();
        assert_eq!(
            env.rendezvous,
            Some(Rendezvous { addr: "10.0.0.1".into(), port: 12345, agent_store: false })
        );
        // SLURM_NTASKS_PER_NODE, when given, wins over the per-node list.
        let mut with = SLURM_2X2.to_vec();
        with.extend([("SLURM_NTASKS_PER_NODE", "2"), ("SLURM_TASKS_PER_NODE", "garbage")]);
        assert_eq!(DistEnv::from_slurm_vars(vars(&with)).unwrap().local_world_size, 2);
        assert_eq!(
            DistEnv::from_slurm_vars(vars(&[("SLURM_PROCID", "0")])).unwrap_err().to_string(),
            "SLURM_JOB_ID is not set: this process is not a Slurm task (start it with srun)"
        );
        let one = DistEnv::from_slurm_vars(vars(&[
            ("SLURM_JOB_ID", "1"),
            ("SLURM_PROCID", "0"),
            ("SLURM_NTASKS", "1"),
            ("SLURM_LOCALID", "0"),
            ("SLURM_NTASKS_PER_NODE", "1"),
        ]))
        .unwrap();
        assert_eq!(one, DistEnv::single());
    }

    /// Regression: the srun path was never called, so `srun --ntasks 4 ddpm-train` started
    /// four independent trainers on one run directory. srun's tasks now form one group;
    /// torchrun's variables win when both are set (`srun torchrun ...`), and a Slurm job of
    /// one task is a single process.
    #[test]
    fn the_launcher_is_torchrun_or_srun_and_srun_tasks_form_one_group() {
        let env = DistEnv::from_launcher_vars(vars(SLURM_2X2)).unwrap();
        assert_eq!((env.rank, env.world_size, env.local_rank), (3, 4, 1));
        assert!(env.rendezvous.is_some());
        let mut both = SLURM_2X2.to_vec();
        both.extend_from_slice(TORCHRUN_2);
        let env = DistEnv::from_launcher_vars(vars(&both)).unwrap();
        assert_eq!((env.rank, env.world_size, env.local_rank), (1, 2, 1));
        assert!(env.rendezvous.as_ref().is_some_and(|r| r.agent_store), "torchrun's store");
        let one = [("SLURM_JOB_ID", "7"), ("SLURM_PROCID", "0"), ("SLURM_NTASKS", "1")];
        assert_eq!(DistEnv::from_launcher_vars(vars(&one)).unwrap(), DistEnv::single());
        assert_eq!(DistEnv::from_launcher_vars(vars(&[])).unwrap(), DistEnv::single());
        // Several tasks whose variables cannot describe the group are refused, by name.
        let no_local: Vec<_> =
            SLURM_2X2.iter().copied().filter(|(k, _)| *k != "SLURM_LOCALID").collect();
        let e = DistEnv::from_launcher_vars(vars(&no_local)).unwrap_err().to_string();
        assert!(e.contains("SLURM_LOCALID"), "{e}");
        let no_hosts: Vec<_> =
            SLURM_2X2.iter().copied().filter(|(k, _)| *k != "SLURM_JOB_NODELIST").collect();
        let e = DistEnv::from_launcher_vars(vars(&no_hosts)).unwrap_err().to_string();
        assert!(e.contains("SLURM_NODELIST"), "{e}");
        let bad = [("SLURM_JOB_ID", "7"), ("SLURM_PROCID", "0"), ("SLURM_NTASKS", "two")];
        let e = DistEnv::from_launcher_vars(vars(&bad)).unwrap_err().to_string();
        assert!(e.contains("SLURM_NTASKS=\"two\""), "{e}");
    }

    #[test]
    fn slurm_lists_parse_and_bad_ones_are_named() {
        for (list, host) in [
            ("node01", "node01"),
            ("node[07-09,12],gpu1", "node07"),
            ("gpu5,node[1-2]", "gpu5"),
            ("rack[1-2]-n[3,5]", "rack1-n3"),
            ("a[009]", "a009"),
        ] {
            assert_eq!(first_host("SLURM_JOB_NODELIST", list).unwrap(), host, "{list}");
        }
        for list in ["", "node[]", "node[a-b]", "node]1", ",node1"] {
            assert_eq!(
                first_host("SLURM_JOB_NODELIST", list).unwrap_err().to_string(),
                format!("SLURM_JOB_NODELIST={list:?} is not a Slurm host list")
            );
        }
        assert_eq!(tasks_per_node("2(x3),1").unwrap(), vec![2, 2, 2, 1]);
        assert_eq!(tasks_per_node("4").unwrap(), vec![4]);
        for bad in ["", "2(x3", "x", "2,(x2)"] {
            assert_eq!(
                tasks_per_node(bad).unwrap_err().to_string(),
                format!("SLURM_TASKS_PER_NODE={bad:?} is not a Slurm tasks-per-node list")
            );
        }
        let mut missing = SLURM_2X2.to_vec();
        missing.retain(|(k, _)| *k != "SLURM_LOCALID");
        assert_eq!(
            DistEnv::from_slurm_vars(vars(&missing)).unwrap_err().to_string(),
            "SLURM_LOCALID is not set, but SLURM_JOB_ID=4242 is: start each task with srun, \
             which sets SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, SLURM_NODEID and \
             SLURM_TASKS_PER_NODE"
        );
        let mut far = SLURM_2X2.to_vec();
        far.retain(|(k, _)| *k != "SLURM_NODEID");
        far.push(("SLURM_NODEID", "2"));
        assert_eq!(
            DistEnv::from_slurm_vars(vars(&far)).unwrap_err().to_string(),
            "SLURM_NODEID=2 is past the 2 nodes of SLURM_TASKS_PER_NODE=\"2(x2)\""
        );
        let mut big = SLURM_2X2.to_vec();
        big.retain(|(k, _)| *k != "SLURM_PROCID");
        big.push(("SLURM_PROCID", "4"));
        assert_eq!(
            DistEnv::from_slurm_vars(vars(&big)).unwrap_err().to_string(),
            "SLURM_PROCID=4 must be less than SLURM_NTASKS=4"
        );
    }
}
