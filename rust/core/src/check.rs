//! Argument checks shared by the kernels: lengths and finiteness (the latter in parallel on
//! raysplat's pool). Kernel-specific checks live next to their kernels.

use crate::error::{Error, Result};

/// Fails unless `data.len() == expected`.
pub fn expect_len(name: &'static str, data_len: usize, expected: usize) -> Result<()> {
    if data_len != expected {
        return Err(Error::shape(
            name,
            format!("expected {expected} elements, got {data_len}"),
        ));
    }
    Ok(())
}

/// Fails if any element is NaN or infinite (checked in parallel).
pub fn expect_finite<T: crate::real::Real>(name: &'static str, data: &[T]) -> Result<()> {
    use rayon::prelude::*;
    let bad = crate::parallel::install(|| {
        data.par_chunks(1 << 14)
            .any(|chunk| chunk.iter().fold(false, |bad, v| bad | !v.is_finite()))
    });
    if bad {
        return Err(Error::value(name, "contains NaN or infinite values"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expect_len_names_the_argument() {
        assert!(expect_len("x", 3, 3).is_ok());
        let e = expect_len("x", 2, 3).unwrap_err();
        assert_eq!(e, Error::shape("x", "expected 3 elements, got 2"));
        assert_eq!(e.to_string(), "x: expected 3 elements, got 2");
    }

    #[test]
    fn expect_finite_finds_nan_and_inf_anywhere() {
        let mut v = vec![0.5f32; 100_000];
        assert!(expect_finite("v", &v).is_ok());
        assert!(expect_finite::<f64>("v", &[]).is_ok());
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            v[77_777] = bad;
            let e = expect_finite("v", &v).unwrap_err();
            assert_eq!(e.to_string(), "v: contains NaN or infinite values");
            v[77_777] = 0.5;
        }
    }
}
