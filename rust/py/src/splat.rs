//! Bindings of `raysplat_core::splat`: projection, spherical harmonics, tile binning and
//! rasterization, each with its backward. Float arguments are float32 or float64 (all alike);
//! `radii`/`last` are int32, tile offsets and ids int64. `n_cameras` splits the flat inputs.

use pyo3::prelude::*;
use raysplat_core::splat::{self, CameraModel, Cameras, Gaussians, ProjectParams, Splats2d, Tiles};

use crate::convert::{
    borrow, borrow_opt, detached, float_dtype, opt_slice, out, out_any, slice, to_py, with_float,
    Any, In,
};

type Five<'py> = (Any<'py>, Any<'py>, Any<'py>, Any<'py>, Any<'py>);

fn params(
    near: f64,
    far: f64,
    eps2d: f64,
    antialiased: bool,
    camera_model: &str,
) -> PyResult<ProjectParams> {
    Ok(ProjectParams {
        near,
        far,
        eps2d,
        antialiased,
        camera_model: CameraModel::parse(camera_model).map_err(to_py)?,
    })
}

/// Names of [`GaussianArgs`]'s arrays, in order.
const GAUSSIAN_ARGS: [&str; 6] = ["means", "quats", "scales", "opacities", "viewmats", "Ks"];

/// The borrowed Gaussian and camera arrays of `splat_project` and its backward.
struct GaussianArgs<'py, T: numpy::Element> {
    arrays: [In<'py, T>; 6],
}

impl<'py, T: numpy::Element> GaussianArgs<'py, T> {
    /// Borrows `(means, quats, scales, opacities, viewmats, Ks)` as contiguous `T` arrays.
    fn borrow(args: [&Any<'py>; 6]) -> PyResult<Self> {
        let [means, quats, scales, opacities, viewmats, ks] = args;
        let n = GAUSSIAN_ARGS;
        Ok(Self {
            arrays: [
                borrow::<T>(means, n[0])?,
                borrow::<T>(quats, n[1])?,
                borrow::<T>(scales, n[2])?,
                borrow::<T>(opacities, n[3])?,
                borrow::<T>(viewmats, n[4])?,
                borrow::<T>(ks, n[5])?,
            ],
        })
    }

    /// The core views of the borrowed arrays.
    fn views(&self, width: usize, height: usize) -> PyResult<(Gaussians<'_, T>, Cameras<'_, T>)> {
        let a = &self.arrays;
        let g = Gaussians {
            means: slice(&a[0], GAUSSIAN_ARGS[0])?,
            quats: slice(&a[1], GAUSSIAN_ARGS[1])?,
            scales: slice(&a[2], GAUSSIAN_ARGS[2])?,
            opacities: slice(&a[3], GAUSSIAN_ARGS[3])?,
        };
        let cams = Cameras {
            viewmats: slice(&a[4], GAUSSIAN_ARGS[4])?,
            ks: slice(&a[5], GAUSSIAN_ARGS[5])?,
            width,
            height,
        };
        Ok((g, cams))
    }
}

/// EWA projection: `(means2d, conics, depths, radii, compensations)`, each flat `[C, N, ...]`;
/// `camera_model` is "pinhole", "ortho" or "fisheye".
#[pyfunction]
#[pyo3(signature = (means, quats, scales, opacities, viewmats, ks, width, height, near, far, eps2d, antialiased, camera_model="pinhole"))]
#[allow(clippy::too_many_arguments)]
pub fn splat_project<'py>(
    py: Python<'py>,
    means: Any<'py>,
    quats: Any<'py>,
    scales: Any<'py>,
    opacities: Any<'py>,
    viewmats: Any<'py>,
    ks: Any<'py>,
    width: usize,
    height: usize,
    near: f64,
    far: f64,
    eps2d: f64,
    antialiased: bool,
    camera_model: &str,
) -> PyResult<Five<'py>> {
    with_float!(float_dtype(&means, "means")?, T => {
        let a = GaussianArgs::<T>::borrow([&means, &quats, &scales, &opacities, &viewmats, &ks])?;
        let (g, cams) = a.views(width, height)?;
        let p = params(near, far, eps2d, antialiased, camera_model)?;
        let r = detached(py, || splat::project(&g, &cams, &p))?;
        Ok((
            out_any(py, r.means2d),
            out_any(py, r.conics),
            out_any(py, r.depths),
            out(py, r.radii).into_any(),
            out_any(py, r.compensations),
        ))
    })
}

/// Gradients `(means, quats, scales, viewmats or None)` of `splat_project` (the viewmats' `[C, 4,
/// 4]` only with `viewmats_grad`).
#[pyfunction]
#[pyo3(signature = (means, quats, scales, opacities, viewmats, ks, width, height, eps2d, radii, v_means2d, v_conics, v_depths, v_compensations, camera_model="pinhole", viewmats_grad=false))]
#[allow(clippy::too_many_arguments)]
pub fn splat_project_backward<'py>(
    py: Python<'py>,
    means: Any<'py>,
    quats: Any<'py>,
    scales: Any<'py>,
    opacities: Any<'py>,
    viewmats: Any<'py>,
    ks: Any<'py>,
    width: usize,
    height: usize,
    eps2d: f64,
    radii: In<'py, i32>,
    v_means2d: Option<Any<'py>>,
    v_conics: Option<Any<'py>>,
    v_depths: Option<Any<'py>>,
    v_compensations: Option<Any<'py>>,
    camera_model: &str,
    viewmats_grad: bool,
) -> PyResult<(Any<'py>, Any<'py>, Any<'py>, Option<Any<'py>>)> {
    with_float!(float_dtype(&means, "means")?, T => {
        let a = GaussianArgs::<T>::borrow([&means, &quats, &scales, &opacities, &viewmats, &ks])?;
        let (g, cams) = a.views(width, height)?;
        let p = params(0.0, 0.0, eps2d, false, camera_model)?;
        let vm = borrow_opt::<T>(&v_means2d, "v_means2d")?;
        let vc = borrow_opt::<T>(&v_conics, "v_conics")?;
        let vd = borrow_opt::<T>(&v_depths, "v_depths")?;
        let vp = borrow_opt::<T>(&v_compensations, "v_compensations")?;
        let r = slice(&radii, "radii")?;
        let (vm, vc) = (opt_slice(&vm, "v_means2d")?, opt_slice(&vc, "v_conics")?);
        let (vd, vp) = (opt_slice(&vd, "v_depths")?, opt_slice(&vp, "v_compensations")?);
        let gr = detached(py, || {
            splat::project_backward(&g, &cams, &p, r, vm, vc, vd, vp, viewmats_grad)
        })?;
        let vv = viewmats_grad.then(|| out_any(py, gr.viewmats));
        Ok((out_any(py, gr.means), out_any(py, gr.quats), out_any(py, gr.scales), vv))
    })
}

/// SH colours `[C, N, 3]` of coefficients `[N, K, 3]` seen from `campos` `[C, 3]`.
#[pyfunction]
pub fn splat_sh<'py>(
    py: Python<'py>,
    degree: usize,
    coeffs: Any<'py>,
    k: usize,
    means: Any<'py>,
    campos: Any<'py>,
) -> PyResult<Any<'py>> {
    with_float!(float_dtype(&coeffs, "colors")?, T => {
        let (co, me, cp) = (borrow::<T>(&coeffs, "colors")?, borrow::<T>(&means, "means")?, borrow::<T>(&campos, "campos")?);
        let (co, me, cp) = (slice(&co, "colors")?, slice(&me, "means")?, slice(&cp, "campos")?);
        Ok(out_any(py, detached(py, || splat::sh_eval(degree, co, k, me, cp))?))
    })
}

/// Gradients `(coeffs, means)` of `splat_sh`.
#[pyfunction]
pub fn splat_sh_backward<'py>(
    py: Python<'py>,
    degree: usize,
    coeffs: Any<'py>,
    k: usize,
    means: Any<'py>,
    campos: Any<'py>,
    v_colors: Any<'py>,
) -> PyResult<(Any<'py>, Any<'py>)> {
    with_float!(float_dtype(&coeffs, "colors")?, T => {
        let a = [
            borrow::<T>(&coeffs, "colors")?,
            borrow::<T>(&means, "means")?,
            borrow::<T>(&campos, "campos")?,
            borrow::<T>(&v_colors, "v_colors")?,
        ];
        let (co, me) = (slice(&a[0], "colors")?, slice(&a[1], "means")?);
        let (cp, vc) = (slice(&a[2], "campos")?, slice(&a[3], "v_colors")?);
        let (gc, gm) = detached(py, || splat::sh_backward(degree, co, k, me, cp, vc))?;
        Ok((out_any(py, gc), out_any(py, gm)))
    })
}

type RasterOut<'py> = (
    Any<'py>,
    Any<'py>,
    Any<'py>,
    Any<'py>,
    Any<'py>,
    Any<'py>,
    Any<'py>,
);

/// Tile binning + compositing: `(colors, alphas, trans, last, isect_offsets, flatten_ids,
/// tiles_per_gauss)`.
#[pyfunction]
#[pyo3(signature = (means2d, conics, colors, opacities, radii, depths, n_cameras, width, height, channels))]
#[allow(clippy::too_many_arguments)]
pub fn splat_rasterize<'py>(
    py: Python<'py>,
    means2d: Any<'py>,
    conics: Any<'py>,
    colors: Any<'py>,
    opacities: Any<'py>,
    radii: In<'py, i32>,
    depths: Any<'py>,
    n_cameras: usize,
    width: usize,
    height: usize,
    channels: usize,
) -> PyResult<RasterOut<'py>> {
    with_float!(float_dtype(&means2d, "means2d")?, T => {
        let a = [
            borrow::<T>(&means2d, "means2d")?,
            borrow::<T>(&conics, "conics")?,
            borrow::<T>(&colors, "colors")?,
            borrow::<T>(&opacities, "opacities")?,
            borrow::<T>(&depths, "depths")?,
        ];
        let s = Splats2d {
            means2d: slice(&a[0], "means2d")?,
            conics: slice(&a[1], "conics")?,
            colors: slice(&a[2], "colors")?,
            opacities: slice(&a[3], "opacities")?,
            channels,
        };
        let (r, d) = (slice(&radii, "radii")?, slice(&a[4], "depths")?);
        let (img, tiles) = detached(py, || {
            let tiles = splat::bin_tiles(s.means2d, r, d, n_cameras, width, height)?;
            let img = splat::rasterize(&s, n_cameras, width, height, &tiles)?;
            Ok((img, tiles))
        })?;
        Ok((
            out_any(py, img.colors),
            out_any(py, img.alphas),
            out_any(py, img.trans),
            out(py, img.last).into_any(),
            out(py, tiles.offsets).into_any(),
            out(py, tiles.flatten_ids).into_any(),
            out(py, tiles.tiles_per_gauss).into_any(),
        ))
    })
}

/// Gradients `(means2d, conics, colors, opacities, absgrad or None)` of `splat_rasterize`.
#[pyfunction]
#[pyo3(signature = (means2d, conics, colors, opacities, n_cameras, width, height, channels, isect_offsets, flatten_ids, trans, last, v_colors, v_alphas, absgrad))]
#[allow(clippy::too_many_arguments)]
pub fn splat_rasterize_backward<'py>(
    py: Python<'py>,
    means2d: Any<'py>,
    conics: Any<'py>,
    colors: Any<'py>,
    opacities: Any<'py>,
    n_cameras: usize,
    width: usize,
    height: usize,
    channels: usize,
    isect_offsets: In<'py, i64>,
    flatten_ids: In<'py, i64>,
    trans: Any<'py>,
    last: In<'py, i32>,
    v_colors: Any<'py>,
    v_alphas: Option<Any<'py>>,
    absgrad: bool,
) -> PyResult<(Any<'py>, Any<'py>, Any<'py>, Any<'py>, Option<Any<'py>>)> {
    let tiles = Tiles {
        tile_w: width.div_ceil(splat::TILE),
        tile_h: height.div_ceil(splat::TILE),
        offsets: slice(&isect_offsets, "isect_offsets")?.to_vec(),
        flatten_ids: slice(&flatten_ids, "flatten_ids")?.to_vec(),
        tiles_per_gauss: Vec::new(),
    };
    let last = slice(&last, "last")?;
    with_float!(float_dtype(&means2d, "means2d")?, T => {
        let a = [
            borrow::<T>(&means2d, "means2d")?,
            borrow::<T>(&conics, "conics")?,
            borrow::<T>(&colors, "colors")?,
            borrow::<T>(&opacities, "opacities")?,
            borrow::<T>(&trans, "trans")?,
            borrow::<T>(&v_colors, "v_colors")?,
        ];
        let s = Splats2d {
            means2d: slice(&a[0], "means2d")?,
            conics: slice(&a[1], "conics")?,
            colors: slice(&a[2], "colors")?,
            opacities: slice(&a[3], "opacities")?,
            channels,
        };
        let (tr, vc) = (slice(&a[4], "trans")?, slice(&a[5], "v_colors")?);
        let va = borrow_opt::<T>(&v_alphas, "v_alphas")?;
        let va = opt_slice(&va, "v_alphas")?;
        let g = detached(py, || {
            splat::rasterize_backward(&s, n_cameras, width, height, &tiles, tr, last, vc, va, absgrad)
        })?;
        Ok((
            out_any(py, g.means2d),
            out_any(py, g.conics),
            out_any(py, g.colors),
            out_any(py, g.opacities),
            g.absgrad.map(|v| out_any(py, v)),
        ))
    })
}
