//! Storage node: files on local disk under `DIR/{videoId}/{filename}`, served over gRPC.
//!
//! - [`address`]: validation of node addresses given by operators.
//! - [`keys`]: validation of keys before they touch the file system.
//! - [`store`]: the on-disk store (counts, deletes, listing), built from:
//!   [`record`] (the SHA-256 recorded for each file), [`write`] (atomic writes, disk
//!   reserve), [`verify`] (reads checked against the record), [`quarantine`] (corrupt
//!   copies moved aside), [`walk`] (listing and the start-up scan), [`disk`] (free space).
//! - [`index`]: every key held in ring order with a digest part, for arc listings and
//!   RangeDigests.
//! - [`scrub`]: the background re-hashing of every file at a bounded rate.
//! - [`identity`]: the store's creation marker, so a wiped or replaced folder shows.
//! - [`service`]: the StorageService gRPC implementation over the store.
//! - [`stat`]: a file's size and hashes, the store's counts, the chunk size.
//! - [`server`]: `run(listener, dir, shutdown)`, with the health service and the scrub.
//! - [`transfer`]: direct node-to-node copies on the node's port, over a
//!   [`copy_stream`] (plain TCP or TLS); [`secure_listen`]: the port with certificates.
//! - [`client`]: the client the web node, migration, repair and console use;
//!   [`call_metrics`]: the calls it makes, by node, RPC and outcome.
//! - [`metrics`]: the storage node's registry and its `--metrics-port` listener.
//! - [`older_version`]: RPCs withheld on request, to answer as an older node would.
//! - [`layout`]: filling a store folder from outside before its node starts (benchmarks).

pub mod address;
pub mod call_metrics;
pub mod client;
pub mod copy_stream;
pub mod disk;
pub mod identity;
pub mod index;
pub mod keys;
pub mod layout;
pub mod metrics;
pub mod older_version;
pub mod quarantine;
pub mod record;
pub mod scrub;
mod secure_listen;
pub mod server;
pub mod service;
pub mod stat;
pub mod store;
pub mod transfer;
pub mod verify;
pub mod walk;
pub mod write;

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
