//! PostgreSQL as the durable, shared store of a fleet-scale outpost cloud.
//!
//! Several `outpost-cloud` instances share one database; each keeps its sites' documents in
//! a local working copy (a sled cache) and makes this database the truth:
//!
//! - **Content-addressed changes** per (site, document, change hash): two instances
//!   writing the same change is one row (`INSERT ... ON CONFLICT DO NOTHING`).
//! - **A commit number per site** (`sites.seq`): every commit of a site takes the next one
//!   under the lock of the site's row, so a site's commits are numbered in commit order and
//!   a reader that saw every number up to N misses nothing by reading `seq > N` next
//!   ([`PgStore::fetch`]).
//! - **Compaction** ([`PgStore::compact`]) writes a saved document and deletes the changes
//!   it covers in one transaction, under a new commit number: a reader always finds either
//!   the changes or the snapshot.
//! - **LISTEN/NOTIFY**: a commit notifies channel [`CHANNEL`] with the site (delivered when
//!   the transaction commits); [`PgStore::listen`] hands each notified site to a callback.
//! - **Migrations** with refinery, embedded in the binary and run at [`PgStore::open`]
//!   under an advisory lock (instances starting together migrate once).
//!
//! The driver is tokio-postgres with a deadpool pool, on a small runtime of its own, so the
//! blocking calls ([`PgStore::commit`], [`PgStore::fetch`]) may be made from any thread
//! that is not one of its own, including a tokio worker of the caller's runtime (as sled's
//! fsync is).
//!
//! ```no_run
//! use outpost_pgstore::{Batch, ChangeRow, PgStore};
//! let db = PgStore::open("postgresql://outpost@db.example.com/outpost")?;
//! let change = ChangeRow { doc: "orders/2026-12-01".into(), hash: vec![1; 32], bytes: vec![0x85] };
//! let seq = db.commit("site-a", &Batch { changes: vec![change], entries: vec![] })?;
//! let fetched = db.fetch("site-a", 0)?;
//! assert_eq!(fetched.upto, seq);
//! # Ok::<(), outpost_pgstore::PgError>(())
//! ```

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::{AsyncMessage, NoTls};

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// The channel every commit notifies, with the site as payload.
pub const CHANNEL: &str = "outpost_sites";

/// The most connections one instance opens to the database (besides its listener).
pub const DEFAULT_POOL_SIZE: usize = 16;

/// How long a commit or fetch waits for a connection, or for the database to answer a
/// connection attempt, before it fails (the change is then retried: it stays queued).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Errors of the PostgreSQL store.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// The URL does not parse, or lacks a part: the message names the part.
    #[error(
        "invalid PostgreSQL URL: {0}; give e.g. postgresql://user:password@host:5432/database, \
         or for a unix socket postgresql://user:password@%2Fvar%2Frun%2Fpostgresql/database \
         (the socket's directory, percent-encoded, as the host) or \
         postgresql://user:password@/database?host=/var/run/postgresql"
    )]
    Url(String),
    /// The pool could not be built.
    #[error("cannot set up the PostgreSQL pool: {0}")]
    Pool(String),
    /// Migrations failed.
    #[error("migrating the database failed: {0}; check that the user may create tables")]
    Migrate(String),
    /// A statement or the connection failed.
    #[error(
        "PostgreSQL failed while {what}: {reason}; check that the database is up and reachable"
    )]
    Query {
        /// What was being done.
        what: &'static str,
        /// The driver's message.
        reason: String,
    },
    /// The store's runtime is gone (the store is being dropped).
    #[error("the PostgreSQL store was closed")]
    Closed,
}

fn query(what: &'static str) -> impl Fn(tokio_postgres::Error) -> PgError {
    move |e| PgError::Query {
        what,
        reason: match e.as_db_error() {
            Some(db) => db.message().to_string(),
            None => e.to_string(),
        },
    }
}

/// Parses a connection URL (or `key=value` string), saying which part is wrong: the driver
/// accepts a URL without a host and only fails when connecting, with "invalid
/// configuration" and no more.
fn parse_url(url: &str) -> Result<tokio_postgres::Config, PgError> {
    let shown = redact(url);
    let config: tokio_postgres::Config = url.parse().map_err(|e: tokio_postgres::Error| {
        let part = if !(url.starts_with("postgres://")
            || url.starts_with("postgresql://")
            || url.contains('='))
        {
            "the scheme must be postgres:// or postgresql://".to_string()
        } else {
            format!("{e} (a port must be a number, a %-escape two hex digits)")
        };
        PgError::Url(format!("{shown}: {part}"))
    })?;
    if config.get_hosts().is_empty() && config.get_hostaddrs().is_empty() {
        let db = config.get_dbname().unwrap_or("");
        let hint = if db.contains('/') {
            format!(
                " (the database name came out as {db:?}: a socket directory written after the \
                 @ is read as the database's name)"
            )
        } else {
            String::new()
        };
        return Err(PgError::Url(format!("{shown}: the host is empty{hint}")));
    }
    if config.get_dbname().is_some_and(|d| d.contains('/')) {
        return Err(PgError::Url(format!(
            "{shown}: the database name {:?} holds a slash; a socket directory goes in the host",
            config.get_dbname().unwrap_or("")
        )));
    }
    Ok(config)
}

/// `url` with its password replaced by `***`, for messages and logs.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, tail) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

/// One change of a document, content-addressed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangeRow {
    /// The document id.
    pub doc: String,
    /// The change's hash.
    pub hash: Vec<u8>,
    /// The change's bytes.
    pub bytes: Vec<u8>,
}

/// One key of a site's bookkeeping tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryRow {
    /// Which tree.
    pub tree: i16,
    /// The key.
    pub key: Vec<u8>,
    /// The value (replaces an earlier one).
    pub value: Vec<u8>,
}

/// What one commit writes for a site.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Batch {
    /// New changes.
    pub changes: Vec<ChangeRow>,
    /// New or replaced entries.
    pub entries: Vec<EntryRow>,
}

/// What a site's commits after some number hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fetched {
    /// The site's last commit number covered (pass it as `after` next time).
    pub upto: i64,
    /// Compacted documents (document id, saved document) written in that range.
    pub snapshots: Vec<(String, Vec<u8>)>,
    /// Entries written in that range, oldest first.
    pub entries: Vec<EntryRow>,
    /// Changes written in that range, oldest commit first.
    pub changes: Vec<ChangeRow>,
}

/// A handle on the database; cheap to clone.
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    config: tokio_postgres::Config,
    runtime: std::sync::Mutex<Option<tokio::runtime::Runtime>>,
    handle: tokio::runtime::Handle,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which a tokio worker may not: let it go in the
        // background instead.
        if let Some(rt) = self
            .runtime
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            rt.shutdown_background();
        }
    }
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("hosts", &self.inner.config.get_hosts())
            .field("dbname", &self.inner.config.get_dbname())
            .finish()
    }
}

impl PgStore {
    /// Connects to the database at `url` (`postgresql://...`; a unix socket directory as a
    /// percent-encoded host) and brings its schema up to date.
    pub fn open(url: &str) -> Result<PgStore, PgError> {
        let mut config = parse_url(url)?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(DEFAULT_TIMEOUT);
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("outpost-pg")
            .enable_all()
            .build()
            .map_err(|e| PgError::Pool(e.to_string()))?;
        let handle = runtime.handle().clone();
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(DEFAULT_POOL_SIZE)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(DEFAULT_TIMEOUT))
            .create_timeout(Some(DEFAULT_TIMEOUT))
            .recycle_timeout(Some(DEFAULT_TIMEOUT))
            .build()
            .map_err(|e| PgError::Pool(e.to_string()))?;
        let store = PgStore {
            inner: Arc::new(Inner {
                pool,
                config,
                runtime: std::sync::Mutex::new(Some(runtime)),
                handle,
            }),
        };
        let config = store.inner.config.clone();
        store.block(async move { migrate(&config).await })??;
        Ok(store)
    }

    /// Runs `fut` on the store's runtime and waits for it.
    fn block<T: Send + 'static>(
        &self,
        fut: impl Future<Output = T> + Send + 'static,
    ) -> Result<T, PgError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.inner.handle.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv().map_err(|_| PgError::Closed)
    }

    /// Commits `batch` for `site` in one transaction and notifies [`CHANNEL`]; returns the
    /// commit's number. Changes already stored are skipped. Blocks until committed.
    pub fn commit(&self, site: &str, batch: &Batch) -> Result<i64, PgError> {
        let pool = self.inner.pool.clone();
        let site = site.to_string();
        let batch = batch.clone();
        self.block(async move { commit(&pool, &site, &batch).await })?
    }

    /// Everything committed for `site` after commit number `after` (0: everything), as one
    /// consistent snapshot of the database. Blocks.
    pub fn fetch(&self, site: &str, after: i64) -> Result<Fetched, PgError> {
        let pool = self.inner.pool.clone();
        let site = site.to_string();
        self.block(async move { fetch(&pool, &site, after).await })?
    }

    /// Replaces the changes of `doc` committed up to commit number `covers` by `saved` (the
    /// saved document, holding at least those changes), in one transaction. Blocks.
    pub fn compact(&self, site: &str, doc: &str, saved: &[u8], covers: i64) -> Result<(), PgError> {
        let pool = self.inner.pool.clone();
        let (site, doc, saved) = (site.to_string(), doc.to_string(), saved.to_vec());
        self.block(async move { compact(&pool, &site, &doc, &saved, covers).await })?
    }

    /// Deletes every change and snapshot of `doc` in `site` (an erasure: the document is
    /// gone from the database, not only from the instances' copies), and records it: no
    /// instance commits changes or a snapshot of it afterwards ([`PgStore::commit`] and
    /// [`PgStore::compact`] skip them). Returns the rows deleted. Blocks.
    pub fn erase(&self, site: &str, doc: &str) -> Result<u64, PgError> {
        let pool = self.inner.pool.clone();
        let (site, doc) = (site.to_string(), doc.to_string());
        self.block(async move {
            let mut client = get(&pool).await?;
            let tx = client
                .transaction()
                .await
                .map_err(query("starting an erasure"))?;
            // The site's row lock orders the erasure with every commit and compaction of
            // the site (see `next_seq`): those before it are deleted here, those after it
            // see the `erased` row and write nothing of the document.
            next_seq(&tx, &site).await?;
            tx.execute(
                "INSERT INTO erased (site, doc) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&site, &doc],
            )
            .await
            .map_err(query("recording an erasure"))?;
            let mut rows = 0;
            for sql in [
                "DELETE FROM changes WHERE site = $1 AND doc = $2",
                "DELETE FROM snapshots WHERE site = $1 AND doc = $2",
            ] {
                rows += tx
                    .execute(sql, &[&site, &doc])
                    .await
                    .map_err(query("erasing a document"))?;
            }
            tx.commit().await.map_err(query("committing an erasure"))?;
            Ok(rows)
        })?
    }

    /// Every site (and fleet key) that committed anything, sorted: what any instance must
    /// answer for, whichever instance its devices use. Blocks.
    pub fn sites(&self) -> Result<Vec<String>, PgError> {
        let pool = self.inner.pool.clone();
        self.block(async move {
            let client = get(&pool).await?;
            let rows = client
                .query("SELECT site FROM sites WHERE seq > 0 ORDER BY site", &[])
                .await
                .map_err(query("listing the sites"))?;
            rows.iter()
                .map(|r| {
                    r.try_get::<_, String>(0)
                        .map_err(query("listing the sites"))
                })
                .collect()
        })?
    }

    /// Bytes the site's rows hold (changes, snapshots, entries), without indexes.
    pub fn site_bytes(&self, site: &str) -> Result<i64, PgError> {
        let pool = self.inner.pool.clone();
        let site = site.to_string();
        self.block(async move {
            let client = get(&pool).await?;
            let row = client
                .query_one(
                    "SELECT
                       COALESCE((SELECT SUM(pg_column_size(c.*)) FROM changes c WHERE site = $1), 0)
                     + COALESCE((SELECT SUM(pg_column_size(s.*)) FROM snapshots s WHERE site = $1), 0)
                     + COALESCE((SELECT SUM(pg_column_size(e.*)) FROM entries e WHERE site = $1), 0)",
                    &[&site],
                )
                .await
                .map_err(query("measuring a site"))?;
            let n: Option<i64> = row.try_get(0).ok();
            Ok(n.unwrap_or(0))
        })?
    }

    /// Calls `on_site` with every site notified on [`CHANNEL`], from a task of the store's
    /// runtime, until the returned guard is dropped. The listening connection reconnects
    /// when it fails; notifications sent meanwhile are lost, so after each (re)connection
    /// `on_site(None)` says "anything may have changed".
    pub fn listen(&self, on_site: impl Fn(Option<String>) + Send + Sync + 'static) -> Listener {
        let config = self.inner.config.clone();
        let task = self.inner.handle.spawn(async move {
            loop {
                if let Err(e) = listen_once(&config, &on_site).await {
                    tracing::warn!(error = %e, "the PostgreSQL listener lost its connection; reconnecting");
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
        Listener { task }
    }
}

/// Listens while alive.
#[derive(Debug)]
pub struct Listener {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn listen_once(
    config: &tokio_postgres::Config,
    on_site: &(impl Fn(Option<String>) + Send + Sync),
) -> Result<(), PgError> {
    let (client, mut connection) = config
        .connect(NoTls)
        .await
        .map_err(query("connecting the listener"))?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(n))) => {
                    if tx.send(Ok(n.payload().to_string())).is_err() {
                        return;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    let _ = tx.send(Err(e));
                    return;
                }
                None => return,
            }
        }
    });
    let result = async {
        client
            .batch_execute(&format!("LISTEN {CHANNEL}"))
            .await
            .map_err(query("listening"))?;
        on_site(None);
        while let Some(msg) = rx.recv().await {
            on_site(Some(msg.map_err(query("listening"))?));
        }
        Err(PgError::Query {
            what: "listening",
            reason: "the connection closed".into(),
        })
    }
    .await;
    driver.abort();
    result
}

async fn get(pool: &Pool) -> Result<deadpool_postgres::Object, PgError> {
    pool.get().await.map_err(|e| PgError::Query {
        what: "connecting",
        reason: e.to_string(),
    })
}

async fn migrate(config: &tokio_postgres::Config) -> Result<(), PgError> {
    let (mut client, connection) = config
        .connect(NoTls)
        .await
        .map_err(query("connecting to migrate"))?;
    let driver = tokio::spawn(connection);
    // Instances that start together migrate one after the other.
    let result = async {
        client
            .batch_execute("SELECT pg_advisory_lock(7733001)")
            .await
            .map_err(query("locking for migrations"))?;
        let report = embedded::migrations::runner()
            .run_async(&mut client)
            .await
            .map_err(|e| PgError::Migrate(e.to_string()));
        client
            .batch_execute("SELECT pg_advisory_unlock(7733001)")
            .await
            .map_err(query("unlocking after migrations"))?;
        for m in report?.applied_migrations() {
            tracing::info!(migration = %m, "database migrated");
        }
        Ok(())
    }
    .await;
    drop(client);
    let _ = driver.await;
    result
}

/// Takes the site's next commit number, locking the site's row until the transaction ends.
async fn next_seq(tx: &deadpool_postgres::Transaction<'_>, site: &str) -> Result<i64, PgError> {
    tx.execute(
        "INSERT INTO sites (site) VALUES ($1) ON CONFLICT DO NOTHING",
        &[&site],
    )
    .await
    .map_err(query("registering a site"))?;
    let row = tx
        .query_one(
            "UPDATE sites SET seq = seq + 1 WHERE site = $1 RETURNING seq",
            &[&site],
        )
        .await
        .map_err(query("numbering a commit"))?;
    Ok(row.get(0))
}

async fn commit(pool: &Pool, site: &str, batch: &Batch) -> Result<i64, PgError> {
    let mut client = get(pool).await?;
    let tx = client
        .transaction()
        .await
        .map_err(query("starting a commit"))?;
    let seq = next_seq(&tx, site).await?;
    if !batch.changes.is_empty() {
        let docs: Vec<&str> = batch.changes.iter().map(|c| c.doc.as_str()).collect();
        let hashes: Vec<&[u8]> = batch.changes.iter().map(|c| c.hash.as_slice()).collect();
        let bytes: Vec<&[u8]> = batch.changes.iter().map(|c| c.bytes.as_slice()).collect();
        // Changes of a document erased in this site are dropped: another instance that had
        // not heard of the erasure yet must not bring it back.
        tx.execute(
            "INSERT INTO changes (site, doc, hash, bytes, seq)
             SELECT $1, d, h, b, $5 FROM unnest($2::text[], $3::bytea[], $4::bytea[]) AS t(d, h, b)
             WHERE NOT EXISTS (SELECT 1 FROM erased e WHERE e.site = $1 AND e.doc = t.d)
             ON CONFLICT DO NOTHING",
            &[&site, &docs, &hashes, &bytes, &seq],
        )
        .await
        .map_err(query("writing changes"))?;
    }
    if !batch.entries.is_empty() {
        // One statement may not update a row twice: the last write of a key wins.
        let mut last: std::collections::HashMap<(i16, &[u8]), &[u8]> = Default::default();
        let mut order = Vec::new();
        for e in &batch.entries {
            if last.insert((e.tree, &e.key), &e.value).is_none() {
                order.push((e.tree, e.key.as_slice()));
            }
        }
        let trees: Vec<i16> = order.iter().map(|(t, _)| *t).collect();
        let keys: Vec<&[u8]> = order.iter().map(|(_, k)| *k).collect();
        let values: Vec<&[u8]> = order.iter().map(|k| last[k]).collect();
        tx.execute(
            "INSERT INTO entries (site, tree, key, value, seq)
             SELECT $1, t, k, v, $5 FROM unnest($2::int2[], $3::bytea[], $4::bytea[]) AS x(t, k, v)
             ON CONFLICT (site, tree, key) DO UPDATE SET value = EXCLUDED.value, seq = EXCLUDED.seq",
            &[&site, &trees, &keys, &values, &seq],
        )
        .await
        .map_err(query("writing entries"))?;
    }
    tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &site])
        .await
        .map_err(query("notifying"))?;
    tx.commit().await.map_err(query("committing"))?;
    Ok(seq)
}

async fn fetch(pool: &Pool, site: &str, after: i64) -> Result<Fetched, PgError> {
    let mut client = get(pool).await?;
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(query("starting a read"))?;
    let upto: i64 = tx
        .query_opt("SELECT seq FROM sites WHERE site = $1", &[&site])
        .await
        .map_err(query("reading a site"))?
        .map(|r| r.get(0))
        .unwrap_or(0);
    let mut out = Fetched {
        upto,
        ..Fetched::default()
    };
    if upto <= after {
        return Ok(out);
    }
    for r in tx
        .query(
            "SELECT doc, bytes FROM snapshots WHERE site = $1 AND seq > $2 ORDER BY seq",
            &[&site, &after],
        )
        .await
        .map_err(query("reading snapshots"))?
    {
        out.snapshots.push((r.get(0), r.get(1)));
    }
    for r in tx
        .query(
            "SELECT tree, key, value FROM entries WHERE site = $1 AND seq > $2 ORDER BY seq",
            &[&site, &after],
        )
        .await
        .map_err(query("reading entries"))?
    {
        out.entries.push(EntryRow {
            tree: r.get(0),
            key: r.get(1),
            value: r.get(2),
        });
    }
    for r in tx
        .query(
            "SELECT doc, hash, bytes FROM changes WHERE site = $1 AND seq > $2 ORDER BY seq",
            &[&site, &after],
        )
        .await
        .map_err(query("reading changes"))?
    {
        out.changes.push(ChangeRow {
            doc: r.get(0),
            hash: r.get(1),
            bytes: r.get(2),
        });
    }
    tx.commit().await.map_err(query("ending a read"))?;
    Ok(out)
}

async fn compact(
    pool: &Pool,
    site: &str,
    doc: &str,
    saved: &[u8],
    covers: i64,
) -> Result<(), PgError> {
    let mut client = get(pool).await?;
    let tx = client
        .transaction()
        .await
        .map_err(query("starting a compaction"))?;
    let seq = next_seq(&tx, site).await?;
    let erased = tx
        .query_opt(
            "SELECT 1 FROM erased WHERE site = $1 AND doc = $2",
            &[&site, &doc],
        )
        .await
        .map_err(query("checking for an erasure"))?
        .is_some();
    if erased {
        // A compaction of an erased document (by an instance that had not heard of the
        // erasure yet) writes nothing.
        tx.commit().await.map_err(query("ending a compaction"))?;
        return Ok(());
    }
    let written = tx
        .execute(
            "INSERT INTO snapshots (site, doc, bytes, covers, seq) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (site, doc) DO UPDATE
               SET bytes = EXCLUDED.bytes, covers = EXCLUDED.covers, seq = EXCLUDED.seq
               WHERE snapshots.covers < EXCLUDED.covers",
            &[&site, &doc, &saved, &covers, &seq],
        )
        .await
        .map_err(query("writing a snapshot"))?;
    if written > 0 {
        tx.execute(
            "DELETE FROM changes WHERE site = $1 AND doc = $2 AND seq <= $3",
            &[&site, &doc, &covers],
        )
        .await
        .map_err(query("pruning compacted changes"))?;
    }
    tx.commit()
        .await
        .map_err(query("committing a compaction"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_url_says_which_part_is_wrong_and_hides_the_password() {
        let err = |url: &str| match PgStore::open(url) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("{url} must be refused before connecting"),
        };
        let e = err("postgres://user:pw@/path/db");
        assert!(e.contains("the host is empty"), "{e}");
        assert!(e.contains("\"path/db\""), "{e}");
        assert!(e.contains("%2Fvar%2Frun%2Fpostgresql"), "{e}");
        assert!(!e.contains("pw@"), "the password is not shown: {e}");
        let e = err("mysql://user:pw@db/outpost");
        assert!(e.contains("postgres:// or postgresql://"), "{e}");
        let e = err("postgres://user:pw@db:port/outpost");
        assert!(e.contains("port must be a number"), "{e}");
        // The documented socket forms parse (they fail later, connecting to nothing).
        for ok in [
            "postgresql://user:pw@%2Fnonexistent%2Fdir/outpost",
            "postgresql://user:pw@/outpost?host=/nonexistent/dir",
        ] {
            let config = parse_url(ok).expect(ok);
            assert_eq!(config.get_dbname(), Some("outpost"), "{ok}");
            assert!(!config.get_hosts().is_empty(), "{ok}");
        }
    }
}
