//! The Meniscus event model and its encodings.
//!
//! An [`Event`] is what every listener produces and what every index stores. This crate is pure:
//! it parses and encodes, and never touches a socket or a file.
//!
//! # Layout
//! - `model`: [`Event`], [`Severity`], [`Facility`], [`Source`].
//! - `wire`: the prost encoding used in the Raft log and between nodes.
//! - `publish`: the JSON a publisher sends to `POST /v1/events`, validated into events.
//!
//! ```
//! use meniscus_event::{publish, Source};
//! let drafts = publish::parse_json(br#"[{"message": "disk full", "severity": "crit"}]"#, publish::Limits::default()).unwrap();
//! assert_eq!(drafts[0].message, "disk full");
//! ```
#![deny(missing_docs)]

mod error;
pub mod framing;
mod model;
pub mod publish;
pub mod syslog;
pub mod wire;

pub use error::{Error, Result};
pub use model::{Event, Facility, Severity, Source, StructuredData};
