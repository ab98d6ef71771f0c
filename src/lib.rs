//! Tritontube: a distributed video service.
//!
//! - [`proto`]: generated gRPC code for the storage and admin services (wire-compatible
//!   with the original Tritontube).
//! - [`ring`]: consistent-hash placement of keys on storage nodes (pure code).
//! - [`node`]: the storage node (on-disk store, gRPC service) and its client.
//! - [`telemetry`]: tracing set-up.
//! - [`tui`]: the operator console (ratatui): cluster status, etcd health, migrations.

pub mod node;
pub mod proto;
pub mod ring;
pub mod telemetry;
pub mod tui;
