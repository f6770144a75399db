//! Criterion benchmarks of the Gaussian-splatting kernels: 100,000 Gaussians, 256x256, one
//! camera 3 units away (the scene of `benches/splat.py`, plain RGB colours).

use criterion::{criterion_group, criterion_main, Criterion};
use raysplat_core::splat::{
    bin_tiles, project, project_backward, rasterize, rasterize_backward, CameraModel, Cameras,
    Gaussians, ProjectParams, Splats2d,
};

const N: usize = 100_000;
const SIZE: usize = 256;

#[path = "common.rs"]
mod common;
use common::uniform;

fn bench_splat(c: &mut Criterion) {
    let means: Vec<f32> = uniform(3 * N, 1).iter().map(|u| 2.0 * u - 1.0).collect();
    let quats: Vec<f32> = uniform(4 * N, 2).iter().map(|u| u - 0.5).collect();
    let (lo, hi) = (0.004f32.ln(), 0.02f32.ln());
    let scales: Vec<f32> = uniform(3 * N, 3)
        .iter()
        .map(|u| (lo + u * (hi - lo)).exp())
        .collect();
    let opacities: Vec<f32> = uniform(N, 4).iter().map(|u| 0.05 + 0.9 * u).collect();
    let colors = uniform(3 * N, 5);
    let mut viewmat = [0f32; 16];
    for i in 0..4 {
        viewmat[5 * i] = 1.0;
    }
    viewmat[11] = 3.0;
    let s = SIZE as f32;
    let ks = [256.0, 0.0, s / 2.0, 0.0, 256.0, s / 2.0, 0.0, 0.0, 1.0];
    let g = Gaussians {
        means: &means,
        quats: &quats,
        scales: &scales,
        opacities: &opacities,
    };
    let cams = Cameras {
        viewmats: &viewmat,
        ks: &ks,
        width: SIZE,
        height: SIZE,
    };
    let params = ProjectParams {
        near: 0.01,
        far: 1e10,
        eps2d: 0.3,
        antialiased: false,
        camera_model: CameraModel::Pinhole,
    };
    let p = project(&g, &cams, &params).unwrap();
    let splats = Splats2d {
        means2d: &p.means2d,
        conics: &p.conics,
        colors: &colors,
        opacities: &opacities,
        channels: 3,
    };
    let tiles = bin_tiles(&p.means2d, &p.radii, &p.depths, 1, SIZE, SIZE).unwrap();
    let img = rasterize(&splats, 1, SIZE, SIZE, &tiles).unwrap();
    let v_colors = vec![1f32; SIZE * SIZE * 3];
    let mut grp = c.benchmark_group("splat");
    grp.sample_size(20);
    grp.bench_function("project", |b| {
        b.iter(|| project(&g, &cams, &params).unwrap())
    });
    let fisheye = ProjectParams {
        camera_model: CameraModel::Fisheye,
        ..params
    };
    grp.bench_function("project_fisheye", |b| {
        b.iter(|| project(&g, &cams, &fisheye).unwrap())
    });
    let v_means2d = vec![1f32; 2 * N];
    let v_conics = vec![0.5f32; 3 * N];
    for (name, viewmats) in [
        ("project_backward", false),
        ("project_backward_viewmats", true),
    ] {
        grp.bench_function(name, |b| {
            b.iter(|| {
                project_backward(
                    &g,
                    &cams,
                    &params,
                    &p.radii,
                    Some(&v_means2d),
                    Some(&v_conics),
                    None,
                    None,
                    viewmats,
                )
                .unwrap()
            })
        });
    }
    grp.bench_function("bin_tiles", |b| {
        b.iter(|| bin_tiles(&p.means2d, &p.radii, &p.depths, 1, SIZE, SIZE).unwrap())
    });
    grp.bench_function("rasterize", |b| {
        b.iter(|| rasterize(&splats, 1, SIZE, SIZE, &tiles).unwrap())
    });
    grp.bench_function("rasterize_backward", |b| {
        b.iter(|| {
            rasterize_backward(
                &splats, 1, SIZE, SIZE, &tiles, &img.trans, &img.last, &v_colors, None, false,
            )
            .unwrap()
        })
    });
    grp.finish();
}

criterion_group!(benches, bench_splat);
criterion_main!(benches);
