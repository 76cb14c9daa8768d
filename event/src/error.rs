/// Errors from decoding or validating events.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The bytes are not valid JSON, or not the JSON shape an event needs.
    #[error("{0}")]
    InvalidJson(String),
    /// A field has a value that is not allowed.
    #[error("{field}: {message}")]
    InvalidField {
        /// Which field.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// Wire bytes could not be decoded.
    #[error("corrupt wire record: {0}")]
    Decode(#[from] prost::DecodeError),
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
