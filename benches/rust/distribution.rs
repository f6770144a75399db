//! Criterion benchmarks of the NeRDF distribution integration: 65,536 rays x 64 samples.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use raysplat_core::distribution::{
    render_distribution, render_distribution_backward, Distribution, OutputGrads, SigmaActivation,
    RAY_COEFFS,
};

const RAYS: usize = 65_536;
const SAMPLES: usize = 64;

#[path = "common.rs"]
mod common;
use common::uniform;

fn bench_distribution(c: &mut Criterion) {
    let coeffs: Vec<f32> = uniform(RAYS * RAY_COEFFS, 1)
        .iter()
        .map(|u| u - 0.5)
        .collect();
    let shared: Vec<f32> = (0..SAMPLES)
        .map(|j| j as f32 / (SAMPLES - 1) as f32)
        .collect();
    let jitter = uniform(RAYS * SAMPLES, 2);
    let per_ray: Vec<f32> = (0..RAYS * SAMPLES)
        .map(|i| ((i % SAMPLES) as f32 + jitter[i]) / SAMPLES as f32)
        .collect();
    let (near, far) = (vec![2.0f32; RAYS], vec![6.0f32; RAYS]);
    let test = Distribution {
        coeffs: &coeffs,
        taus: &shared,
        near: &near,
        far: &far,
        noise: None,
        n_samples: SAMPLES,
        activation: SigmaActivation::Relu,
        last_delta: 1e10,
    };
    let train = Distribution {
        taus: &per_ray,
        ..test
    };
    let mut g = c.benchmark_group("distribution");
    g.throughput(Throughput::Elements((RAYS * SAMPLES) as u64));
    g.sample_size(10);
    g.bench_function("forward_shared_taus", |b| {
        b.iter(|| render_distribution(&test, false).unwrap())
    });
    g.bench_function("forward_per_ray_taus", |b| {
        b.iter(|| render_distribution(&train, true).unwrap())
    });
    let (gc, go, gd, gs) = (
        uniform(RAYS * 3, 3),
        uniform(RAYS, 4),
        uniform(RAYS, 5),
        uniform(RAYS * SAMPLES, 6),
    );
    let grads = OutputGrads {
        colors: Some(&gc),
        opacities: Some(&go),
        depths: Some(&gd),
        sigmas: Some(&gs),
    };
    g.bench_function("backward_per_ray_taus", |b| {
        b.iter(|| render_distribution_backward(&train, &grads).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench_distribution);
criterion_main!(benches);
