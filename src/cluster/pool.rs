//! One pooled client per storage node, shared by everything in the web node that talks
//! to the nodes (uploads, playback, ring changes, the admin service).

use std::collections::HashMap;
use std::sync::Mutex;

use crate::node::client::{ClientError, StorageClient};

#[derive(Default)]
pub struct NodePool {
    clients: Mutex<HashMap<String, StorageClient>>,
}

impl NodePool {
    /// The client of `address`, created on first use (it connects lazily, so a node that
    /// is down shows up as failed calls, not here).
    pub fn client(&self, address: &str) -> Result<StorageClient, ClientError> {
        let mut clients = self.clients.lock().expect("client pool lock");
        if let Some(client) = clients.get(address) {
            return Ok(client.clone());
        }
        let client = StorageClient::connect_lazy(address)?;
        clients.insert(address.to_string(), client.clone());
        Ok(client)
    }
}
