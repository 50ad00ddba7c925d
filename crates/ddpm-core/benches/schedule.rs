//! Schedule construction and respacing: cheap, but run once per process and per sampler call.

use criterion::{Criterion, criterion_group, criterion_main};
use ddpm_core::{BetaSchedule, GaussianDiffusion};
use std::hint::black_box;

fn schedules(c: &mut Criterion) {
    c.bench_function("linear_T1000_all_arrays", |b| {
        b.iter(|| {
            GaussianDiffusion::new(BetaSchedule::paper_linear().betas(black_box(1000)).unwrap())
                .unwrap()
        })
    });
    c.bench_function("cosine_T4000_all_arrays", |b| {
        b.iter(|| {
            GaussianDiffusion::new(BetaSchedule::paper_cosine().betas(black_box(4000)).unwrap())
                .unwrap()
        })
    });
    let d = GaussianDiffusion::new(BetaSchedule::paper_cosine().betas(4000).unwrap()).unwrap();
    c.bench_function("respace_T4000_ddim25", |b| {
        b.iter(|| d.respaced_str(black_box("ddim25")).unwrap())
    });
}

criterion_group!(benches, schedules);
criterion_main!(benches);
