//! The resync queue in etcd: `tritontube/resync/{key}` → the entry as JSON, shared by
//! every web node on the cluster.

use etcd_client::{Compare, CompareOp, Txn, TxnOp};

use super::{EtcdStore, first_kvs};
use crate::meta::{MetaError, MetaResult, ResyncEntry};

const RESYNC_PREFIX: &str = "tritontube/resync/";

fn resync_key(key: &str) -> String {
    format!("{RESYNC_PREFIX}{key}")
}

fn to_json(entry: &ResyncEntry) -> MetaResult<String> {
    serde_json::to_string(entry).map_err(|e| MetaError::Internal(e.to_string()))
}

impl EtcdStore {
    pub async fn queue_resync(&self, entry: &ResyncEntry) -> MetaResult<bool> {
        let name = resync_key(&entry.key);
        let txn = Txn::new()
            .when([Compare::create_revision(name.as_str(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(name.as_str(), to_json(entry)?, None)]);
        Ok(self.txn("queueing a resync", txn).await?.succeeded())
    }

    pub async fn update_resync(&self, entry: &ResyncEntry) -> MetaResult<()> {
        let name = resync_key(&entry.key);
        // Only an entry still queued: one removed meanwhile stays removed.
        let txn = Txn::new()
            .when([Compare::create_revision(
                name.as_str(),
                CompareOp::Greater,
                0,
            )])
            .and_then([TxnOp::put(name.as_str(), to_json(entry)?, None)]);
        self.txn("updating a resync", txn).await?;
        Ok(())
    }

    pub async fn resync_queue(&self) -> MetaResult<Vec<ResyncEntry>> {
        let (resp, _) = self
            .read(
                "listing the resync queue",
                &[(RESYNC_PREFIX.to_owned(), true)],
            )
            .await?;
        let mut entries = Vec::new();
        for kv in first_kvs(&resp) {
            match serde_json::from_slice::<ResyncEntry>(kv.value()) {
                Ok(entry) => entries.push(entry),
                Err(e) => {
                    let name = String::from_utf8_lossy(kv.key());
                    tracing::warn!(%name, error = %e, "unreadable resync entry; ignored")
                }
            }
        }
        Ok(entries)
    }

    pub async fn remove_resync(&self, key: &str) -> MetaResult<()> {
        let txn = Txn::new().and_then([TxnOp::delete(resync_key(key), None)]);
        self.txn("removing a resync", txn).await?;
        Ok(())
    }
}
