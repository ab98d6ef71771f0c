//! Tritontube: a distributed video service.
//!
//! - [`proto`]: generated gRPC code for the storage and admin services (wire-compatible
//!   with the original Tritontube).
//! - [`ring`]: consistent-hash placement of keys on storage nodes (pure code).
//! - [`node`]: the storage node (on-disk store, gRPC service) and its client.
//! - [`meta`]: the metadata store (SQLite or etcd): videos, ring and migration journal.
//! - [`background`]: the one shape of background work: the `Worker` trait and its runner.
//! - [`cluster`]: the control plane: cluster state, workers, ring changes, repairs.
//! - [`library`]: the video library both façades call: content, listing, delete.
//! - [`admin`]: the admin façade: the operators' gRPC service, its client, the mapping.
//! - [`web`]: the web node, HTTP only: upload, transcode, playback.
//! - [`cli`]: command-line helpers (the original Go tools' single-dash flags).
//! - [`admin_cli`]: `tritontube admin`, the scriptable admin client.
//! - [`up`]: `tritontube up`, the whole system in one process.
//! - [`signals`]: graceful shutdown on Ctrl-C and SIGTERM.
//! - [`telemetry`]: tracing set-up.
//! - [`trust`]: the cluster's certificates and who may do what.
//! - [`tui`]: the operator console (ratatui): cluster status, etcd health, migrations.
//! - [`metrics`]: Prometheus metrics of the web node and the storage node.

pub mod admin;
pub mod admin_cli;
pub mod background;
pub mod cli;
pub mod cluster;
pub mod library;
pub mod meta;
pub mod metrics;
pub mod node;
pub mod proto;
pub mod ring;
pub mod signals;
pub mod telemetry;
pub mod trust;
pub mod tui;
pub mod up;
pub mod web;
