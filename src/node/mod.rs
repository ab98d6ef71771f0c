//! Storage node: files on local disk under `DIR/{videoId}/{filename}`, served over gRPC.
//!
//! - [`address`]: validation of node addresses given by operators.
//! - [`keys`]: validation of keys before they touch the file system.
//! - [`store`]: the on-disk store (atomic writes, SHA-256 of every file).
//! - [`service`]: the StorageService gRPC implementation over the store.
//! - [`server`]: `run(listener, dir, shutdown)`, with the health service.
//! - [`client`]: the client the web node, migration and console use.

pub mod address;
pub mod client;
pub mod keys;
pub mod server;
pub mod service;
pub mod store;
