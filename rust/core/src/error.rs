//! The one error type of the core crate. It depends on nothing else in the crate; the checks
//! that produce it live in [`crate::check`] and next to what they check.

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
