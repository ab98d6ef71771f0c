//! One pooled client per storage node, shared by everything in the web node that talks
//! to the nodes (uploads, playback, ring changes, the admin service).

use std::collections::HashMap;
use std::sync::Mutex;

use crate::node::client::{ClientError, StorageClient};
use crate::trust::tls::ClusterTls;

#[derive(Default)]
pub struct NodePool {
    clients: Mutex<HashMap<String, StorageClient>>,
    /// With the cluster's certificates, every node is called over mutual TLS.
    tls: Option<ClusterTls>,
}

impl NodePool {
    pub fn new(tls: Option<ClusterTls>) -> NodePool {
        NodePool {
            clients: Mutex::default(),
            tls,
        }
    }

    /// The client of `address`, created on first use (it connects lazily, so a node that
    /// is down shows up as failed calls, not here).
    pub fn client(&self, address: &str) -> Result<StorageClient, ClientError> {
        let mut clients = self.clients.lock().expect("client pool lock");
        if let Some(client) = clients.get(address) {
            return Ok(client.clone());
        }
        let client = StorageClient::connect_lazy_tls(address, self.tls.as_ref())?;
        clients.insert(address.to_string(), client.clone());
        Ok(client)
    }
}
