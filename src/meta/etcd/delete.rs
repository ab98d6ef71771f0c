//! Deleting on etcd: the tombstone, and removing a record with its keys.

use chrono::DateTime;
use etcd_client::{Compare, CompareOp, Txn, TxnOp};

use super::{
    EtcdStore, Record, Swap, fence_key, first_kvs, legacy_key, record_key, time_key, to_json,
    two_gets,
};
use crate::meta::{Claim, MetaError, MetaResult, VideoStatus};

impl EtcdStore {
    pub async fn remove_video(&self, id: &str) -> MetaResult<()> {
        let rkey = record_key(id);
        let what = format!("removing video {id:?}");
        // The record names the time key to remove with it; a record changed meanwhile
        // (removed and claimed again) is read again.
        self.read_compare_swap(&what, &[rkey.as_str()], |resp| {
            let mut ops = vec![
                TxnOp::delete(legacy_key(id), None),
                TxnOp::delete(rkey.as_str(), None),
            ];
            let guard = match first_kvs(resp).first() {
                Some(kv) => {
                    if let Ok(record) = serde_json::from_slice::<Record>(kv.value()) {
                        ops.push(TxnOp::delete(time_key(id, record.uploaded_at), None));
                    }
                    Compare::mod_revision(rkey.as_str(), CompareOp::Equal, kv.mod_revision())
                }
                None => Compare::create_revision(rkey.as_str(), CompareOp::Equal, 0),
            };
            Ok(Swap::Write {
                txn: Txn::new().when([guard]).and_then(ops),
                answer: (),
            })
        })
        .await
    }

    pub async fn release_claim(&self, claim: &Claim, may_still_land: bool) -> MetaResult<()> {
        let rkey = record_key(&claim.id);
        let what = format!("releasing the claim on video {:?}", claim.id);
        if may_still_land {
            // First, so that the claim cannot land after the record is found missing.
            let fence = TxnOp::put(fence_key(&claim.token), claim.id.as_str(), None);
            self.txn(&what, Txn::new().and_then([fence])).await?;
        }
        self.read_compare_swap(&what, &[rkey.as_str()], |resp| {
            let Some(kv) = first_kvs(resp).into_iter().next() else {
                return Ok(Swap::Done(()));
            };
            let record = match serde_json::from_slice::<Record>(kv.value()) {
                Ok(record) if record.claim == claim.token => record,
                // Another upload's (or unreadable): not this claim's to remove.
                _ => return Ok(Swap::Done(())),
            };
            let guard = Compare::mod_revision(rkey.as_str(), CompareOp::Equal, kv.mod_revision());
            let ops = [
                TxnOp::delete(legacy_key(&claim.id), None),
                TxnOp::delete(rkey.as_str(), None),
                TxnOp::delete(time_key(&claim.id, record.uploaded_at), None),
            ];
            Ok(Swap::Write {
                txn: Txn::new().when([guard]).and_then(ops),
                answer: (),
            })
        })
        .await
    }

    pub async fn begin_delete(&self, id: &str) -> MetaResult<VideoStatus> {
        let (rkey, lkey) = (record_key(id), legacy_key(id));
        let what = format!("deleting video {id:?}");
        self.read_compare_swap(&what, &[lkey.as_str(), rkey.as_str()], |resp| {
            let (legacy, records) = two_gets(resp);
            let (record, guard) = match (records.first(), legacy.first()) {
                (Some(kv), _) => {
                    let record: Record = serde_json::from_slice(kv.value())
                        .map_err(|e| MetaError::Internal(format!("bad record for {id:?}: {e}")))?;
                    let guard =
                        Compare::mod_revision(rkey.as_str(), CompareOp::Equal, kv.mod_revision());
                    (record, guard)
                }
                // A video of the original system: only its key exists.
                (None, Some(kv)) => {
                    let text = String::from_utf8_lossy(kv.value());
                    let record = Record {
                        uploaded_at: crate::meta::parse_time(&text).unwrap_or(DateTime::UNIX_EPOCH),
                        status: VideoStatus::Ready,
                        details: None,
                        claim: String::new(),
                    };
                    let guard =
                        Compare::mod_revision(lkey.as_str(), CompareOp::Equal, kv.mod_revision());
                    (record, guard)
                }
                (None, None) => return Err(MetaError::NotFound(id.to_owned())),
            };
            let previous = record.status;
            if previous.in_upload() {
                return Ok(Swap::Done(previous));
            }
            let tombstone = Record {
                status: VideoStatus::Deleting,
                ..record
            };
            let txn = Txn::new().when([guard]).and_then([
                TxnOp::put(rkey.as_str(), to_json(&tombstone)?, None),
                TxnOp::put(time_key(id, tombstone.uploaded_at), "", None),
                TxnOp::delete(lkey.as_str(), None),
            ]);
            Ok(Swap::Write {
                txn,
                answer: previous,
            })
        })
        .await
    }
}
