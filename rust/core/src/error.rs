//! The one error type of the core crate.

/// An invalid argument, reported with the argument's name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// An array has the wrong length or two arrays disagree in size.
    #[error("{name}: {message}")]
    Shape { name: &'static str, message: String },
    /// An argument holds a value the kernel cannot use (NaN, negative count, unsorted indices...).
    #[error("{name}: {message}")]
    Value { name: &'static str, message: String },
}

/// Result alias used by every kernel.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// A shape error for argument `name`.
    pub fn shape(name: &'static str, message: impl Into<String>) -> Self {
        Error::Shape {
            name,
            message: message.into(),
        }
    }
    /// A value error for argument `name`.
    pub fn value(name: &'static str, message: impl Into<String>) -> Self {
        Error::Value {
            name,
            message: message.into(),
        }
    }
}

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
