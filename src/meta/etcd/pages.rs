//! Pages of the newest-first listing on etcd, through the time index
//! (`tritontube/by-time/{inverted time}/{id}`, see the parent module), and the indexing of
//! videos written without an entry.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;

use chrono::{DateTime, Utc};
use etcd_client::{
    Compare, CompareOp, GetOptions, KeyValue, Txn, TxnOp, TxnOpResponse, TxnResponse,
};

use super::{
    EtcdStore, LEGACY_PREFIX, RECORD_PREFIX, Record, first_kvs, legacy_key, merge, record_key,
    to_json,
};
use crate::meta::{Cursor, MetaResult, Page, Read, VideoStatus};

const TIME_PREFIX: &str = "tritontube/by-time/";
/// Keys read in one transaction when fetching a page's records (etcd allows 128 ops).
const GETS_PER_TXN: usize = 100;
/// Videos indexed in one transaction.
const INDEX_PER_TXN: usize = 50;

impl EtcdStore {
    /// One range read of the time index (limit + 1 keys), then the records of those ids.
    pub async fn list_videos_page(
        &self,
        limit: usize,
        after: Option<&Cursor>,
    ) -> MetaResult<Read<Page>> {
        if !self.inner.indexed.load(Ordering::Relaxed) {
            self.index_unindexed().await?;
        }
        let what = "listing a page of videos";
        let start = match after {
            // Strictly after the cursor's own key.
            Some(c) => format!("{}\0", time_key(&c.id, c.uploaded_at)),
            None => TIME_PREFIX.to_owned(),
        };
        let end = prefix_end(TIME_PREFIX);
        let fetch = i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX);
        let (resp, mut stale) = self
            .read_with(what, |serializable| {
                let mut opts = GetOptions::new()
                    .with_range(end.clone())
                    .with_limit(fetch)
                    .with_keys_only();
                if serializable {
                    opts = opts.with_serializable();
                }
                Txn::new().and_then([TxnOp::get(start.as_str(), Some(opts))])
            })
            .await?;
        let ids: Vec<String> = first_kvs(&resp)
            .iter()
            .filter_map(|kv| kv.key_str().ok().and_then(id_of_time_key).map(String::from))
            .collect();
        let mut videos = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(GETS_PER_TXN / 2) {
            let gets: Vec<(String, bool)> = chunk
                .iter()
                .flat_map(|id| [(legacy_key(id), false), (record_key(id), false)])
                .collect();
            let (resp, chunk_stale) = self.read(what, &gets).await?;
            stale |= chunk_stale;
            let mut gets = all_gets(&resp).into_iter();
            while let (Some(legacy), Some(records)) = (gets.next(), gets.next()) {
                // A video removed since the index was read is simply left out.
                videos.extend(merge(&legacy, &records));
            }
        }
        crate::meta::sort_newest_first(&mut videos);
        Ok(Read {
            value: crate::meta::page_of(videos, limit, None),
            stale,
        })
    }

    /// Gives every video without a time key one (the original's videos also get a Ready
    /// record), and drops time keys whose video is gone. Marks the store indexed once a
    /// pass finds nothing left to do on a fresh read.
    async fn index_unindexed(&self) -> MetaResult<()> {
        let (resp, stale) = self
            .read(
                "indexing videos by time",
                &[
                    (LEGACY_PREFIX.to_owned(), true),
                    (RECORD_PREFIX.to_owned(), true),
                    (TIME_PREFIX.to_owned(), true),
                ],
            )
            .await?;
        if stale {
            // Nothing can be written without a quorum; the pages make do meanwhile.
            return Ok(());
        }
        let mut gets = all_gets(&resp).into_iter();
        let legacy = gets.next().unwrap_or_default();
        let records = gets.next().unwrap_or_default();
        let indexed: HashSet<String> = gets
            .next()
            .unwrap_or_default()
            .iter()
            .filter_map(|kv| kv.key_str().ok().map(String::from))
            .collect();
        let revision = |kvs: &[KeyValue], prefix: &str| -> HashMap<String, i64> {
            kvs.iter()
                .filter_map(|kv| {
                    let id = kv.key_str().ok()?.strip_prefix(prefix)?;
                    Some((id.to_owned(), kv.mod_revision()))
                })
                .collect()
        };
        let (legacy_revs, record_revs) = (
            revision(&legacy, LEGACY_PREFIX),
            revision(&records, RECORD_PREFIX),
        );
        let videos = merge(&legacy, &records);
        let wanted: HashSet<String> = videos
            .iter()
            .map(|v| time_key(&v.id, v.uploaded_at))
            .collect();
        // One entry per change: its guards and its writes.
        let mut changes: Vec<(Vec<Compare>, Vec<TxnOp>)> = Vec::new();
        for video in &videos {
            let key = time_key(&video.id, video.uploaded_at);
            if indexed.contains(&key) {
                continue;
            }
            let rkey = record_key(&video.id);
            match record_revs.get(&video.id) {
                Some(rev) => changes.push((
                    vec![Compare::mod_revision(rkey.as_str(), CompareOp::Equal, *rev)],
                    vec![TxnOp::put(key, "", None)],
                )),
                None => {
                    let lkey = legacy_key(&video.id);
                    let record = Record {
                        uploaded_at: video.uploaded_at,
                        status: VideoStatus::Ready,
                        details: None,
                        claim: String::new(),
                    };
                    let rev = legacy_revs.get(&video.id).copied().unwrap_or(0);
                    changes.push((
                        vec![
                            Compare::create_revision(rkey.as_str(), CompareOp::Equal, 0),
                            Compare::mod_revision(lkey.as_str(), CompareOp::Equal, rev),
                        ],
                        vec![
                            TxnOp::put(rkey.as_str(), to_json(&record)?, None),
                            TxnOp::put(key, "", None),
                        ],
                    ));
                }
            }
        }
        for key in indexed.iter().filter(|k| !wanted.contains(*k)) {
            changes.push((
                vec![Compare::mod_revision(key.as_str(), CompareOp::Greater, 0)],
                vec![TxnOp::delete(key.as_str(), None)],
            ));
        }
        let what = "indexing videos by time";
        let mut lost_races = 0;
        for batch in changes.chunks(INDEX_PER_TXN) {
            let (guards, ops): (Vec<_>, Vec<_>) = batch.iter().cloned().unzip();
            let txn = Txn::new().when(guards.concat()).and_then(ops.concat());
            if self.txn(what, txn).await?.succeeded() {
                continue;
            }
            // Something in the batch changed meanwhile: one by one, skipping what lost.
            for (guards, ops) in batch.iter().cloned() {
                if !self
                    .txn(what, Txn::new().when(guards).and_then(ops))
                    .await?
                    .succeeded()
                {
                    lost_races += 1;
                }
            }
        }
        if !changes.is_empty() {
            tracing::info!(
                changes = changes.len(),
                lost_races,
                "indexed videos by time"
            );
        }
        if lost_races == 0 {
            self.inner.indexed.store(true, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// The key of `id` in the newest-first index.
pub(super) fn time_key(id: &str, at: DateTime<Utc>) -> String {
    let inverted = (i128::from(i64::MAX) - i128::from(crate::meta::unix_nanos(at))) as u64;
    format!("{TIME_PREFIX}{inverted:020}/{id}")
}

fn id_of_time_key(key: &str) -> Option<&str> {
    key.strip_prefix(TIME_PREFIX)?
        .split_once('/')
        .map(|(_, id)| id)
}

/// The first key after every key starting with `prefix`.
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    // The prefixes used here end in '/', never in 0xff.
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    end
}

/// The key-values of every get of a read transaction, in order.
fn all_gets(resp: &TxnResponse) -> Vec<Vec<KeyValue>> {
    resp.op_responses()
        .into_iter()
        .filter_map(|r| match r {
            TxnOpResponse::Get(mut g) => Some(g.take_kvs()),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_keys_sort_newest_first_then_by_id() {
        let t = |secs: i64| DateTime::from_timestamp(secs, 0).unwrap();
        let mut keys = [
            time_key("b", t(100)),
            time_key("a", t(100)),
            time_key("z", t(5)),
            time_key("old", t(-5)),
            time_key("new", t(2_000_000_000)),
        ];
        keys.sort();
        let ids: Vec<&str> = keys.iter().map(|k| id_of_time_key(k).unwrap()).collect();
        assert_eq!(ids, ["new", "a", "b", "z", "old"]);
        assert_eq!(id_of_time_key(&time_key("x/y", t(1))), Some("x/y"));
        assert_eq!(prefix_end("tritontube/by-time/"), b"tritontube/by-time0");
    }
}
