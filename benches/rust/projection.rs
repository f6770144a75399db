//! Criterion benchmarks of `project_to_views` at ProNeRF-8 sizes: 4,096 rays x 8 points x
//! 4 reference views into 20 LLFF-like 504x378 RGB cameras.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use raysplat_core::projection::{project_to_views, project_to_views_backward, Projection};

#[path = "common.rs"]
mod common;
use common::uniform;

const RAYS: usize = 4096;
const POINTS: usize = 8;
const VIEWS: usize = 4;
const CAMS: usize = 20;
const H: usize = 378;
const W: usize = 504;

fn bench_projection(c: &mut Criterion) {
    let mut c2w = Vec::with_capacity(CAMS * 12);
    let mut k = Vec::with_capacity(CAMS * 9);
    let shift = uniform(CAMS * 3, 1);
    for m in 0..CAMS {
        let t = &shift[m * 3..m * 3 + 3];
        c2w.extend_from_slice(&[
            1.0,
            0.0,
            0.0,
            0.2 * t[0] - 0.1,
            0.0,
            1.0,
            0.0,
            0.2 * t[1] - 0.1,
            0.0,
            0.0,
            1.0,
            0.2 * t[2] - 0.1,
        ]);
        k.extend_from_slice(&[
            400.0,
            0.0,
            W as f32 / 2.0,
            0.0,
            400.0,
            H as f32 / 2.0,
            0.0,
            0.0,
            1.0,
        ]);
    }
    let points: Vec<f32> = uniform(RAYS * POINTS * 3, 2)
        .chunks(3)
        .flat_map(|p| [p[0] - 0.5, p[1] - 0.5, -2.0 - p[2]])
        .collect();
    let view_ids: Vec<i64> = uniform(RAYS * VIEWS, 3)
        .iter()
        .map(|u| ((u * CAMS as f32) as i64).min(CAMS as i64 - 1))
        .collect();
    let images = uniform(CAMS * H * W * 3, 4);
    let p = Projection {
        points: &points,
        view_ids: &view_ids,
        c2w: &c2w,
        intrinsics: &k,
        images: &images,
        n_rays: RAYS,
        n_points: POINTS,
        n_views: VIEWS,
        n_cams: CAMS,
        height: H,
        width: W,
        channels: 3,
    };
    let v_samples = uniform(RAYS * POINTS * VIEWS * 3, 5);
    let mut g = c.benchmark_group("projection");
    g.throughput(Throughput::Elements((RAYS * POINTS * VIEWS) as u64));
    g.bench_function("project_to_views", |b| {
        b.iter(|| project_to_views(&p).unwrap())
    });
    g.bench_function("project_to_views_backward_points", |b| {
        b.iter(|| project_to_views_backward(&p, &v_samples, true, false).unwrap())
    });
    g.bench_function("project_to_views_backward_images", |b| {
        b.iter(|| project_to_views_backward(&p, &v_samples, false, true).unwrap())
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = bench_projection
}
criterion_main!(benches);
