//! The admin façade: the operators' gRPC service over the domain, and its client.
//!
//! It sits above the control plane ([`crate::cluster`]), the video library
//! ([`crate::library`]) and the metadata store ([`crate::meta`]), and is the only way
//! `tritontube admin` and the console reach a cluster. The domain below knows nothing of
//! gRPC: the mapping between its types and the wire's lives here.
//!
//! - [`service`]: the `VideoContentAdminService` and the credential check on every call.
//! - [`client`]: connecting to it, with the token or the operator's certificate.
//! - [`mapping`]: domain ↔ wire (plans, workers, progress, errors as `Status`).
//! - [`videos`]: the video RPCs (ListVideos, DeleteVideo) over the library.
//! - [`report`]: how a reply reads to a person, shared by the CLI and the console.

pub mod client;
pub mod mapping;
pub mod report;
pub mod service;
pub mod videos;

pub use crate::proto::admin as wire;
pub use client::{AdminClient, AdminClientError, connect, connect_tls};
pub use service::{AdminServer, AdminService, server};
