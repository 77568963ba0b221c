//! Silt's object-storage layer: the key layout, WAL objects, the segment object format,
//! manifests, uploads with retry, tiered reads through a foyer hybrid cache, and the bucket
//! reader that needs no broker. It works on any [`object_store::ObjectStore`].
//!
//! It may use `silt-metadata`'s domain types but never talks to a metadata backend, and knows
//! nothing of the Kafka protocol server (only of the record-batch format it stores).

pub mod batch;
mod error;
pub mod layout;
pub mod manifest;
pub mod read;
pub mod reader;
pub mod segment;
pub mod store;
pub mod wal_object;

pub use error::{Error, Result};
