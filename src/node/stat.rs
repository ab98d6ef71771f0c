//! What a node knows of what it stores, in the node's own terms: a file's size and
//! hashes, the store's counts, and the size of the chunks a file body moves in. The disk
//! store, the service and the client all speak these; the client re-exports them.

/// Size of the chunks a file is streamed in (read from disk, sent, received).
pub const CHUNK_BYTES: usize = 256 * 1024;

/// Size and SHA-256 (lowercase hex) of a stored file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileStat {
    pub size: u64,
    pub sha256: String,
    /// The CRC-32C recorded with the SHA-256, when the node reported one.
    pub crc32c: Option<u32>,
}

/// What a store holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeStats {
    pub file_count: u64,
    pub total_bytes: u64,
}
