//! Tritontube: a distributed video service.
//!
//! - [`proto`]: generated gRPC code for the storage and admin services (wire-compatible
//!   with the original Tritontube).
//! - [`ring`]: consistent-hash placement of keys on storage nodes (pure code).
//! - [`meta`]: the metadata store (videos, cluster state) in SQLite or etcd.
//! - [`node`]: the storage node (on-disk store, gRPC service) and its client.
//! - [`telemetry`]: tracing set-up.

pub mod meta;
pub mod node;
pub mod proto;
pub mod ring;
pub mod telemetry;
