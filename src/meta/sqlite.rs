//! The metadata store in one SQLite file.
//!
//! The original system's table `videos(id TEXT PRIMARY KEY, uploaded_at DATETIME NOT NULL)`
//! is kept as it is; the columns this system adds come in by migration (`PRAGMA
//! user_version`), with defaults that make the original's rows Ready videos without
//! details. `uploaded_at` is written as RFC 3339 text in UTC, which the original's Go
//! driver (mattn/go-sqlite3) reads back as a `time.Time`.
//!
//! One dedicated thread owns the connection and runs every statement, so nothing blocks
//! an async thread and statements never contend for the connection.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use futures::StreamExt;
use futures::stream::BoxStream;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, ErrorCode, OptionalExtension, params};
use tokio::sync::oneshot;

mod resync;

use super::{
    Caption, Claim, Cursor, Hint, MetaError, MetaResult, Page, Read, Video, VideoDetails,
    VideoStatus, parse_time, unix_nanos,
};

/// How long a statement waits for another process's lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The schema version this code writes; see [`migrate`].
const SCHEMA_VERSION: i64 = 3;

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// A handle on the store; clones share the connection thread, which ends when the last
/// handle is dropped.
#[derive(Clone)]
pub struct SqliteStore {
    jobs: mpsc::Sender<Job>,
    path: PathBuf,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish()
    }
}

impl SqliteStore {
    /// Opens the file at `path`, creating it and bringing its schema up to date.
    pub async fn open(path: &Path) -> MetaResult<Self> {
        let path = path.to_path_buf();
        let (jobs, rx) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = oneshot::channel();
        let thread_path = path.clone();
        std::thread::Builder::new()
            .name("sqlite-meta".into())
            .spawn(move || {
                let mut conn = match open_connection(&thread_path) {
                    Ok(conn) => {
                        let _ = ready_tx.send(Ok(()));
                        conn
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                // Ends when every SqliteStore handle is gone.
                while let Ok(job) = rx.recv() {
                    job(&mut conn);
                }
            })
            .map_err(|e| MetaError::Internal(format!("cannot start the SQLite thread: {e}")))?;
        ready_rx
            .await
            .map_err(|_| MetaError::Internal("the SQLite thread stopped".into()))??;
        tracing::info!(path = %path.display(), "metadata store: SQLite");
        Ok(SqliteStore { jobs, path })
    }

    /// The file this store uses.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on the connection thread and waits for its answer.
    async fn call<T, F>(&self, f: F) -> MetaResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> MetaResult<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        self.jobs
            .send(Box::new(move |conn| {
                let _ = tx.send(f(conn));
            }))
            .map_err(|_| MetaError::Internal("the SQLite thread stopped".into()))?;
        rx.await
            .map_err(|_| MetaError::Internal("the SQLite thread stopped".into()))?
    }

    pub async fn claim_video(&self, claim: &Claim) -> MetaResult<()> {
        let (id, at) = (claim.id.clone(), claim.at);
        self.call(move |conn| {
            let res = conn.execute(
                "INSERT INTO videos (id, uploaded_at, status, uploaded_ns) VALUES (?1, ?2, ?3, ?4)",
                params![
                    id,
                    format_time(at),
                    VideoStatus::Processing.as_str(),
                    unix_nanos(at)
                ],
            );
            match res {
                Ok(_) => Ok(()),
                Err(e) if is_constraint(&e) => Err(MetaError::AlreadyExists(id)),
                Err(e) => Err(sql_error(e)),
            }
        })
        .await
    }

    /// Moves an upload's record to `status` (Playable or Ready) with `details`.
    pub async fn set_details(
        &self,
        id: &str,
        status: VideoStatus,
        details: &VideoDetails,
    ) -> MetaResult<()> {
        let id = id.to_owned();
        let d = details.clone();
        let renditions = serde_json::to_string(&d.renditions)
            .map_err(|e| MetaError::Internal(format!("encoding renditions: {e}")))?;
        self.call(move |conn| {
            let changed = conn
                .execute(
                    "UPDATE videos SET status = ?2, duration_seconds = ?3, source_bytes = ?4,
                         file_count = ?5, stored_bytes = ?6, width = ?7, height = ?8,
                         renditions = ?9, poster = ?10, storyboard = ?11
                     WHERE id = ?1 AND status IN ('processing', 'playable')",
                    params![
                        id,
                        status.as_str(),
                        d.duration_seconds,
                        to_i64(d.source_bytes),
                        to_i64(d.file_count),
                        to_i64(d.stored_bytes),
                        d.width,
                        d.height,
                        renditions,
                        d.poster,
                        d.storyboard,
                    ],
                )
                .map_err(sql_error)?;
            if changed == 0 {
                return Err(MetaError::NotFound(id));
            }
            Ok(())
        })
        .await
    }

    pub async fn set_caption(
        &self,
        id: &str,
        lang: &str,
        caption: Option<&Caption>,
    ) -> MetaResult<Option<Caption>> {
        let (id, lang, caption) = (id.to_owned(), lang.to_owned(), caption.cloned());
        self.call(move |conn| {
            let tx = conn.transaction().map_err(sql_error)?;
            let row: Option<(String, Option<String>)> = tx
                .query_row(
                    "SELECT status, captions FROM videos WHERE id = ?1",
                    params![id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(sql_error)?;
            let Some((status, captions)) = row else {
                return Err(MetaError::NotFound(id));
            };
            if !VideoStatus::parse(&status).watchable() {
                return Err(MetaError::NotFound(id));
            }
            let mut captions: Vec<Caption> = captions
                .and_then(|text| serde_json::from_str(&text).ok())
                .unwrap_or_default();
            let old = super::replace_caption(&mut captions, &lang, caption.as_ref());
            let text = serde_json::to_string(&captions)
                .map_err(|e| MetaError::Internal(format!("encoding captions: {e}")))?;
            tx.execute(
                "UPDATE videos SET captions = ?2 WHERE id = ?1",
                params![id, text],
            )
            .map_err(sql_error)?;
            tx.commit().map_err(sql_error)?;
            Ok(old)
        })
        .await
    }

    pub async fn remove_video(&self, id: &str) -> MetaResult<()> {
        let id = id.to_owned();
        self.call(move |conn| {
            conn.execute("DELETE FROM videos WHERE id = ?1", params![id])
                .map_err(sql_error)?;
            Ok(())
        })
        .await
    }

    /// One writer, so no claim is ambiguous here (nothing can land later): the claim's
    /// upload time (in ns) tells its row from a later claim of the same id.
    pub async fn release_claim(&self, claim: &Claim, _may_still_land: bool) -> MetaResult<()> {
        let (id, nanos) = (claim.id.clone(), unix_nanos(claim.at));
        self.call(move |conn| {
            conn.execute(
                "DELETE FROM videos WHERE id = ?1 AND uploaded_ns = ?2",
                params![id, nanos],
            )
            .map_err(sql_error)?;
            Ok(())
        })
        .await
    }

    pub async fn begin_delete(&self, id: &str) -> MetaResult<VideoStatus> {
        let id = id.to_owned();
        self.call(move |conn| {
            let tx = conn.transaction().map_err(sql_error)?;
            let status: Option<String> = tx
                .query_row(
                    "SELECT status FROM videos WHERE id = ?1",
                    params![id],
                    |r| r.get(0),
                )
                .optional()
                .map_err(sql_error)?;
            let Some(status) = status.map(|s| VideoStatus::parse(&s)) else {
                return Err(MetaError::NotFound(id));
            };
            if status == VideoStatus::Ready {
                tx.execute(
                    "UPDATE videos SET status = ?2 WHERE id = ?1",
                    params![id, VideoStatus::Deleting.as_str()],
                )
                .map_err(sql_error)?;
            }
            tx.commit().map_err(sql_error)?;
            Ok(status)
        })
        .await
    }

    pub async fn list_videos_page(
        &self,
        limit: usize,
        after: Option<&Cursor>,
    ) -> MetaResult<Read<Page>> {
        let after = after.cloned();
        let page = self
            .call(move |conn| {
                backfill_sort_keys(conn)?;
                let (before_ns, after_id) = match &after {
                    Some(c) => (unix_nanos(c.uploaded_at), c.id.clone()),
                    None => (i64::MAX, String::new()),
                };
                // Equal times order by id: `>=` on the time, then only later ids at the
                // cursor's own time. The index (uploaded_ns DESC, id) answers it.
                let mut stmt = conn
                    .prepare_cached(&format!(
                        "{SELECT_VIDEO} WHERE uploaded_ns <= ?1
                             AND (uploaded_ns < ?1 OR id > ?2)
                         ORDER BY uploaded_ns DESC, id LIMIT ?3"
                    ))
                    .map_err(sql_error)?;
                let fetch = i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX);
                let rows = stmt
                    .query_map(params![before_ns, after_id, fetch], row_to_video)
                    .map_err(sql_error)?;
                let videos = rows.collect::<Result<Vec<_>, _>>().map_err(sql_error)?;
                Ok(super::page_of(videos, limit, None))
            })
            .await?;
        Ok(Read {
            value: page,
            stale: false,
        })
    }

    pub async fn get_video(&self, id: &str) -> MetaResult<Read<Option<Video>>> {
        let id = id.to_owned();
        let video = self
            .call(move |conn| {
                let mut stmt = conn
                    .prepare_cached(&format!("{SELECT_VIDEO} WHERE id = ?1"))
                    .map_err(sql_error)?;
                stmt.query_row(params![id], row_to_video)
                    .optional()
                    .map_err(sql_error)
            })
            .await?;
        Ok(Read {
            value: video,
            stale: false,
        })
    }

    pub async fn list_videos(&self) -> MetaResult<Read<Vec<Video>>> {
        let mut videos = self
            .call(|conn| {
                let mut stmt = conn
                    .prepare_cached(&format!("{SELECT_VIDEO} ORDER BY uploaded_at DESC, id"))
                    .map_err(sql_error)?;
                let rows = stmt.query_map([], row_to_video).map_err(sql_error)?;
                rows.collect::<Result<Vec<_>, _>>().map_err(sql_error)
            })
            .await?;
        // The SQL order is textual; rows written by the original with other offsets or
        // layouts only sort right once parsed.
        super::sort_newest_first(&mut videos);
        Ok(Read {
            value: videos,
            stale: false,
        })
    }

    pub async fn load_cluster_state(&self) -> MetaResult<Option<String>> {
        self.call(|conn| {
            conn.query_row("SELECT json FROM cluster_state WHERE id = 0", [], |r| {
                r.get::<_, String>(0)
            })
            .optional()
            .map_err(sql_error)
        })
        .await
    }

    pub async fn save_cluster_state(&self, json: &str) -> MetaResult<()> {
        let json = json.to_owned();
        self.call(move |conn| {
            conn.execute(
                "INSERT INTO cluster_state (id, json) VALUES (0, ?1)
                 ON CONFLICT (id) DO UPDATE SET json = excluded.json",
                params![json],
            )
            .map_err(sql_error)?;
            Ok(())
        })
        .await
    }

    /// Replaces the document only if it still is `expected` (None: absent), in one
    /// transaction; false when someone else changed it first.
    pub async fn compare_and_swap_cluster_state(
        &self,
        expected: Option<&str>,
        json: &str,
    ) -> MetaResult<bool> {
        let expected = expected.map(str::to_owned);
        let json = json.to_owned();
        self.call(move |conn| {
            let tx = conn.transaction().map_err(sql_error)?;
            let current: Option<String> = tx
                .query_row("SELECT json FROM cluster_state WHERE id = 0", [], |r| {
                    r.get(0)
                })
                .optional()
                .map_err(sql_error)?;
            if current != expected {
                return Ok(false);
            }
            tx.execute(
                "INSERT INTO cluster_state (id, json) VALUES (0, ?1)
                 ON CONFLICT (id) DO UPDATE SET json = excluded.json",
                params![json],
            )
            .map_err(sql_error)?;
            tx.commit().map_err(sql_error)?;
            Ok(true)
        })
        .await
    }

    pub async fn record_hint(&self, hint: &Hint) -> MetaResult<()> {
        let hint = hint.clone();
        self.call(move |conn| {
            conn.execute(
                "INSERT INTO hints (key, owner, stand_in, at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (key, owner) DO UPDATE SET stand_in = excluded.stand_in,
                     at = excluded.at",
                params![hint.key, hint.owner, hint.stand_in, format_time(hint.at)],
            )
            .map_err(sql_error)?;
            Ok(())
        })
        .await
    }

    pub async fn hints(&self) -> MetaResult<Vec<Hint>> {
        self.call(|conn| {
            let mut stmt = conn
                .prepare("SELECT key, owner, stand_in, at FROM hints ORDER BY owner, key")
                .map_err(sql_error)?;
            let rows = stmt
                .query_map([], |r| {
                    let at: String = r.get(3)?;
                    Ok(Hint {
                        key: r.get(0)?,
                        owner: r.get(1)?,
                        stand_in: r.get(2)?,
                        at: super::parse_time(&at).unwrap_or_default(),
                    })
                })
                .map_err(sql_error)?;
            rows.collect::<Result<_, _>>().map_err(sql_error)
        })
        .await
    }

    pub async fn remove_hint(&self, key: &str, owner: &str) -> MetaResult<()> {
        let (key, owner) = (key.to_owned(), owner.to_owned());
        self.call(move |conn| {
            conn.execute(
                "DELETE FROM hints WHERE key = ?1 AND owner = ?2",
                params![key, owner],
            )
            .map_err(sql_error)?;
            Ok(())
        })
        .await
    }

    /// One process writes a SQLite store, so no change ever comes from elsewhere.
    pub async fn watch_cluster_state(&self) -> MetaResult<BoxStream<'static, String>> {
        Ok(futures::stream::pending().boxed())
    }
}

const SELECT_VIDEO: &str = "SELECT id, uploaded_at, status, duration_seconds, source_bytes, \
     file_count, stored_bytes, width, height, renditions, poster, captions, storyboard FROM videos";

/// Gives rows without a sort key (written by the original system, which knows no such
/// column) theirs, parsed from `uploaded_at`. The index makes finding none cheap.
fn backfill_sort_keys(conn: &Connection) -> MetaResult<()> {
    let missing: Vec<(String, String)> = {
        let mut stmt = conn
            .prepare_cached(
                "SELECT id, CAST(uploaded_at AS TEXT) FROM videos WHERE uploaded_ns IS NULL",
            )
            .map_err(sql_error)?;
        stmt.query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get::<_, Option<String>>(1)?.unwrap_or_default(),
            ))
        })
        .map_err(sql_error)?
        .collect::<Result<_, _>>()
        .map_err(sql_error)?
    };
    for (id, text) in missing {
        let at = parse_time(&text).unwrap_or(DateTime::UNIX_EPOCH);
        conn.execute(
            "UPDATE videos SET uploaded_ns = ?2 WHERE id = ?1",
            params![id, unix_nanos(at)],
        )
        .map_err(sql_error)?;
    }
    Ok(())
}

fn open_connection(path: &Path) -> MetaResult<Connection> {
    let mut conn = Connection::open(path).map_err(|e| {
        MetaError::Internal(format!("cannot open SQLite file {}: {e}", path.display()))
    })?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(sql_error)?;
    // WAL lets readers (including the original's tools) run beside the writer.
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(sql_error)?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(path = %path.display(), mode, "SQLite did not switch to WAL mode");
    }
    migrate(&mut conn)?;
    // Hints have their own table, created whatever the schema version: they hold only
    // work in flight, so no migration of old rows is ever needed.
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS hints (
             key TEXT NOT NULL,
             owner TEXT NOT NULL,
             stand_in TEXT NOT NULL,
             at TEXT NOT NULL,
             PRIMARY KEY (key, owner)
         );",
    )
    .map_err(sql_error)?;
    resync::create_table(&conn)?;
    Ok(conn)
}

/// Brings the schema to [`SCHEMA_VERSION`]. Version 0 is either an empty file or the
/// original system's file (table `videos` with `id` and `uploaded_at` only).
fn migrate(conn: &mut Connection) -> MetaResult<()> {
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(sql_error)?;
    if version > SCHEMA_VERSION {
        return Err(MetaError::Internal(format!(
            "the SQLite file has schema version {version}, newer than this program's \
             {SCHEMA_VERSION}"
        )));
    }
    if version == SCHEMA_VERSION {
        return Ok(());
    }
    let tx = conn.transaction().map_err(sql_error)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS videos (
             id TEXT PRIMARY KEY,
             uploaded_at DATETIME NOT NULL
         );",
    )
    .map_err(sql_error)?;
    // Rows written before the migration (by the original) are finished videos.
    let existing: Vec<String> = {
        let mut stmt = tx
            .prepare("SELECT name FROM pragma_table_info('videos')")
            .map_err(sql_error)?;
        stmt.query_map([], |r| r.get(0))
            .map_err(sql_error)?
            .collect::<Result<_, _>>()
            .map_err(sql_error)?
    };
    let columns = [
        ("status", "TEXT NOT NULL DEFAULT 'ready'"),
        ("duration_seconds", "REAL"),
        ("source_bytes", "INTEGER"),
        ("file_count", "INTEGER"),
        ("stored_bytes", "INTEGER"),
        // Version 2: the newest-first sort key, and what the index page shows.
        ("uploaded_ns", "INTEGER"),
        ("width", "INTEGER"),
        ("height", "INTEGER"),
        ("renditions", "TEXT"),
        ("poster", "INTEGER"),
        // Version 3: caption tracks, JSON; whether a storyboard is stored.
        ("captions", "TEXT"),
        ("storyboard", "INTEGER"),
    ];
    for (name, decl) in columns {
        if !existing.iter().any(|c| c.eq_ignore_ascii_case(name)) {
            tx.execute_batch(&format!("ALTER TABLE videos ADD COLUMN {name} {decl};"))
                .map_err(sql_error)?;
        }
    }
    backfill_sort_keys(&tx)?;
    tx.execute_batch(&format!(
        "CREATE INDEX IF NOT EXISTS videos_newest ON videos (uploaded_ns DESC, id);
         CREATE TABLE IF NOT EXISTS cluster_state (
             id INTEGER PRIMARY KEY CHECK (id = 0),
             json TEXT NOT NULL
         );
         PRAGMA user_version = {SCHEMA_VERSION};"
    ))
    .map_err(sql_error)?;
    tx.commit().map_err(sql_error)?;
    tracing::info!(
        from = version,
        to = SCHEMA_VERSION,
        "migrated the SQLite schema"
    );
    Ok(())
}

fn row_to_video(row: &rusqlite::Row<'_>) -> rusqlite::Result<Video> {
    let id: String = row.get(0)?;
    let uploaded_at = match row.get_ref(1)? {
        ValueRef::Text(t) => {
            let s = String::from_utf8_lossy(t);
            parse_time(&s).unwrap_or_else(|| {
                tracing::warn!(id, value = %s, "unreadable uploaded_at; shown as 1970");
                DateTime::UNIX_EPOCH
            })
        }
        ValueRef::Integer(secs) => DateTime::from_timestamp(secs, 0).unwrap_or_default(),
        ValueRef::Real(secs) => {
            DateTime::from_timestamp_millis((secs * 1000.0) as i64).unwrap_or_default()
        }
        _ => DateTime::UNIX_EPOCH,
    };
    let status = VideoStatus::parse(&row.get::<_, String>(2)?);
    let duration: Option<f64> = row.get(3)?;
    let details = match (status, duration) {
        (
            VideoStatus::Playable | VideoStatus::Ready | VideoStatus::Deleting,
            Some(duration_seconds),
        ) => Some(VideoDetails {
            duration_seconds,
            source_bytes: row.get::<_, Option<i64>>(4)?.unwrap_or(0).max(0) as u64,
            file_count: row.get::<_, Option<i64>>(5)?.unwrap_or(0).max(0) as u64,
            stored_bytes: row.get::<_, Option<i64>>(6)?.unwrap_or(0).max(0) as u64,
            width: row.get::<_, Option<u32>>(7)?.unwrap_or(0),
            height: row.get::<_, Option<u32>>(8)?.unwrap_or(0),
            renditions: row
                .get::<_, Option<String>>(9)?
                .and_then(|text| serde_json::from_str(&text).ok())
                .unwrap_or_default(),
            poster: row.get::<_, Option<bool>>(10)?.unwrap_or(false),
            captions: row
                .get::<_, Option<String>>(11)?
                .and_then(|text| serde_json::from_str(&text).ok())
                .unwrap_or_default(),
            storyboard: row.get::<_, Option<bool>>(12)?.unwrap_or(false),
        }),
        _ => None,
    };
    Ok(Video {
        id,
        uploaded_at,
        status,
        details,
    })
}

/// RFC 3339 with nanoseconds in UTC: sorts as text, and go-sqlite3 parses it.
fn format_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn is_constraint(e: &rusqlite::Error) -> bool {
    e.sqlite_error_code() == Some(ErrorCode::ConstraintViolation)
}

fn sql_error(e: rusqlite::Error) -> MetaError {
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            MetaError::Unavailable(format!("SQLite is busy: {e}"))
        }
        _ => MetaError::Internal(format!("SQLite: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_times_read_back_exactly() {
        let t = DateTime::from_timestamp(1_700_000_000, 123_456_789).unwrap();
        assert_eq!(parse_time(&format_time(t)), Some(t));
    }
}
