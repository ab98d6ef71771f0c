//! The resync queue in SQLite: one row per key, the entry as JSON (it holds only work in
//! flight, so its shape can change without a migration: an unreadable row is dropped).

use rusqlite::{Connection, params};

use super::{SqliteStore, sql_error};
use crate::meta::{MetaError, MetaResult, ResyncEntry};

/// Created whatever the schema version, like the hints table.
pub(super) fn create_table(conn: &Connection) -> MetaResult<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS resync (
             key TEXT PRIMARY KEY,
             entry TEXT NOT NULL
         );",
    )
    .map_err(sql_error)
}

fn to_json(entry: &ResyncEntry) -> MetaResult<String> {
    serde_json::to_string(entry).map_err(|e| MetaError::Internal(e.to_string()))
}

impl SqliteStore {
    pub async fn queue_resync(&self, entry: &ResyncEntry) -> MetaResult<bool> {
        let (key, json) = (entry.key.clone(), to_json(entry)?);
        self.call(move |conn| {
            let added = conn
                .execute(
                    "INSERT INTO resync (key, entry) VALUES (?1, ?2) ON CONFLICT (key) DO NOTHING",
                    params![key, json],
                )
                .map_err(sql_error)?;
            Ok(added > 0)
        })
        .await
    }

    pub async fn update_resync(&self, entry: &ResyncEntry) -> MetaResult<()> {
        let (key, json) = (entry.key.clone(), to_json(entry)?);
        self.call(move |conn| {
            // Only an entry still queued: one removed meanwhile (healed by another web
            // node) stays removed.
            conn.execute(
                "UPDATE resync SET entry = ?2 WHERE key = ?1",
                params![key, json],
            )
            .map_err(sql_error)?;
            Ok(())
        })
        .await
    }

    pub async fn resync_queue(&self) -> MetaResult<Vec<ResyncEntry>> {
        self.call(|conn| {
            let mut stmt = conn
                .prepare("SELECT key, entry FROM resync ORDER BY key")
                .map_err(sql_error)?;
            let rows = stmt
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
                .map_err(sql_error)?;
            let mut entries = Vec::new();
            for row in rows {
                let (key, json) = row.map_err(sql_error)?;
                match serde_json::from_str::<ResyncEntry>(&json) {
                    Ok(entry) => entries.push(entry),
                    Err(e) => tracing::warn!(%key, error = %e, "unreadable resync entry; ignored"),
                }
            }
            Ok(entries)
        })
        .await
    }

    pub async fn remove_resync(&self, key: &str) -> MetaResult<()> {
        let key = key.to_owned();
        self.call(move |conn| {
            conn.execute("DELETE FROM resync WHERE key = ?1", params![key])
                .map_err(sql_error)?;
            Ok(())
        })
        .await
    }
}
