//! The node handle apps hold: documents, subscriptions, sync status, shutdown.

use std::future::Future;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use outpost_core::Event;
use outpost_core::{DocumentId, Durability, Pointer, Store, SubscriptionFilter};
use outpost_transport::Node;
use serde_json::Value as Json;
use tokio::runtime::Runtime;

use crate::config::NodeConfig;
use crate::error::{guard, OutpostError, Result};
use crate::events::EventStream;
use crate::feed::{self, ConsumerFeed, FeedListener};
use crate::listener::{self, NodeListener, Subscription};
use crate::live::{self, QueryWatch, StatusWatch, ValueWatch};
use crate::query::Query;
use crate::types::{AuditEntry, Conflict, PeerIdentity, SyncStatus, TxOp, WriteAck};

/// How long dropping a running node waits for it to shut down (on a thread of its own).
const DROP_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(3);

/// How long a call waits for the node's engine (status, revocations) before failing with
/// `Network`: a busy engine never stalls the app's thread for longer.
pub(crate) const ENGINE_TIMEOUT: Duration = Duration::from_secs(5);

/// A running outpost node: this device's documents, kept in sync with the other devices
/// of its site over QUIC with mutual TLS.
///
/// Documents are named like `menu` or `orders/2026-11-24`; paths inside them are JSON
/// Pointers like `/items/burger/price`; values cross as JSON text (`"950"`,
/// `"\"Burger\""`, `"{\"available\": true}"`) or through the typed helpers.
///
/// All methods may be called from any thread. The node owns its threads (a small async
/// runtime); callers need none. Call `shutdown` when done: it waits for peers to receive
/// what is queued and releases the data directory and the port.
#[derive(uniffi::Object)]
pub struct Outpost {
    runtime: Mutex<Option<Runtime>>,
    handle: tokio::runtime::Handle,
    open: RwLock<Option<Open>>,
    durability: Durability,
    identity: Option<PeerIdentity>,
    local_address: Option<String>,
    live: crate::live::LiveTasks,
    /// Web clients served beside QUIC (`NodeConfig.ws_listen`), stopped with the node.
    web: Mutex<Option<outpost_ws::WsServer>>,
    /// Where `ws_listen` serves, and whether with TLS.
    web_address: Option<(std::net::SocketAddr, bool)>,
    /// The tokens of web clients (`<data_dir>/web-tokens`); `None` for `openLocal`.
    tokens: Option<outpost_ws::TokenBook>,
}

struct Open {
    store: Store,
    node: Option<Node>,
}

impl std::fmt::Debug for Outpost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outpost")
            .field("identity", &self.identity)
            .field("local_address", &self.local_address)
            .finish_non_exhaustive()
    }
}

fn new_runtime() -> Result<Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("outpost-rt")
        .enable_all()
        .build()
        .map_err(|e| {
            OutpostError::internal(format!(
                "cannot start the node's threads ({e}); the system is out of threads or memory"
            ))
        })
}

fn doc_id(doc: &str) -> Result<DocumentId> {
    Ok(doc.parse::<DocumentId>()?)
}

/// The JSON value `json` meant for `path` of `doc`; `InvalidJson` naming them.
fn parse_json(json: &str, doc: &str, path: &str) -> Result<Json> {
    serde_json::from_str(json).map_err(|e| OutpostError::json("the value", &e).at(doc, Some(path)))
}

/// Awaits a task of the node's runtime; a panic in it becomes `Internal`.
pub(crate) async fn join<T>(what: &str, task: tokio::task::JoinHandle<Result<T>>) -> Result<T> {
    match task.await {
        Ok(r) => r,
        Err(e) if e.is_panic() => Err(OutpostError::internal(format!(
            "outpost panicked in {what}: {}; this is a bug, please report it with the log",
            crate::error::panic_message(e.into_panic().as_ref())
        ))),
        Err(_) => Err(OutpostError::shut_down()),
    }
}

impl Outpost {
    fn from_node(runtime: Runtime, node: Node, durable: bool, web: Web) -> Outpost {
        Outpost {
            web_address: web
                .server
                .as_ref()
                .map(|s| (s.local_addr(), s.scheme() == "wss")),
            web: Mutex::new(web.server),
            tokens: Some(web.tokens),
            handle: runtime.handle().clone(),
            runtime: Mutex::new(Some(runtime)),
            durability: if durable {
                Durability::Durable
            } else {
                Durability::Fast
            },
            identity: Some(node.info().into()),
            local_address: Some(node.local_addr().to_string()),
            live: Default::default(),
            open: RwLock::new(Some(Open {
                store: node.store().clone(),
                node: Some(node),
            })),
        }
    }

    /// Runs `f` on the open node, or fails with `ShutDown`.
    pub(crate) fn web_listener(&self) -> Option<(std::net::SocketAddr, bool)> {
        self.web_address
    }

    pub(crate) fn tokens(&self) -> Option<&outpost_ws::TokenBook> {
        self.tokens.as_ref()
    }

    fn with_open<T>(&self, f: impl FnOnce(&Open) -> Result<T>) -> Result<T> {
        let open = self.open.read().unwrap_or_else(|p| p.into_inner());
        match open.as_ref() {
            Some(o) => f(o),
            None => Err(OutpostError::shut_down()),
        }
    }

    fn store(&self) -> Result<Store> {
        self.with_open(|o| Ok(o.store.clone()))
    }

    /// The store, for a watch's task (which holds it only while it evaluates).
    pub(crate) fn store_for_watch(&self) -> Result<Store> {
        self.store()
    }

    /// Counts the task that holds the returned guard.
    pub(crate) fn track(&self) -> crate::live::Tracked {
        self.live.track()
    }

    /// The node's runtime.
    pub(crate) fn runtime_handle(&self) -> &tokio::runtime::Handle {
        &self.handle
    }

    /// A receiver of the node's link events; `None` without a node (openLocal).
    pub(crate) fn events_for_watch(
        &self,
    ) -> Result<Option<tokio::sync::broadcast::Receiver<Event>>> {
        self.with_open(|o| Ok(o.node.as_ref().map(Node::events)))
    }

    /// A store operation on `doc`, with panics caught.
    fn on_doc<T>(
        &self,
        what: &str,
        doc: &str,
        f: impl FnOnce(&Store, &DocumentId) -> outpost_core::Result<T>,
    ) -> Result<T> {
        guard(what, || {
            let store = self.store()?;
            let id = doc_id(doc)?;
            Ok(f(&store, &id)?)
        })
        // Every error of a document call names the document, also those core gives without.
        .map_err(|e| e.at(doc, None))
    }

    /// Reads a value and converts it with `convert`, or fails with `WrongType`.
    fn get_typed<T>(
        &self,
        what: &str,
        doc: &str,
        path: &str,
        expected: &str,
        convert: impl FnOnce(&Json) -> Option<T>,
    ) -> Result<Option<T>> {
        match self.on_doc(what, doc, |s, d| s.get(d, path))? {
            None => Ok(None),
            Some(v) => convert(&v).map(Some).ok_or_else(|| {
                OutpostError::wrong_type(format!(
                    "wrong type at {path} in document {doc}: expected {expected}, found {}; use get() to read any value as JSON",
                    kind(&v)
                ))
                .at(doc, Some(path))
            }),
        }
    }

    /// Runs `fut` to completion on the node's runtime from a foreign async caller.
    async fn on_runtime<T: Send + 'static>(
        &self,
        what: &str,
        fut: impl Future<Output = Result<T>> + Send + 'static,
    ) -> Result<T> {
        join(what, self.handle.spawn(fut)).await
    }

    /// Runs the blocking call `f` on the runtime's blocking pool, for a foreign async caller.
    async fn blocking<T: Send + 'static>(
        &self,
        what: &str,
        f: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> Result<T> {
        join(what, self.handle.spawn_blocking(f)).await
    }

    /// Runs the blocking call `f` with the node on the runtime's blocking pool: the async
    /// form of a `*Blocking` method, for a foreign async caller.
    async fn off_thread<T: Send + 'static>(
        self: Arc<Self>,
        what: &str,
        f: impl FnOnce(&Outpost) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let this = self.clone();
        self.blocking(what, move || f(&this)).await
    }

    /// Takes the node out of service and shuts it down on its runtime.
    async fn stop_node(&self) -> Result<()> {
        let web = self.web.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(web) = web {
            let _ = self
                .on_runtime("shutdown", async move {
                    web.shutdown().await;
                    Ok(())
                })
                .await;
        }
        let Some(open) = self.open.write().unwrap_or_else(|p| p.into_inner()).take() else {
            return Ok(());
        };
        let result = match open.node {
            Some(node) => {
                self.on_runtime("shutdown", async move { Ok(node.shutdown().await?) })
                    .await
            }
            None => open.store.flush().map_err(OutpostError::from),
        };
        drop(open.store);
        result
    }

    /// Ends the runtime once the node is stopped. Listener tasks end with it, and their
    /// threads with their channels.
    fn release_runtime(&self) {
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

/// What a node serves to web clients: the server (with `ws_listen`) and its tokens.
struct Web {
    server: Option<outpost_ws::WsServer>,
    tokens: outpost_ws::TokenBook,
}

/// Starts the node, then its web clients' server if configured.
async fn start(
    transport: outpost_transport::NodeConfig,
    web: Option<outpost_ws::WsConfig>,
) -> Result<(Node, Web)> {
    let tokens_dir = transport.data_dir.join("web-tokens");
    let node = Node::start(transport).await?;
    let started = match web {
        Some(config) => {
            let tokens = config.tokens.clone();
            outpost_ws::WsServer::start(node.store().clone(), config)
                .await
                .map(|s| Web {
                    server: Some(s),
                    tokens,
                })
        }
        None => outpost_ws::TokenBook::open(tokens_dir).map(|tokens| Web {
            server: None,
            tokens,
        }),
    };
    match started {
        Ok(web) => Ok((node, web)),
        Err(e) => {
            let _ = node.shutdown().await;
            Err(crate::pairing::web_error(e))
        }
    }
}

fn engine_timeout(what: &str) -> OutpostError {
    OutpostError::network(format!(
        "{what}: the node's engine did not answer within {} s (it is busy or stuck); try again, \
         or use the async form",
        ENGINE_TIMEOUT.as_secs()
    ))
}

fn kind(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "a list",
        Json::Object(_) => "an object",
    }
}

#[uniffi::export]
impl Outpost {
    /// `open` for callers that cannot wait asynchronously (Kotlin `Outpost.openBlocking`):
    /// blocks the caller, usually a few milliseconds, at most 5 s (then `Network`).
    #[uniffi::constructor]
    pub fn open_blocking(config: NodeConfig) -> Result<Arc<Outpost>> {
        guard("Outpost.openBlocking", || {
            let transport = config.to_transport()?;
            let web = config.to_web()?;
            let runtime = new_runtime()?;
            let started = runtime
                .block_on(async {
                    tokio::time::timeout(ENGINE_TIMEOUT, start(transport, web)).await
                })
                .map_err(|_| engine_timeout("Outpost.openBlocking"))
                .and_then(|r| r);
            match started {
                Ok((node, web)) => Ok(Arc::new(Outpost::from_node(
                    runtime,
                    node,
                    config.durable_writes,
                    web,
                ))),
                Err(e) => {
                    runtime.shutdown_background();
                    Err(e)
                }
            }
        })
    }

    /// Opens the node: its documents in `config.data_dir`, listening for peers and dialing
    /// `config.peers`, without blocking the caller (Kotlin `suspend`, Swift `async`);
    /// `openBlocking` blocks.
    #[uniffi::constructor]
    pub async fn open(config: NodeConfig) -> Result<Arc<Outpost>> {
        let (runtime, transport, web) = guard("Outpost.open", || {
            Ok((new_runtime()?, config.to_transport()?, config.to_web()?))
        })?;
        let started = join("Outpost.open", runtime.spawn(start(transport, web))).await;
        match started {
            Ok((node, web)) => Ok(Arc::new(Outpost::from_node(
                runtime,
                node,
                config.durable_writes,
                web,
            ))),
            Err(e) => {
                runtime.shutdown_background();
                Err(e)
            }
        }
    }

    /// Opens the documents in `data_dir` with no network and no identity: nothing syncs.
    /// For single-device tools and tests; every write is allowed.
    #[uniffi::constructor]
    pub fn open_local(data_dir: String) -> Result<Arc<Outpost>> {
        guard("Outpost.openLocal", || {
            let runtime = new_runtime()?;
            let store = Store::open(&data_dir)?;
            Ok(Arc::new(Outpost {
                handle: runtime.handle().clone(),
                runtime: Mutex::new(Some(runtime)),
                durability: Durability::Durable,
                identity: None,
                local_address: None,
                live: Default::default(),
                web: Mutex::new(None),
                web_address: None,
                tokens: None,
                open: RwLock::new(Some(Open { store, node: None })),
            }))
        })
    }

    /// This device's identity from its certificate; `None` for `openLocal`.
    pub fn identity(&self) -> Option<PeerIdentity> {
        self.identity.clone()
    }

    /// The `ip:port` the node listens on (useful with port 0); `None` for `openLocal`.
    pub fn local_address(&self) -> Option<String> {
        self.local_address.clone()
    }

    /// Whether `shutdown` was called.
    pub fn is_shut_down(&self) -> bool {
        self.open
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_none()
    }

    /// The documents that hold data, sorted.
    pub fn documents_blocking(&self) -> Result<Vec<String>> {
        guard("documents", || {
            Ok(self
                .store()?
                .documents()?
                .iter()
                .map(|d| d.to_string())
                .collect())
        })
    }

    /// The value at `path` as JSON text, or `None` if nothing is there, blocking the caller
    /// (`get` does not). `""` reads the whole document. Fails with `UnknownDocument` if the document has no data yet.
    pub fn get_blocking(&self, doc: String, path: String) -> Result<Option<String>> {
        Ok(self
            .on_doc("get", &doc, |s, d| s.get(d, &path))?
            .map(|v| v.to_string()))
    }

    /// The string at `path`, or `None`; `WrongType` if it is not a string.
    pub fn get_string_blocking(&self, doc: String, path: String) -> Result<Option<String>> {
        self.get_typed("getString", &doc, &path, "a string", |v| {
            v.as_str().map(str::to_string)
        })
    }

    /// The integer (or counter) at `path`, or `None`; `WrongType` if it is not one.
    pub fn get_int_blocking(&self, doc: String, path: String) -> Result<Option<i64>> {
        self.get_typed("getInt", &doc, &path, "an integer", Json::as_i64)
    }

    /// The number at `path`, or `None`; `WrongType` if it is not a number.
    pub fn get_double_blocking(&self, doc: String, path: String) -> Result<Option<f64>> {
        self.get_typed("getDouble", &doc, &path, "a number", Json::as_f64)
    }

    /// The boolean at `path`, or `None`; `WrongType` if it is not a boolean.
    pub fn get_bool_blocking(&self, doc: String, path: String) -> Result<Option<bool>> {
        self.get_typed("getBool", &doc, &path, "a boolean", Json::as_bool)
    }

    /// Writes the JSON value `json` at `path`, blocking the caller until it is stored (`put`
    /// does not), creating missing parent objects. Objects
    /// become maps whose fields merge key by key with other devices' writes.
    pub fn put_blocking(&self, doc: String, path: String, json: String) -> Result<()> {
        let value = parse_json(&json, &doc, &path)?;
        self.on_doc("put", &doc, |s, d| s.put(d, &path, value, self.durability))
    }

    /// Writes a string at `path`.
    pub fn put_string_blocking(&self, doc: String, path: String, value: String) -> Result<()> {
        self.on_doc("putString", &doc, |s, d| {
            s.put(d, &path, Json::String(value), self.durability)
        })
    }

    /// Writes an integer at `path`. For quantities that several devices change, use
    /// `increment` (a counter) instead.
    pub fn put_int_blocking(&self, doc: String, path: String, value: i64) -> Result<()> {
        self.on_doc("putInt", &doc, |s, d| {
            s.put(d, &path, value.into(), self.durability)
        })
    }

    /// Writes a number at `path`; `InvalidValue` for NaN or infinity.
    pub fn put_double_blocking(&self, doc: String, path: String, value: f64) -> Result<()> {
        let number = serde_json::Number::from_f64(value).ok_or_else(|| {
            OutpostError::invalid_value(format!(
                "cannot store {value} at {path} in document {doc}: only finite numbers can be stored"
            ))
        })?;
        self.on_doc("putDouble", &doc, |s, d| {
            s.put(d, &path, Json::Number(number), self.durability)
        })
    }

    /// Writes a boolean at `path`.
    pub fn put_bool_blocking(&self, doc: String, path: String, value: bool) -> Result<()> {
        self.on_doc("putBool", &doc, |s, d| {
            s.put(d, &path, Json::Bool(value), self.durability)
        })
    }

    /// Deletes the value at `path`; `NotFound` if nothing is there.
    pub fn delete_blocking(&self, doc: String, path: String) -> Result<()> {
        self.on_doc("delete", &doc, |s, d| s.delete(d, &path, self.durability))
    }

    /// Inserts the JSON value `json` into the list at `path` before `index` (the list's
    /// length appends); creates the list if missing.
    pub fn insert_blocking(
        &self,
        doc: String,
        path: String,
        index: u32,
        json: String,
    ) -> Result<()> {
        let value = parse_json(&json, &doc, &path)?;
        self.on_doc("insert", &doc, |s, d| {
            s.insert(d, &path, index as usize, value, self.durability)
        })
    }

    /// Appends the JSON value `json` to the list at `path`; creates the list if missing.
    pub fn push_blocking(&self, doc: String, path: String, json: String) -> Result<()> {
        let value = parse_json(&json, &doc, &path)?;
        self.on_doc("push", &doc, |s, d| {
            s.transact(d, self.durability, |tx| tx.push(&path, value))
        })
    }

    /// Adds `delta` (negative to subtract) to the counter at `path`, creating it at
    /// `delta`. Concurrent increments on several devices all count.
    pub fn increment_blocking(&self, doc: String, path: String, delta: i64) -> Result<()> {
        self.on_doc("increment", &doc, |s, d| {
            s.increment(d, &path, delta, self.durability)
        })
    }

    /// Applies `ops` to `doc` atomically, blocking the caller (`transact` does not): all of them as one change, or none if one fails
    /// (the error names the failing path).
    pub fn transact_blocking(&self, doc: String, ops: Vec<TxOp>) -> Result<()> {
        self.apply_ops("transact", doc, Mode::Plain, self.durability, ops)
            .map(|_| ())
    }

    /// Like `transact`, at most once per `write_id` in `doc`: returns `true` if the operations
    /// were applied now, `false` if a change with this id is already there (nothing done).
    ///
    /// Retry a write that must not count twice (a sale, a payment) with the same id after any
    /// error, also after a restart: it is applied exactly once. A write that failed may have
    /// been applied (a durable write whose flush failed on a full disk), so a plain retry
    /// could count it twice.
    pub fn transact_once_blocking(
        &self,
        doc: String,
        write_id: String,
        ops: Vec<TxOp>,
    ) -> Result<bool> {
        self.apply_ops(
            "transactOnce",
            doc,
            Mode::Once(write_id),
            self.durability,
            ops,
        )
        .map(|(applied, _)| applied)
    }

    /// Issues this device's next ticket number (`K1-042`; `ticketPrefix` in the config) and
    /// applies `ops` with it, atomically: every `{ticket}` in their paths and JSON values
    /// becomes the number, and the number and the operations are one change (a failed
    /// transaction leaves a gap in the numbers, never a repeat). Returns the ticket.
    ///
    /// E.g. `Put("/orders/{ticket}", "{\"ticket\": \"{ticket}\", ...}")`. Numbers are
    /// unique per device, also after the data directory is restored from a backup (see
    /// README, "Delivery guarantees").
    pub fn transact_with_ticket_blocking(&self, doc: String, ops: Vec<TxOp>) -> Result<String> {
        self.apply_ops(
            "transactWithTicket",
            doc,
            Mode::Ticket,
            self.durability,
            ops,
        )
        .and_then(|(_, ticket)| {
            ticket.ok_or_else(|| OutpostError::internal("no ticket was issued".into()))
        })
    }
}

impl Outpost {
    /// Runs the durable `write` on `doc`, then waits for a peer to hold it (the node's
    /// `wait_replicated`, with the configured timeout).
    fn replicated(
        &self,
        what: &str,
        doc: String,
        write: impl FnOnce(&Self, &str) -> Result<()>,
    ) -> Result<WriteAck> {
        guard(what, || {
            let id = doc_id(&doc)?;
            self.with_open(|o| match &o.node {
                None => Err(OutpostError::invalid_config(format!(
                    "{what} waits for another device of the site, and this store runs no node \
                     (openLocal): open it with a certificate, or write with put / transact"
                ))),
                Some(_) => Ok(()),
            })?;
            write(self, &doc)?;
            // The wait holds nothing of the node, so a shutdown meanwhile is not held up
            // (the wait then answers ThisDevice).
            let wait = self.with_open(|o| {
                Ok(o.node
                    .as_ref()
                    .map(|node| node.wait_replicated(&id, node.replicated_timeout())))
            })?;
            match wait {
                None => Ok(WriteAck::ThisDevice),
                Some(wait) => Ok((&self.handle.block_on(wait)?).into()),
            }
        })
    }
}

/// What `transactWithTicket` replaces with the ticket number.
const TICKET: &str = "{ticket}";

/// How [`Outpost::apply_ops`] commits.
enum Mode {
    /// One transaction.
    Plain,
    /// At most once per write id.
    Once(String),
    /// With the device's next ticket number substituted for `{ticket}`.
    Ticket,
}

impl Outpost {
    /// Applies `ops` in one transaction, as `mode` says; returns whether they were applied
    /// and the ticket issued.
    fn apply_ops(
        &self,
        what: &str,
        doc: String,
        mode: Mode,
        durability: Durability,
        ops: Vec<TxOp>,
    ) -> Result<(bool, Option<String>)> {
        // Parse every JSON value first, so that bad input fails before anything is applied
        // (a ticket is letters, digits and '-': substituting it keeps the JSON valid).
        const SAMPLE: &str = "K1-001";
        let parsed = ops
            .into_iter()
            .enumerate()
            .map(|(i, op)| {
                let value = match &op {
                    TxOp::Put { json, .. }
                    | TxOp::Insert { json, .. }
                    | TxOp::Push { json, .. } => {
                        let _: Json =
                            serde_json::from_str(&json.replace(TICKET, SAMPLE)).map_err(|e| {
                                OutpostError::json(&format!("the value of operation {i}"), &e)
                            })?;
                        Some(json.clone())
                    }
                    TxOp::Delete { .. } | TxOp::Increment { .. } => None,
                };
                Ok((op, value))
            })
            .collect::<Result<Vec<_>>>()?;
        let with_ticket = matches!(mode, Mode::Ticket);
        self.on_doc(what, &doc, |s, d| {
            let apply = |tx: &mut outpost_core::Tx<'_>| {
                let ticket = if with_ticket {
                    Some(tx.next_ticket()?.to_string())
                } else {
                    None
                };
                let fill = |text: &str| match &ticket {
                    Some(t) => text.replace(TICKET, t),
                    None => text.to_string(),
                };
                for (op, value) in parsed {
                    let value = match value {
                        Some(json) => serde_json::from_str::<Json>(&fill(&json)).map_err(|e| {
                            outpost_core::Error::InvalidValue {
                                doc: d.clone(),
                                path: String::new(),
                                reason: e.to_string(),
                            }
                        })?,
                        None => Json::Null,
                    };
                    let op = match op {
                        TxOp::Put { path, json } => TxOp::Put {
                            path: fill(&path),
                            json,
                        },
                        TxOp::Delete { path } => TxOp::Delete { path: fill(&path) },
                        TxOp::Insert { path, index, json } => TxOp::Insert {
                            path: fill(&path),
                            index,
                            json,
                        },
                        TxOp::Push { path, json } => TxOp::Push {
                            path: fill(&path),
                            json,
                        },
                        TxOp::Increment { path, delta } => TxOp::Increment {
                            path: fill(&path),
                            delta,
                        },
                    };
                    match op {
                        TxOp::Put { path, .. } => tx.put(&path, value)?,
                        TxOp::Delete { path } => tx.delete(&path)?,
                        TxOp::Insert { path, index, .. } => {
                            tx.insert(&path, index as usize, value)?
                        }
                        TxOp::Push { path, .. } => tx.push(&path, value)?,
                        TxOp::Increment { path, delta } => tx.increment(&path, delta)?,
                    }
                }
                Ok(ticket)
            };
            match &mode {
                Mode::Plain | Mode::Ticket => s
                    .transact(d, durability, apply)
                    .map(|ticket| (true, ticket)),
                Mode::Once(id) => s
                    .transact_once(d, id, durability, apply)
                    .map(|o| (matches!(o, outpost_core::WriteOutcome::Applied(_)), None)),
            }
        })
    }
}

#[uniffi::export]
impl Outpost {
    /// Every concurrent value at `path`, the one reads return first, with who wrote each.
    /// One element when there is no conflict, none when nothing is there.
    pub fn conflicts_blocking(&self, doc: String, path: String) -> Result<Vec<Conflict>> {
        Ok(self
            .on_doc("conflicts", &doc, |s, d| s.conflicts(d, &path))?
            .iter()
            .map(Conflict::from)
            .collect())
    }

    /// Calls `listener` on its own thread for every change (local or remote) to `doc`
    /// (all documents when `None`) at or below `path` (everywhere when `None`), and for
    /// link events and refused changes.
    #[uniffi::method(default(doc = None, path = None))]
    pub fn subscribe(
        &self,
        listener: Arc<dyn NodeListener>,
        doc: Option<String>,
        path: Option<String>,
    ) -> Result<Arc<Subscription>> {
        guard("subscribe", || {
            let doc = doc.as_deref().map(doc_id).transpose()?;
            let prefix = path.as_deref().map(Pointer::parse).transpose()?;
            self.with_open(|o| {
                let changes = o.store.subscribe(SubscriptionFilter {
                    doc: doc.clone(),
                    prefix,
                    paths: true,
                });
                let events = o.node.as_ref().map(Node::events);
                Ok(Arc::new(listener::start(
                    &self.handle,
                    changes,
                    events,
                    doc,
                    listener,
                    self.live.track(),
                )?))
            })
        })
    }

    /// The durable feed of consumer `name` (e.g. `kitchen-1/printer`): everything that
    /// changed since it last acknowledged, then what changes live, at least once. Items are
    /// what `path` names (a pattern whose last segment is `*`, or `/orders`: `/orders/K1-042`,
    /// one per order), by default the policy's `items` of each document's context (each order
    /// for `orders` in the default policy), else its top-level keys; of `doc`, else of every partition of
    /// `context`, else of every document.
    #[uniffi::method(default(doc = None, context = None, path = None))]
    pub fn feed(
        &self,
        name: String,
        doc: Option<String>,
        context: Option<String>,
        path: Option<String>,
    ) -> Result<Arc<ConsumerFeed>> {
        guard("feed", || {
            let filter = feed::filter(doc, context, path)?;
            let store = self.store()?;
            let f = outpost_core::Feed::open(&store, &name, filter)?;
            Ok(Arc::new(ConsumerFeed::new(f, self.handle.clone())))
        })
    }

    /// The callback form of `feed`: `listener.onBatch` is called for every batch, on a thread
    /// of its own, and the batch acknowledged when it returns `true`. Lasts until `cancel`.
    #[uniffi::method(default(doc = None, context = None, path = None))]
    pub fn consume(
        &self,
        name: String,
        listener: Arc<dyn FeedListener>,
        doc: Option<String>,
        context: Option<String>,
        path: Option<String>,
    ) -> Result<Arc<Subscription>> {
        guard("consume", || {
            let filter = feed::filter(doc, context, path)?;
            let store = self.store()?;
            let f = outpost_core::Feed::open(&store, &name, filter)?;
            Ok(Arc::new(feed::consume(&self.handle, f, listener)))
        })
    }

    /// How many subscription and watch tasks run now: 0 once every `Subscription`, watch and
    /// stream collector has ended. For leak checks in the app's tests.
    pub fn live_tasks(&self) -> u32 {
        self.live.count()
    }

    /// The audit trail of sync, oldest first: links opened and closed, refusals,
    /// revocations, certificate renewals, erasures, backups, and when each peer acknowledged
    /// holding a document. From `since_ms` (ms since the epoch) if given, of `kinds` (e.g.
    /// `["link_closed", "changes_refused"]`, all when `None`), about `peer` and `doc` if
    /// given; at most `limit`, the newest (0: all). Reads the local disk only.
    #[uniffi::method(default(since_ms = None, kinds = None, peer = None, doc = None, limit = 200))]
    pub fn audit_blocking(
        &self,
        since_ms: Option<u64>,
        kinds: Option<Vec<String>>,
        peer: Option<String>,
        doc: Option<String>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>> {
        guard("audit", || {
            let kinds = kinds
                .unwrap_or_default()
                .iter()
                .map(|k| k.parse())
                .collect::<std::result::Result<Vec<_>, _>>()?;
            let query = outpost_core::AuditQuery {
                since_ms,
                until_ms: None,
                kinds,
                peer,
                doc,
                limit: limit as usize,
            };
            Ok(self
                .store()?
                .audit()
                .query(&query)?
                .iter()
                .map(AuditEntry::from)
                .collect())
        })
    }

    /// What is synced: whether any peer is connected, and how many changes of this node
    /// other devices are not known to have. Blocks the caller at most 5 s (the engine's
    /// answer), then fails with `Network`; `status` and `watchStatus` do not block.
    pub fn status_blocking(&self) -> Result<SyncStatus> {
        guard("status", || {
            self.with_open(|o| match &o.node {
                None => Ok(SyncStatus::offline()),
                Some(node) => {
                    let status = self.handle.block_on(async {
                        tokio::time::timeout(ENGINE_TIMEOUT, node.status()).await
                    });
                    let status = status.map_err(|_| engine_timeout("status"))??;
                    Ok(SyncStatus::new(&status, &node.connected_peers()))
                }
            })
        })
    }

    /// What is synced, without blocking the caller (Kotlin `suspend`, Swift `async`); see
    /// `statusBlocking`.
    pub async fn status(self: Arc<Self>) -> Result<SyncStatus> {
        let this = self.clone();
        self.blocking("status", move || this.status_blocking())
            .await
    }

    /// A live value: the JSON at `path` of `doc` now, then each time it changes (see
    /// `ValueWatch.next`); `null` while the document does not exist here. The Kotlin and
    /// Swift layers make it a `Flow` / `AsyncStream`.
    #[uniffi::method(default(path = ""))]
    pub fn watch(self: Arc<Self>, doc: String, path: String) -> Result<Arc<ValueWatch>> {
        guard("watch", || {
            Ok(Arc::new(live::watch_value(&self, doc, path)?))
        })
    }

    /// The live sync status: now, then each time it changes (links, writes, peers'
    /// acknowledgements; looked at again every second).
    pub fn watch_status(self: Arc<Self>) -> Result<Arc<StatusWatch>> {
        guard("watchStatus", || Ok(Arc::new(live::watch_status(&self)?)))
    }

    /// A live query over `doc`: its result now, then each time it changes, evaluated here
    /// and kept current from the changed paths only.
    pub fn watch_query(self: Arc<Self>, doc: String, query: Query) -> Result<Arc<QueryWatch>> {
        guard("watchQuery", || {
            Ok(Arc::new(live::watch_query(&self, doc, query)?))
        })
    }

    /// The value at `path` as JSON text without blocking the caller (Kotlin `suspend`, Swift
    /// `async`); see `getBlocking`.
    pub async fn get(self: Arc<Self>, doc: String, path: String) -> Result<Option<String>> {
        let this = self.clone();
        self.blocking("get", move || this.get_blocking(doc, path))
            .await
    }

    /// Writes the JSON value `json` at `path` without blocking the caller (with durable
    /// writes, it waits for the disk); see `putBlocking`.
    pub async fn put(self: Arc<Self>, doc: String, path: String, json: String) -> Result<()> {
        let this = self.clone();
        self.blocking("put", move || this.put_blocking(doc, path, json))
            .await
    }

    /// Writes the JSON value `json` at `path` durably, then waits until another device of the
    /// site or the cloud holds it on its disk: `WriteAck.Site` names that device. After
    /// `replicatedTimeoutMs` without one it returns `WriteAck.ThisDevice` ("stored on this
    /// device only", not an error). Blocks the caller for as long; `putReplicated` does not.
    /// A store opened with `openLocal` has no peers: `InvalidConfig`, nothing written.
    pub fn put_replicated_blocking(
        &self,
        doc: String,
        path: String,
        json: String,
    ) -> Result<WriteAck> {
        self.replicated("putReplicated", doc, |this, d| {
            let value = parse_json(&json, d, &path)?;
            this.on_doc("putReplicated", d, |s, d| {
                s.put(d, &path, value, Durability::Durable)
            })
        })
    }

    /// `putReplicatedBlocking` without blocking the caller (Kotlin `suspend`, Swift `async`).
    pub async fn put_replicated(
        self: Arc<Self>,
        doc: String,
        path: String,
        json: String,
    ) -> Result<WriteAck> {
        let this = self.clone();
        self.blocking("putReplicated", move || {
            this.put_replicated_blocking(doc, path, json)
        })
        .await
    }

    /// Applies `ops` to `doc` atomically and durably (see `transactBlocking`), then waits for
    /// another device of the site or the cloud to hold them, as `putReplicatedBlocking`
    /// says.
    pub fn transact_replicated_blocking(&self, doc: String, ops: Vec<TxOp>) -> Result<WriteAck> {
        self.replicated("transactReplicated", doc, |this, d| {
            this.apply_ops(
                "transactReplicated",
                d.to_string(),
                Mode::Plain,
                Durability::Durable,
                ops,
            )
            .map(|_| ())
        })
    }

    /// `transactReplicatedBlocking` without blocking the caller.
    pub async fn transact_replicated(
        self: Arc<Self>,
        doc: String,
        ops: Vec<TxOp>,
    ) -> Result<WriteAck> {
        let this = self.clone();
        self.blocking("transactReplicated", move || {
            this.transact_replicated_blocking(doc, ops)
        })
        .await
    }

    /// Applies `ops` to `doc` atomically without blocking the caller; see
    /// `transactBlocking`.
    pub async fn transact(self: Arc<Self>, doc: String, ops: Vec<TxOp>) -> Result<()> {
        let this = self.clone();
        self.blocking("transact", move || this.transact_blocking(doc, ops))
            .await
    }

    /// Dials `address` (`host:port`, resolved again on every dial) from now on and keeps the
    /// link up; returns whether it was new. For peers learnt at runtime (a QR code, the
    /// management backend).
    pub fn add_peer(&self, address: String) -> Result<bool> {
        guard("addPeer", || {
            self.with_open(|o| match &o.node {
                None => Err(OutpostError::network(
                    "this store runs no node (openLocal): open it with a certificate to link with peers".into(),
                )),
                Some(node) => Ok(node.add_peer(&address)),
            })
        })
    }

    /// Stops dialing `address` (added with `addPeer` or in the config) and closes its link;
    /// returns whether it was a peer of this node.
    pub fn remove_peer(&self, address: String) -> Result<bool> {
        guard("removePeer", || {
            self.with_open(|o| Ok(o.node.as_ref().is_some_and(|n| n.remove_peer(&address))))
        })
    }

    /// Dials every peer whose link is down now, without waiting for the backoff: call it
    /// when the app comes back to the foreground or the network changes.
    pub fn reconnect_now(&self) -> Result<()> {
        guard("reconnectNow", || {
            self.with_open(|o| {
                if let Some(n) = &o.node {
                    n.reconnect_now();
                }
                Ok(())
            })
        })
    }

    /// Takes a revocation signed by the fleet CA (the bytes of the file `outpost cert revoke
    /// --out` writes, e.g. pushed by the app's management backend): the device's links close,
    /// its handshakes and changes are refused, and the revocation spreads to every peer.
    /// Returns whether it was new here. Revocations that peers send are taken without the
    /// app doing anything.
    pub fn revoke_blocking(&self, record: Vec<u8>) -> Result<bool> {
        guard("revoke", || {
            let record = outpost_core::revocation::SignedRevocation::from_bytes(&record)
                .map_err(|e| OutpostError::certificate(e.to_string()))?;
            self.with_open(|o| match &o.node {
                None => Err(OutpostError::network(
                    "this store runs no node (openLocal): open it with a certificate to take revocations".into(),
                )),
                Some(node) => self
                    .handle
                    .block_on(async {
                        tokio::time::timeout(ENGINE_TIMEOUT, node.learn_revocation(record)).await
                    })
                    .map_err(|_| engine_timeout("revoke"))?
                    .map_err(OutpostError::from),
            })
        })
    }

    /// Waits until the device `peer` (its id, e.g. `pos-1`) is connected, at most
    /// `timeout_ms`; returns whether it is.
    pub async fn wait_for_peer(&self, peer: String, timeout_ms: u32) -> Result<bool> {
        let waiting = guard("waitForPeer", || {
            let id: outpost_core::PeerId = peer.parse()?;
            self.with_open(|o| {
                Ok(o.node.as_ref().map(|node| {
                    // Subscribe before looking, so that a connection in between is seen.
                    let events = node.events();
                    let connected = node.connected_peers().iter().any(|p| p.peer == id);
                    (events, connected, id)
                }))
            })
        })?;
        let Some((mut events, connected, id)) = waiting else {
            return Ok(false);
        };
        if connected {
            return Ok(true);
        }
        let timeout = Duration::from_millis(timeout_ms.into());
        self.on_runtime("waitForPeer", async move {
            let wait = async {
                loop {
                    match events.recv().await {
                        Ok(Event::PeerConnected(p)) if p.peer == id => return true,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return false,
                        _ => {}
                    }
                }
            };
            Ok(tokio::time::timeout(timeout, wait).await.unwrap_or(false))
        })
        .await
    }

    /// Every event of the node from now on, as typed values (`NodeEvent`): links, refused
    /// changes and connections, revocations, in-sync, protocol and storage failures. The
    /// Kotlin layer's `events()` Flow and the Swift layer's `events()` stream wrap it. For a
    /// store without network (openLocal) the stream ends at once.
    pub fn events(&self) -> Result<Arc<EventStream>> {
        guard("events", || {
            self.with_open(|o| {
                Ok(Arc::new(EventStream::new(
                    o.node.as_ref().map(Node::events),
                )))
            })
        })
    }

    /// Waits until document `name` exists here (written here or received from a peer), at
    /// most `timeout_ms`; returns whether it does. Tells "not synced yet" (false after the
    /// timeout) from "synced and empty" (true; reads then return `None`), as automerge-repo's
    /// `whenReady`.
    pub async fn await_document(self: Arc<Self>, name: String, timeout_ms: u32) -> Result<bool> {
        let doc = doc_id(&name)?;
        let timeout = Duration::from_millis(timeout_ms.into());
        let node = Arc::downgrade(&self);
        self.on_runtime(
            "awaitDocument",
            crate::live::await_document(node, doc, timeout),
        )
        .await
    }

    /// Takes the node off the network while the app is in the background: closes every
    /// link, stops dialing and refuses connections; the store stays open (reads and writes
    /// go on and sync after `resume`). Returns once the links are closed. Nothing for a store
    /// without network (openLocal).
    pub async fn pause(self: Arc<Self>) -> Result<()> {
        // The future holds nothing of the node: a shutdown meanwhile is not held up.
        let pausing = guard("pause", || {
            self.with_open(|o| Ok(o.node.as_ref().map(Node::pause)))
        })?;
        match pausing {
            Some(closing) => {
                self.on_runtime("pause", async move { Ok(closing.await?) })
                    .await
            }
            None => Ok(()),
        }
    }

    /// Puts a paused node back on the network: accepts connections and dials every peer
    /// now (as `reconnectNow`). Call it when the app comes to the foreground; the layers'
    /// `onForeground()` does, with `reconnectNow`.
    pub fn resume(&self) -> Result<()> {
        guard("resume", || {
            self.with_open(|o| {
                if let Some(n) = &o.node {
                    n.resume();
                }
                Ok(())
            })
        })
    }

    /// Whether `pause` was called without a `resume` since.
    pub fn is_paused(&self) -> bool {
        self.with_open(|o| Ok(o.node.as_ref().is_some_and(Node::is_paused)))
            .unwrap_or(false)
    }

    /// Shuts the node down: sends what peers have not received yet (waiting about a
    /// second), closes the links, flushes and releases the data directory and the port.
    /// Every later call fails with `ShutDown`; shutting down twice does nothing.
    ///
    /// (Not named `close`: Kotlin objects already have `close()`, which frees the handle
    /// and, if the node is still running, shuts it down too, blocking for up to 3 s.)
    pub async fn shutdown(&self) -> Result<()> {
        let result = self.stop_node().await;
        self.release_runtime();
        result
    }

    /// `shutdown`, blocking the calling thread until done.
    pub fn shutdown_blocking(&self) -> Result<()> {
        guard("shutdownBlocking", || {
            if self.is_shut_down() {
                return Ok(());
            }
            let result = self.handle.block_on(self.stop_node());
            self.release_runtime();
            result
        })
    }
}

/// The async forms (Kotlin `suspend`, Swift `async`, Python coroutines) of the calls an app
/// makes while a customer waits: each runs on the node's blocking pool, so a durable write's
/// wait for the disk never holds the caller's thread (a UI thread). The `*Blocking` forms
/// block the caller and are for scripts, tests and worker threads.
#[uniffi::export]
impl Outpost {
    /// The documents that hold data, sorted; see `documentsBlocking`. Does not block the caller; `documentsBlocking` does.
    pub async fn documents(self: Arc<Self>) -> Result<Vec<String>> {
        self.off_thread("documents", move |n| n.documents_blocking())
            .await
    }

    /// The string at `path`, or `None`; `WrongType` if it is not a string. Does not block the caller; `getStringBlocking` does.
    pub async fn get_string(self: Arc<Self>, doc: String, path: String) -> Result<Option<String>> {
        self.off_thread("getString", move |n| n.get_string_blocking(doc, path))
            .await
    }

    /// The integer (or counter) at `path`, or `None`; `WrongType` if it is not one. Does not block the caller; `getIntBlocking` does.
    pub async fn get_int(self: Arc<Self>, doc: String, path: String) -> Result<Option<i64>> {
        self.off_thread("getInt", move |n| n.get_int_blocking(doc, path))
            .await
    }

    /// The number at `path`, or `None`; `WrongType` if it is not a number. Does not block the caller; `getDoubleBlocking` does.
    pub async fn get_double(self: Arc<Self>, doc: String, path: String) -> Result<Option<f64>> {
        self.off_thread("getDouble", move |n| n.get_double_blocking(doc, path))
            .await
    }

    /// The boolean at `path`, or `None`; `WrongType` if it is not a boolean. Does not block the caller; `getBoolBlocking` does.
    pub async fn get_bool(self: Arc<Self>, doc: String, path: String) -> Result<Option<bool>> {
        self.off_thread("getBool", move |n| n.get_bool_blocking(doc, path))
            .await
    }

    /// Writes a string at `path`. Does not block the caller; `putStringBlocking` does.
    pub async fn put_string(
        self: Arc<Self>,
        doc: String,
        path: String,
        value: String,
    ) -> Result<()> {
        self.off_thread("putString", move |n| {
            n.put_string_blocking(doc, path, value)
        })
        .await
    }

    /// Writes an integer at `path` (for quantities several devices change, `increment`). Does not block the caller; `putIntBlocking` does.
    pub async fn put_int(self: Arc<Self>, doc: String, path: String, value: i64) -> Result<()> {
        self.off_thread("putInt", move |n| n.put_int_blocking(doc, path, value))
            .await
    }

    /// Writes a number at `path`; `InvalidValue` for NaN or infinity. Does not block the caller; `putDoubleBlocking` does.
    pub async fn put_double(self: Arc<Self>, doc: String, path: String, value: f64) -> Result<()> {
        self.off_thread("putDouble", move |n| {
            n.put_double_blocking(doc, path, value)
        })
        .await
    }

    /// Writes a boolean at `path`. Does not block the caller; `putBoolBlocking` does.
    pub async fn put_bool(self: Arc<Self>, doc: String, path: String, value: bool) -> Result<()> {
        self.off_thread("putBool", move |n| n.put_bool_blocking(doc, path, value))
            .await
    }

    /// Deletes the value at `path`; `NotFound` if nothing is there. Does not block the caller; `deleteBlocking` does.
    pub async fn delete(self: Arc<Self>, doc: String, path: String) -> Result<()> {
        self.off_thread("delete", move |n| n.delete_blocking(doc, path))
            .await
    }

    /// Inserts the JSON value `json` into the list at `path` before `index`. Does not block the caller; `insertBlocking` does.
    pub async fn insert(
        self: Arc<Self>,
        doc: String,
        path: String,
        index: u32,
        json: String,
    ) -> Result<()> {
        self.off_thread("insert", move |n| n.insert_blocking(doc, path, index, json))
            .await
    }

    /// Appends the JSON value `json` to the list at `path`. Does not block the caller; `pushBlocking` does.
    pub async fn push(self: Arc<Self>, doc: String, path: String, json: String) -> Result<()> {
        self.off_thread("push", move |n| n.push_blocking(doc, path, json))
            .await
    }

    /// Adds `delta` (negative to subtract) to the counter at `path`. Does not block the caller; `incrementBlocking` does.
    pub async fn increment(self: Arc<Self>, doc: String, path: String, delta: i64) -> Result<()> {
        self.off_thread("increment", move |n| n.increment_blocking(doc, path, delta))
            .await
    }

    /// Applies `ops` at most once per `write_id` in `doc`; `true` if applied now. Does not block the caller; `transactOnceBlocking` does.
    pub async fn transact_once(
        self: Arc<Self>,
        doc: String,
        write_id: String,
        ops: Vec<TxOp>,
    ) -> Result<bool> {
        self.off_thread("transactOnce", move |n| {
            n.transact_once_blocking(doc, write_id, ops)
        })
        .await
    }

    /// Issues the device's next ticket number and applies `ops` with it in one change (an
    /// order with its stock decrements); returns the ticket. Does not block the caller; `transactWithTicketBlocking` does.
    pub async fn transact_with_ticket(
        self: Arc<Self>,
        doc: String,
        ops: Vec<TxOp>,
    ) -> Result<String> {
        self.off_thread("transactWithTicket", move |n| {
            n.transact_with_ticket_blocking(doc, ops)
        })
        .await
    }

    /// Every concurrent value at `path`, the winner first. Does not block the caller; `conflictsBlocking` does.
    pub async fn conflicts(self: Arc<Self>, doc: String, path: String) -> Result<Vec<Conflict>> {
        self.off_thread("conflicts", move |n| n.conflicts_blocking(doc, path))
            .await
    }

    /// Takes a revocation signed by the fleet CA; whether it was new here. Does not block the caller; `revokeBlocking` does.
    pub async fn revoke(self: Arc<Self>, record: Vec<u8>) -> Result<bool> {
        self.off_thread("revoke", move |n| n.revoke_blocking(record))
            .await
    }
}

impl Drop for Outpost {
    fn drop(&mut self) {
        let open = self
            .open
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let runtime = self
            .runtime
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let Some(rt) = runtime else { return };
        match open {
            Some(Open {
                node: Some(node),
                store,
            }) => {
                // Not shut down: shut down as well as a destructor can, on a thread of its own
                // so that the thread dropping the handle (a UI thread calling `close()`, a
                // finalizer) never waits for peers or the disk.
                let stopping = std::thread::Builder::new()
                    .name("outpost-drop".into())
                    .spawn(move || {
                        let _ = rt.block_on(async {
                            tokio::time::timeout(DROP_SHUTDOWN_TIMEOUT, node.shutdown()).await
                        });
                        drop(store);
                        rt.shutdown_background();
                    });
                if let Err(e) = stopping {
                    tracing::warn!(error = %e, "cannot start a thread to shut the dropped node down; its links are cut");
                }
            }
            _ => rt.shutdown_background(),
        }
    }
}
