//! Criterion benchmarks of texture baking: 6 views of 512x512 pixels (about 60 % covered)
//! splatted into a 1024x1024 RGB texture, and dilation of the result.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use raysplat_core::bake::{bake, dilate, BakeRequest};

#[path = "common.rs"]
mod common;
use common::uniform;

const VIEWS: usize = 6;
const SIZE: usize = 512;
const TEX: usize = 1024;

fn bench_bake(c: &mut Criterion) {
    let p = VIEWS * SIZE * SIZE;
    let colors = uniform(p * 3, 1);
    let uv = uniform(p * 2, 2);
    let weights: Vec<f32> = uniform(p, 3)
        .iter()
        .map(|&x| if x < 0.4 { 0.0 } else { x })
        .collect();
    let req = BakeRequest {
        colors: &colors,
        uv: &uv,
        weights: &weights,
        channels: 3,
        height: TEX,
        width: TEX,
    };
    let mut g = c.benchmark_group("bake");
    g.sample_size(10);
    g.throughput(Throughput::Elements(p as u64));
    g.bench_function("bake_6x512^2_to_1024^2", |b| b.iter(|| bake(&req).unwrap()));
    let baked = bake(&req).unwrap();
    let filled: Vec<bool> = baked.texel_weight.iter().map(|&w| w > 0.0).collect();
    g.throughput(Throughput::Elements((TEX * TEX) as u64));
    g.bench_function("dilate_1024^2", |b| {
        b.iter(|| dilate(&baked.texture, &filled, TEX, TEX, 3, 64).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench_bake);
criterion_main!(benches);
