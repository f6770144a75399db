//! Criterion benchmarks of the core kernels at the size: 65,536 rays x 64 samples.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use raysplat_core::grid::{march, GridSpec, MarchParams};
use raysplat_core::sampling::{importance_sampling, stratified_edges, Spacing};
use raysplat_core::volrend::{
    accumulate, render, render_backward, weights_from_density, weights_from_density_backward,
    weights_from_intervals, RayMap,
};
use raysplat_core::volrend::{RenderGrads, Samples};
use raysplat_core::Segments;

const RAYS: usize = 65_536;
const SAMPLES: usize = 64;

#[path = "common.rs"]
mod common;
use common::uniform;

fn bench_volrend(c: &mut Criterion) {
    let n = RAYS * SAMPLES;
    let sigma_dt: Vec<f32> = uniform(n, 1).iter().map(|u| u * 0.1).collect();
    let rgb = uniform(n * 3, 2);
    let segs = Segments::uniform(RAYS, SAMPLES);
    let mut g = c.benchmark_group("volrend");
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("weights_from_density", |b| {
        b.iter(|| weights_from_density(&sigma_dt, &segs).unwrap())
    });
    let w = weights_from_density(&sigma_dt, &segs).unwrap();
    let gw = uniform(n, 3);
    g.bench_function("weights_from_density_backward", |b| {
        b.iter(|| {
            weights_from_density_backward(&w.trans, &w.alphas, Some(&gw), None, None, &segs)
                .unwrap()
        })
    });
    let t_starts: Vec<f32> = (0..n)
        .map(|i| 2.0 + 4.0 * (i % SAMPLES) as f32 / SAMPLES as f32)
        .collect();
    let t_ends: Vec<f32> = t_starts.iter().map(|t| t + 4.0 / SAMPLES as f32).collect();
    let sigmas: Vec<f32> = sigma_dt.iter().map(|s| s * SAMPLES as f32 / 4.0).collect();
    let x = Samples {
        t_starts: &t_starts,
        t_ends: &t_ends,
        sigmas: &sigmas,
        values: &rgb,
        channels: 3,
    };
    g.bench_function("weights_from_intervals", |b| {
        b.iter(|| weights_from_intervals(&t_starts, &t_ends, &sigmas, &segs).unwrap())
    });
    g.bench_function("render_fused", |b| b.iter(|| render(x, &segs).unwrap()));
    let out = render(x, &segs).unwrap();
    let (gc, go, gd) = (uniform(RAYS * 3, 8), uniform(RAYS, 9), uniform(RAYS, 10));
    let grads = RenderGrads {
        color: &gc,
        opacity: &go,
        depth: &gd,
        weights: None,
    };
    g.bench_function("render_fused_backward", |b| {
        b.iter(|| render_backward(x, &out.weights, grads, false, &segs).unwrap())
    });
    g.bench_function("accumulate_rgb", |b| {
        b.iter(|| accumulate(&w.weights, Some(&rgb), 3, RayMap::Segments(&segs)).unwrap())
    });
    g.finish();
}

fn bench_sampling(c: &mut Criterion) {
    let near = vec![2.0f32; RAYS];
    let far = vec![6.0f32; RAYS];
    let edges = stratified_edges(&near, &far, SAMPLES, Spacing::Linear, None).unwrap();
    let weights = uniform(RAYS * SAMPLES, 4);
    let jitter = uniform(RAYS, 5);
    let mut g = c.benchmark_group("sampling");
    g.throughput(Throughput::Elements((RAYS * SAMPLES) as u64));
    g.bench_function("stratified_edges", |b| {
        let j = uniform(RAYS * (SAMPLES + 1), 6);
        b.iter(|| stratified_edges(&near, &far, SAMPLES, Spacing::Linear, Some(&j)).unwrap())
    });
    g.bench_function("importance_sampling", |b| {
        b.iter(|| importance_sampling(&edges, &weights, RAYS, SAMPLES, Some(&jitter)).unwrap())
    });
    g.finish();
}

fn bench_march(c: &mut Criterion) {
    // 128^3 grid with a solid sphere of radius 0.5 in a [-1.5, 1.5]^3 box; rays from a camera
    // ring at distance 4 aimed at the box, step = sqrt(3) * 3 / 1024 (nerfacc's Blender setting).
    let res = 128usize;
    let spec = GridSpec {
        aabb: [-1.5, -1.5, -1.5, 1.5, 1.5, 1.5],
        resolution: [res; 3],
        levels: 1,
    };
    let mut binaries = vec![false; spec.n_cells()];
    for i in 0..res {
        for j in 0..res {
            for k in 0..res {
                let p = [i, j, k].map(|v| -1.5 + 3.0 * (v as f32 + 0.5) / res as f32);
                binaries[(i * res + j) * res + k] = p.iter().map(|x| x * x).sum::<f32>() < 0.25;
            }
        }
    }
    let u = uniform(RAYS * 3, 7);
    let mut origins = Vec::with_capacity(RAYS * 3);
    let mut dirs = Vec::with_capacity(RAYS * 3);
    for r in 0..RAYS {
        let a = u[3 * r] * std::f32::consts::TAU;
        let o = [4.0 * a.cos(), 4.0 * a.sin(), 0.5];
        let target = [u[3 * r + 1] * 2.0 - 1.0, u[3 * r + 2] * 2.0 - 1.0, 0.0];
        let d: Vec<f32> = (0..3).map(|k| target[k] - o[k]).collect();
        let n = (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt();
        origins.extend_from_slice(&o);
        dirs.extend(d.iter().map(|v| v / n));
    }
    let params = MarchParams {
        step: 3f32.sqrt() * 3.0 / 1024.0,
        cone_angle: 0.0,
    };
    let mut g = c.benchmark_group("occupancy_grid");
    g.throughput(Throughput::Elements(RAYS as u64));
    g.bench_function("march_65536_rays_128cube", |b| {
        b.iter(|| {
            march(
                &origins,
                &dirs,
                &[0.0],
                &[1e10],
                &binaries,
                &spec,
                params,
                None,
            )
            .unwrap()
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = bench_volrend, bench_sampling, bench_march
}
criterion_main!(benches);
