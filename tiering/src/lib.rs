//! Silt's object-storage layer. Today: choosing an [`object_store::ObjectStore`] by URL. The
//! segment format, uploads, manifests, tiered reads and the bucket reader land here next
//! (see `ARCHITECTURE.md`).
//!
//! It may use `silt-metadata`'s domain types but never talks to a metadata backend, and knows
//! nothing of the Kafka protocol.

mod error;
pub mod store;

pub use error::{Error, Result};
