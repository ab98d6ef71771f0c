//! The video library: where a video's files live and what can be done to a video as a
//! whole. Both façades call it — the web node's HTTP routes and the admin service's RPCs —
//! so a listing or a delete means the same on either, and it imports neither.
//!
//! - [`content`]: a local folder or the ring of storage nodes, behind one interface.
//! - [`videos`]: the version in a video's URLs, the listing by pages, and the crash-safe
//!   delete (tombstone first, record last).
//! - [`deletes`]: the worker that finishes deletes left unfinished.

pub mod content;
pub mod deletes;
pub mod videos;
