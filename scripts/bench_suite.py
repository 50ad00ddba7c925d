"""`cargo xtask bench`: runs our benchmark binary (ddpm-bench) and the PyTorch reference
(bench_reference.py) on the same device, thread count and shapes, in one go, and rewrites this
device's section of BENCHMARKS.md with side-by-side numbers and ratios.

  bench_suite.py [--device cpu|cuda] [--threads N] [--seconds S] [--digits-run runs/digits]
                 [--bench-bin PATH] [--out BENCHMARKS.md] [--no-dist | --only-dist]

--bench-bin runs a prebuilt binary (on a GPU machine without a Rust toolchain; ddpm-dist-bench
is looked for beside it); otherwise both are built with the cargo that runs xtask.

On the CPU it also measures scale-out (section `bench:dist-cpu`), each side launched by torchrun:
the gradient all-reduce of the CIFAR-10 UNet over 2 Gloo processes (ddpm-dist-bench allreduce
against PyTorch DDP, bench_allreduce.py), and the CIFAR-10 training step at one global batch in
1 process of N threads against 2 processes of N/2 threads (ddpm-bench --data-parallel against
bench_ddp_train.py with DistributedDataParallel).
"""
import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# GFLOP per image: the CIFAR-10 UNet's forward is 6.22 GMACs (12.44 GFLOP) at 32x32; training
# (forward and backward) about 3x that.
CIFAR_FWD_GFLOP = 12.44
CIFAR_TRAIN_GFLOP = 37.3


def run(cmd):
    print("+", " ".join(cmd), file=sys.stderr, flush=True)
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    return json.loads(out.stdout.decode().strip().splitlines()[-1])


def best(prev, new):
    """Per workload, the round with the shortest time."""
    if prev is None:
        return new
    out = dict(new)
    for k, v in new.items():
        if isinstance(v, dict) and isinstance(prev.get(k), dict):
            time_key = next((t for t in ("seconds_per_step", "seconds_per_batch", "seconds") if t in v), None)
            if time_key and prev[k][time_key] < v[time_key]:
                out[k] = prev[k]
    return out


def faster(prev, new):
    """The run with the shorter time per step."""
    return new if prev is None or new["seconds_per_step"] < prev["seconds_per_step"] else prev


def torchrun(nproc, *cmd):
    """The venv's torchrun (this interpreter's torch.distributed.run) on one machine."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc), *cmd]


def dist_benchmarks(a, bench, dist_bench):
    """Scale-out on this machine: every workload of both sides, alternating, best of a.rounds."""
    script = lambda name: os.path.join(ROOT, "scripts", name)  # noqa: E731
    per_rank = str(max(a.threads // 2, 1))
    batch = str(a.global_batch)
    cmds = {
        "ours_allreduce": torchrun(2, "--no-python", dist_bench, "allreduce", "--threads", "1"),
        "ref_allreduce": torchrun(2, script("bench_allreduce.py"), "--threads", "1"),
        "ours_train_1": [bench, "--data-parallel", "--threads", str(a.threads), "--global-batch", batch],
        "ref_train_1": [sys.executable, script("bench_ddp_train.py"), "--threads", str(a.threads), "--global-batch", batch],
        "ours_train_2": torchrun(2, "--no-python", bench, "--data-parallel", "--threads", per_rank, "--global-batch", batch),
        "ref_train_2": torchrun(2, script("bench_ddp_train.py"), "--threads", per_rank, "--global-batch", batch),
    }
    out = {"load_before": os.getloadavg()[0]}
    for _ in range(a.rounds):
        for k, cmd in cmds.items():
            out[k] = faster(out.get(k), run(cmd))
    out["load_after"] = os.getloadavg()[0]
    return out


def dist_section(d, a):
    date = datetime.date.today().isoformat()
    oa, ra = d["ours_allreduce"], d["ref_allreduce"]
    o1, r1, o2, r2 = d["ours_train_1"], d["ref_train_1"], d["ours_train_2"], d["ref_train_2"]
    per_rank = max(a.threads // 2, 1)
    ratio = lambda o, r: o["seconds_per_step"] / r["seconds_per_step"]  # noqa: E731
    lines = [
        f"### Scale-out, CPU: {device_name('cpu')}, Gloo, measured {date}",
        "",
        "Each side launched by torchrun (`--standalone --nproc-per-node 2`) on this machine, in the same run, alternating "
        f"the workloads for {a.rounds} round(s) and keeping each one's best. Ours: `ddpm-dist-bench allreduce` "
        "(the `GradReducer` the trainer uses: pack each 25 MiB bucket, all-reduce, divide while unpacking, after the "
        "backward pass) and `ddpm-bench --data-parallel` (the trainer's `TrainStep` with the gradient all-reduce); "
        "PyTorch: `scripts/bench_allreduce.py` (DistributedDataParallel's bucketed all-reduce, overlapped with the backward "
        "pass: DDP's forward+backward minus the same under `no_sync()`) and `scripts/bench_ddp_train.py` (diffusers' "
        "UNet2DModel under DDP, Adam, clipping, EMA). Ratio = our time / theirs.",
        "",
        "| workload | ours | PyTorch | ratio (time) |",
        "|---|---|---|---|",
        f"| gradient all-reduce, CIFAR-10 UNet ({oa['params']:,} f32, {oa['bytes'] / 1e6:.0f} MB), 2 processes x 1 thread, "
        f"25 MiB buckets | {oa['seconds_per_step']:.3f} s/step ({oa['gb_per_s']:.2f} GB/s) | "
        f"{ra['seconds_per_step']:.3f} s/step ({ra['gb_per_s']:.2f} GB/s) | **{ratio(oa, ra):.2f}** |",
        f"| the c10d all-reduce alone over buffers of the bucket sizes | {oa['c10d_seconds_per_step']:.3f} s/step | "
        f"{ra['c10d_seconds_per_step']:.3f} s/step | {oa['c10d_seconds_per_step'] / ra['c10d_seconds_per_step']:.2f} |",
        f"| training step, CIFAR-10 UNet, global batch {a.global_batch}: 1 process x {a.threads} threads | "
        f"{o1['images_per_s']:.2f} img/s | {r1['images_per_s']:.2f} img/s | **{ratio(o1, r1):.2f}** |",
        f"| the same, 2 processes x {per_rank} thread(s), batch {a.global_batch // 2} each | {o2['images_per_s']:.2f} img/s | "
        f"{r2['images_per_s']:.2f} img/s | **{ratio(o2, r2):.2f}** |",
        f"| 2 processes / 1 process (throughput) | {o2['images_per_s'] / o1['images_per_s']:.2f}x | "
        f"{r2['images_per_s'] / r1['images_per_s']:.2f}x | |",
        "",
        "GB/s is the gradient bytes over the time per step (algorithm bandwidth). On one machine's two cores the second "
        "process brings no new compute, so the scaling row shows what data parallelism costs (the all-reduce, and two "
        "half batches instead of one); on GPUs each process has its own device. The machine's load average was "
        f"{d['load_before']:.1f} before the run and {d['load_after']:.1f} after it (on {os.cpu_count()} cores; the "
        "benchmark's own processes count in the second figure): a first figure near 0 means nothing else ran.",
        "",
    ]
    return "\n".join(lines)


def write_block(path, tag, body):
    text = open(path).read() if os.path.exists(path) else "# Benchmarks\n\n"
    block = f"<!-- bench:{tag}:begin -->\n{body}\n<!-- bench:{tag}:end -->"
    pat = re.compile(rf"<!-- bench:{tag}:begin -->.*?<!-- bench:{tag}:end -->", re.S)
    text = pat.sub(lambda _: block, text) if pat.search(text) else text.rstrip() + "\n\n" + block + "\n"
    open(path, "w").write(text)


def device_name(device):
    if device != "cuda":
        cpu = platform.processor() or platform.machine()
        try:
            for line in open("/proc/cpuinfo"):
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
        return cpu
    import torch
    return torch.cuda.get_device_name(0)


def fmt(x, digits=1):
    return "-" if x is None else f"{x:,.{digits}f}"


def section(ours, ref, a):
    gpu = a.device == "cuda"
    date = datetime.date.today().isoformat()
    lines = [
        f"### {'GPU' if gpu else 'CPU'}: {device_name(a.device)}, {a.threads} threads, measured {date}",
        "",
        f"Ours: `ddpm-bench`; reference: PyTorch {ref['torch']} eager (`scripts/bench_reference.py`): diffusers "
        "`UNet2DModel` with the same configuration, " + ("`torch.optim.Adam(fused=True)`, `clip_grad_norm_`, diffusers' `EMAModel(foreach=True)`" if gpu else "`torch.optim.Adam` (PyTorch's default implementation on the CPU), `clip_grad_norm_`, diffusers' `EMAModel`") + ", "
        "`DDIMScheduler`, pytorch-fid. Same process settings, shapes and "
        "thread count, measured in the same run, alternating the two sides for {rounds} round(s) and keeping each side's "
        "best. Ratio = our time / their time (below 1: we are faster).".format(rounds=a.rounds),
        "",
        "| workload | batch | ours | PyTorch | ratio (time) |",
        "|---|---|---|---|---|",
    ]
    precs = ["f32", "bf16"] if gpu else ["f32"]
    for prec in precs:
        for name, label, unit in [("train_small", "training step, small UNet (ch 64, 3 levels)", "img/s"),
                                  ("train_cifar10", "training step, CIFAR-10 UNet (35.7M)", "img/s"),
                                  ("sample_cifar10", "sampler step (DDIM), CIFAR-10 UNet", "img-steps/s")]:
            o, r = ours[f"{name}_{prec}"], ref[f"{name}_{prec}"]
            key = "images_per_s" if "images_per_s" in o else "image_steps_per_s"
            ratio = o["seconds_per_step"] / r["seconds_per_step"]
            lines.append(f"| {label}, {prec} | {o['batch']} | {fmt(o[key])} {unit} | {fmt(r[key])} {unit} | **{ratio:.2f}** |")
    oi, ri = ours["inception"], ref["inception"]
    lines.append(f"| Inception pool3 features (32x32 -> 299) | {oi['batch']} | {fmt(oi['images_per_s'])} img/s | {fmt(ri['images_per_s'])} img/s | **{oi['seconds_per_batch'] / ri['seconds_per_batch']:.2f}** |")
    of, rf = ours["frechet"], ref["frechet"]
    lines.append(f"| Frechet distance, 2048-d (eigh vs scipy sqrtm) | - | {of['seconds']:.2f} s | {rf['seconds']:.2f} s | **{of['seconds'] / rf['seconds']:.2f}** ({rf['seconds'] / of['seconds']:.1f}x faster) |")
    lines += ["", f"The two Frechet distances agree: ours {of['fid']:.6f}, pytorch-fid {rf['fid']:.6f}.", ""]
    ops = ours["optimiser_ops"]
    pt, fu = ops["per_tensor"], ops["fused"]
    lines += [
        f"Optimiser step on the CIFAR-10 UNet ({ops['parameter_tensors']} parameter tensors): global-norm clipping, "
        "Adam, EMA and zeroing the gradients, in ATen operator calls issued per step:",
        "",
        "| optimiser path | calls issued (top level) | all calls incl. nested |",
        "|---|---|---|",
        f"| per-tensor loop (before) | {pt['top_level']} | {pt['all']} |",
        f"| fused Adam + `_foreach_*` (after) | {fu['top_level']} | {fu['all']} |",
        "",
        f"The fused path issues {pt['top_level'] / max(fu['top_level'], 1):.0f}x fewer calls. On a GPU each issued call is "
        "one or a few kernel launches (multi-tensor kernels). On the CPU, libtorch runs `_foreach_*` as loops of "
        "per-tensor operators, which the nested count shows; the fused Adam kernel still shortens the step there "
        "(criterion's `optimiser/*` benchmarks).",
        "",
    ]
    if gpu:
        ceiling = ours.get("bf16_matmul_tflops")
        lines += [f"bf16 matmul ceiling measured in this run: {ceiling:.0f} TFLOP/s.", "",
                  "| workload | ours TFLOP/s | fraction of ceiling | PyTorch TFLOP/s |", "|---|---|---|---|"]
        for prec in precs:
            o, r = ours[f"train_cifar10_{prec}"], ref[f"train_cifar10_{prec}"]
            to, tr = o["images_per_s"] * CIFAR_TRAIN_GFLOP / 1e3, r["images_per_s"] * CIFAR_TRAIN_GFLOP / 1e3
            lines.append(f"| CIFAR-10 training, {prec} | {to:.1f} | {to / ceiling:.1%} | {tr:.1f} |")
            o, r = ours[f"sample_cifar10_{prec}"], ref[f"sample_cifar10_{prec}"]
            to, tr = o["image_steps_per_s"] * CIFAR_FWD_GFLOP / 1e3, r["image_steps_per_s"] * CIFAR_FWD_GFLOP / 1e3
            lines.append(f"| CIFAR-10 sampling, {prec} | {to:.1f} | {to / ceiling:.1%} | {tr:.1f} |")
        lines.append("")
    d = ours.get("digits")
    if d:
        lines += [f"Sampling the default digits run (step {d['checkpoint_step']}, 1x8x8, {d['n']} images per batch):", "",
                  "| sampler | steps | network evaluations | images/s |", "|---|---|---|---|"]
        for k in ["ddpm", "ddim", "dpmsolverpp", "heun"]:
            v = d[k]
            lines.append(f"| {k.replace('dpmsolverpp', 'dpm-solver++')} | {v['steps']} | {v['evaluations']} | {fmt(v['images_per_s'])} |")
        lines.append("")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--digits-run", default="runs/digits")
    p.add_argument("--bench-bin")
    p.add_argument("--out", default=os.path.join(ROOT, "BENCHMARKS.md"))
    p.add_argument("--json-out")
    p.add_argument("--no-dist", action="store_true", help="leave out the scale-out benchmarks")
    p.add_argument("--only-dist", action="store_true", help="only the scale-out benchmarks (CPU)")
    p.add_argument("--global-batch", type=int, default=8, help="global batch of the scale-out training step")
    a = p.parse_args()
    bench = a.bench_bin
    if not bench:
        cargo = os.environ.get("CARGO", "cargo")
        subprocess.run([cargo, "build", "--release", "-p", "ddpm-bench", "--bin", "ddpm-bench",
                        "--bin", "ddpm-dist-bench"], check=True, cwd=ROOT)
        bench = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release", "ddpm-bench")
    dist_bench = os.path.join(os.path.dirname(bench), "ddpm-dist-bench")
    with_dist = a.device == "cpu" and not a.no_dist
    if with_dist and not os.path.exists(dist_bench):
        print(f"bench_suite: {dist_bench} is missing; leaving out the scale-out benchmarks", file=sys.stderr)
        with_dist = False
    if a.only_dist and not with_dist:
        sys.exit("bench_suite: --only-dist measures the CPU (Gloo): use it with --device cpu and without --no-dist")
    result = {}
    if not a.only_dist:
        stats_dir = os.path.join(ROOT, "target", "bench")
        cmd = [bench, "--device", a.device, "--threads", str(a.threads), "--seconds", str(a.seconds), "--stats-dir", stats_dir]
        if a.digits_run and os.path.exists(os.path.join(ROOT, a.digits_run, "config.toml")):
            cmd += ["--digits-run", os.path.join(ROOT, a.digits_run)]
        ref_cmd = [sys.executable, os.path.join(ROOT, "scripts", "bench_reference.py"), "--device", a.device,
                   "--threads", str(a.threads), "--seconds", str(a.seconds), "--stats-dir", stats_dir]
        # Alternate the two sides and keep each one's best round: on a shared machine a single
        # round of each is a few per cent noisy, which is the size of the differences measured.
        ours, ref = None, None
        for _ in range(a.rounds):
            ours = best(ours, run(cmd))
            ref = best(ref, run(ref_cmd))
        result.update(ours=ours, reference=ref)
        body = section(ours, ref, a)
        write_block(a.out, "cuda" if a.device == "cuda" else "cpu", body)
        print(body)
    if with_dist:
        d = dist_benchmarks(a, bench, dist_bench)
        result["dist"] = d
        body = dist_section(d, a)
        write_block(a.out, "dist-cpu", body)
        print(body)
    if a.json_out:
        json.dump(result, open(a.json_out, "w"), indent=1)


if __name__ == "__main__":
    main()
