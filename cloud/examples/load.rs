//! Memory of the cloud peer with many sites: prints its resident set size (RSS).
//!
//! ```sh
//! cargo run --release -p outpost-cloud --example load -- --sites 1000
//! ```
//!
//! 1. Builds one day of a restaurant: a menu (40 items, price changes), stock (40 counters
//!    decremented by every order) and `orders/2026-11-27` (300 orders of 3 lines, each
//!    created then moved through 3 status changes): about 1,800 Automerge changes.
//! 2. Writes those three documents into the namespace of every site of a fresh cloud data
//!    directory (`site/<site>/`), as if the site's POS had synced its day, compacted as the
//!    cloud keeps them.
//! 3. Starts the real cloud server (this program re-executed in cloud mode, which runs
//!    `outpost_cloud::server::main_from`) on 127.0.0.1.
//! 4. Phase 1: for every site, a fresh device (a real sync engine and QUIC session with
//!    mutual TLS; the devices share one client endpoint and one sled database in this
//!    process) pulls the site's three documents from the cloud and leaves, `--concurrency`
//!    at a time: every site is loaded by the cloud at least once. Then the cloud unloads the
//!    idle sites (`--idle-secs`) and its RSS is read: idle, no device connected.
//! 5. Phase 2: every site's device reconnects (resuming from its persisted sync state) and
//!    stays connected. Once the cloud has dropped the idle documents, its RSS is read again:
//!    idle, every device connected.
//!
//! The cloud's RSS and peak (VmHWM) come from /proc (Linux).
//! Everything runs on loopback; the run is bounded by the number of sites and ends by itself.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use outpost_core::{
    DocumentId, Durability, Engine, EngineConfig, PeerId, PeerInfo, Policy, Store, StoreOptions,
    Timestamp,
};
use outpost_transport::{self as tls, TransportTuning};
use outpost_transport::{
    DenyList, FleetCa, PeerFilter, Session, SessionConfig, SessionEvent, SiteRule,
};
use serde_json::json;

/// Measures the memory of `outpost-cloud` with many sites.
#[derive(Debug, Parser)]
struct Args {
    /// Number of sites.
    #[arg(long, default_value_t = 1000)]
    sites: usize,
    /// Orders per site and day.
    #[arg(long, default_value_t = 300)]
    orders: usize,
    /// Devices syncing at the same time.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// The cloud unloads documents and sites idle for this long.
    #[arg(long, default_value_t = 10)]
    idle_secs: u64,
    /// sled page cache of the cloud, in MiB.
    #[arg(long, default_value_t = 64)]
    cache_mb: u64,
    /// Write the cloud's log (level info) to this file instead of discarding it (level warn).
    #[arg(long)]
    cloud_log: Option<PathBuf>,
    /// Keep the data directory here instead of a temporary one.
    #[arg(long)]
    keep: Option<PathBuf>,
    /// Internal: run as the cloud server with the remaining arguments.
    #[arg(long, hide = true, num_args = 0.., allow_hyphen_values = true, trailing_var_arg = true)]
    cloud_child: Option<Vec<String>>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(cloud_args) = args.cloud_child {
        let mut all = vec!["outpost-cloud".to_string()];
        all.extend(cloud_args);
        let code = outpost_cloud::server::main_from(all);
        std::process::exit(if code == std::process::ExitCode::SUCCESS {
            0
        } else {
            1
        });
    }
    run(args)
}

const CATEGORIES: [&str; 3] = ["mains", "sides", "drinks"];

fn menu_doc() -> DocumentId {
    "menu".parse().expect("valid id")
}
fn stock_doc() -> DocumentId {
    "stock".parse().expect("valid id")
}
fn orders_doc() -> DocumentId {
    "orders/2026-11-27".parse().expect("valid id")
}

/// One day of a restaurant, written through the store API; returns the three documents as
/// Automerge bytes.
fn template_day(dir: &Path, orders: usize) -> Result<Vec<(DocumentId, Vec<u8>)>> {
    let store = Store::open_with(
        dir,
        StoreOptions {
            identity: Some(PeerInfo::parse("template", "pos-1", "pos")?),
            ..StoreOptions::default()
        },
    )?;
    let fast = Durability::Fast;
    let (menu, stock, day) = (menu_doc(), stock_doc(), orders_doc());
    store.put(&menu, "/items", json!({}), fast)?;
    for i in 0..40 {
        store.put(
            &menu,
            &format!("/items/sku-{i:02}"),
            json!({"name": format!("Dish number {i}"), "price": 500 + i * 25, "available": true, "category": CATEGORIES[i % 3]}),
            fast,
        )?;
        store.increment(&stock, &format!("/sku-{i:02}"), 200, fast)?;
    }
    for i in 0..20 {
        store.put(
            &menu,
            &format!("/items/sku-{i:02}/price"),
            json!(550 + i * 25),
            fast,
        )?;
    }
    store.put(&day, "/orders", json!({}), fast)?;
    for n in 0..orders {
        let id = format!("pos-1-{n:05}");
        let lines: Vec<_> = (0..3)
            .map(|k| json!({"sku": format!("sku-{:02}", (n * 7 + k * 13) % 40), "qty": 1 + (n + k) % 3, "price": 500 + ((n + k) % 40) * 25}))
            .collect();
        store.put(
            &day,
            &format!("/orders/{id}"),
            json!({"lines": lines, "total": 2400 + (n % 17) * 50, "table": n % 24, "status": "placed", "at": 1_795_766_400_000u64 + n as u64 * 120_000}),
            fast,
        )?;
        store.transact(&stock, fast, |tx| {
            for k in 0..3 {
                tx.increment(&format!("/sku-{:02}", (n * 7 + k * 13) % 40), -1)?;
            }
            Ok(())
        })?;
        for status in ["preparing", "ready", "paid"] {
            store.put(&day, &format!("/orders/{id}/status"), json!(status), fast)?;
        }
    }
    let mut out = Vec::new();
    for doc in [menu, stock, day] {
        let changes = store.history_len(&doc)?;
        let bytes = store.export(&doc)?;
        println!(
            "  {doc}: {changes} changes, {} KiB saved",
            bytes.len() / 1024
        );
        out.push((doc, bytes));
    }
    Ok(out)
}

fn site_name(i: usize) -> String {
    format!("site-{i:05}")
}

/// Writes the day into every site's namespace of the cloud's database.
fn seed_cloud(data: &Path, sites: usize, day: &[(DocumentId, Vec<u8>)]) -> Result<()> {
    let db = sled::Config::new()
        .path(data)
        .cache_capacity(64 * 1024 * 1024)
        .open()
        .context("open the cloud data directory")?;
    let started = Instant::now();
    for i in 0..sites {
        let store = Store::on_db(
            db.clone(),
            &format!("site/{}/", site_name(i)),
            StoreOptions::default(),
        )?;
        for (doc, bytes) in day {
            store.import(doc, bytes)?;
            // As the cloud keeps documents once it has seen them (see server/site.rs).
            store.compact(doc)?;
        }
        if (i + 1) % 250 == 0 {
            println!("  seeded {} sites ({:.0?})", i + 1, started.elapsed());
        }
    }
    db.flush()?;
    Ok(())
}

/// RSS and peak RSS of a process, in KiB, from /proc.
fn rss_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn free_port(udp: bool) -> Result<u16> {
    Ok(if udp {
        std::net::UdpSocket::bind("127.0.0.1:0")?
            .local_addr()?
            .port()
    } else {
        std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port()
    })
}

fn http_get(addr: SocketAddr, path: &str) -> Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET {path} HTTP/1.0\r\n\r\n")?;
    let mut body = String::new();
    s.read_to_string(&mut body)?;
    Ok(body)
}

fn metric(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

struct CloudChild(Child);

impl Drop for CloudChild {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What the devices of the run share: one sled database (a namespace per device) and one
/// QUIC client endpoint, so that a thousand devices cost the load process little.
struct Fleet {
    ca: FleetCa,
    db: sled::Db,
    endpoint: quinn::Endpoint,
    cloud: SocketAddr,
    cloud_peer: PeerId,
    /// Devices stay connected until this turns true.
    stop: tokio::sync::watch::Receiver<bool>,
    /// Links that failed (handshake or later) and were redialed.
    redials: std::sync::atomic::AtomicU64,
}

/// A device of `site`: connects to the cloud, pulls the site's documents, reports the time
/// it took on `synced`, then stays connected (answering keep-alives and sync messages)
/// until the fleet is stopped, or leaves at once when `stay` is false. Like a real device,
/// it redials with backoff when a handshake fails or the link drops (on this 2-core machine
/// the load generator competes with the cloud for CPU, and handshakes can time out).
async fn device(
    fleet: Arc<Fleet>,
    site: String,
    stay: bool,
    synced: tokio::sync::mpsc::UnboundedSender<Duration>,
) -> Result<()> {
    let started = Instant::now();
    let info = PeerInfo::parse(&site, "pos-1", "pos")?;
    let cert = fleet.ca.issue(&info)?;
    let store = Store::on_db(
        fleet.db.clone(),
        &format!("device/{site}/"),
        StoreOptions {
            identity: Some(info.clone()),
            ..StoreOptions::default()
        },
    )?;
    let mut engine = Engine::new(
        store.clone(),
        EngineConfig::new(info.clone(), Policy::default()),
    );
    let filter = PeerFilter::new(SiteRule::for_identity(&info), DenyList::new());
    let client = tls::client_config(&cert, &filter, &TransportTuning::default())?;
    let mut stop = fleet.stop.clone();
    let mut reported = false;
    let mut failures = 0u32;
    'links: loop {
        if failures > 0 {
            if failures > 6 {
                bail!("{site}: gave up after {failures} failed links");
            }
            fleet
                .redials
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(100 << failures)).await;
        }
        let dial = fleet
            .endpoint
            .connect_with(client.clone(), fleet.cloud, tls::SERVER_NAME)?;
        let conn = match tokio::time::timeout(Duration::from_secs(30), dial).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => {
                eprintln!("  {site}: handshake failed ({e}); redialing");
                failures += 1;
                continue;
            }
            Err(_) => {
                eprintln!("  {site}: handshake timed out; redialing");
                failures += 1;
                continue;
            }
        };
        let cloud = tls::peer_info_of(&conn)?;
        let (inbox, mut events) = tokio::sync::mpsc::channel(1024);
        let mut session = Session::start(conn, cloud.clone(), SessionConfig::default(), inbox);
        engine.handle_connect(cloud, Timestamp::now());
        let mut check = tokio::time::interval(Duration::from_millis(100));
        loop {
            while let Some(t) = engine.poll_transmit() {
                if session.send(t.doc.as_ref(), t.bytes).is_err() {
                    break;
                }
            }
            while engine.poll_event().is_some() {}
            let sleep = engine
                .poll_timeout()
                .map(|at| Duration::from_millis(at.millis_since(Timestamp::now()).max(5)))
                .unwrap_or(Duration::from_secs(3600));
            tokio::select! {
                event = events.recv() => match event {
                    Some(SessionEvent::Message { peer, bytes, .. }) => {
                        if let Err(e) = engine.handle_message(&peer, &bytes, Timestamp::now()) {
                            bail!("{site}: {e}");
                        }
                    }
                    Some(SessionEvent::Closed { error, .. }) => {
                        eprintln!("  {site}: link closed ({error}); redialing");
                        engine.handle_disconnect(&fleet.cloud_peer, Timestamp::now());
                        failures += 1;
                        continue 'links;
                    }
                    None => bail!("{site}: session ended"),
                },
                _ = tokio::time::sleep(sleep) => engine.handle_timeout(Timestamp::now()),
                _ = check.tick(), if !reported => {
                    let status = engine.status();
                    let done = store.documents()?.len() == 3
                        && status.peer(&fleet.cloud_peer).is_some_and(|p| {
                            p.connected
                                && p.docs.len() == 3
                                && p.docs.iter().all(|d| d.last_sync.is_some() && !d.we_lack && d.they_lack == 0)
                        });
                    if done {
                        reported = true;
                        failures = 0;
                        let _ = synced.send(started.elapsed());
                        // The device's own copies are not what is measured: free them.
                        store.evict_idle(Duration::ZERO);
                        if !stay {
                            break 'links;
                        }
                    }
                    if started.elapsed() > Duration::from_secs(180) {
                        bail!("{site}: did not sync within 180 s");
                    }
                }
                _ = stop.changed() => break 'links,
            }
        }
    }
    engine.handle_disconnect(&fleet.cloud_peer, Timestamp::now());
    Ok(())
}

/// Runs one device per site, `concurrency` syncing at a time; returns the sync times.
fn run_devices(
    runtime: &tokio::runtime::Runtime,
    fleet: &Arc<Fleet>,
    sites: usize,
    concurrency: usize,
    stay: bool,
    pid: u32,
) -> Result<Vec<Duration>> {
    let started = Instant::now();
    runtime.block_on(async {
        let (synced_tx, mut synced) = tokio::sync::mpsc::unbounded_channel();
        let slots = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
        let mut tasks = tokio::task::JoinSet::new();
        let mut times = Vec::new();
        for i in 0..sites {
            // A slot is held until the device has synced (or failed).
            let permit = slots.clone().acquire_owned().await?;
            let (fleet, tx) = (fleet.clone(), synced_tx.clone());
            let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
            tasks.spawn(async move {
                let result = device(fleet, site_name(i), stay, done_tx).await;
                result.map_err(|e| anyhow!("device of {}: {e:#}", site_name(i)))
            });
            tokio::spawn(async move {
                if let Some(t) = done_rx.recv().await {
                    let _ = tx.send(t);
                }
                drop(permit);
            });
            while let Ok(t) = synced.try_recv() {
                times.push(t);
                progress(times.len(), sites, started, pid);
            }
            while let Some(r) = tasks.try_join_next() {
                r??;
            }
        }
        drop(synced_tx);
        while times.len() < sites {
            tokio::select! {
                t = synced.recv() => match t {
                    Some(t) => {
                        times.push(t);
                        progress(times.len(), sites, started, pid);
                    }
                    None => break,
                },
                Some(r) = tasks.join_next() => r??,
            }
        }
        if !stay {
            while let Some(r) = tasks.join_next().await {
                r??;
            }
        } else {
            // Connected devices run until the fleet stops; failures are reported then.
            tokio::spawn(async move {
                while let Some(r) = tasks.join_next().await {
                    match r {
                        Ok(Err(e)) => eprintln!("load: {e:#}"),
                        Err(e) => eprintln!("load: device task failed: {e}"),
                        Ok(Ok(())) => {}
                    }
                }
            });
        }
        Ok(times)
    })
}

fn progress(n: usize, sites: usize, started: Instant, pid: u32) {
    if n % 100 == 0 || n == sites {
        let (rss, hwm) = rss_kib(pid).unwrap_or_default();
        println!(
            "  {n} devices synced ({:.0?}): cloud RSS {}, peak {}",
            started.elapsed(),
            mib(rss),
            mib(hwm)
        );
    }
}

fn summary(times: &mut [Duration]) -> String {
    times.sort();
    format!(
        "per device: median {:.0?}, max {:.0?}",
        times.get(times.len() / 2).copied().unwrap_or_default(),
        times.last().copied().unwrap_or_default()
    )
}

/// Waits until the cloud's metrics satisfy `ok`, polling twice a second.
fn wait_metrics(
    http: SocketAddr,
    what: &str,
    timeout: Duration,
    ok: impl Fn(&str) -> bool,
) -> Result<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let text = http_get(http, "/metrics")?;
        if ok(&text) {
            return Ok(text);
        }
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn run(args: Args) -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let root = args
        .keep
        .clone()
        .unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&root)?;
    let data = root.join("cloud-data");
    if data.exists() {
        bail!("{} exists; give an empty --keep directory", data.display());
    }
    println!(
        "load: {} sites x 3 contexts, {} orders per site, idle after {} s, sled cache {} MiB",
        args.sites, args.orders, args.idle_secs, args.cache_mb
    );
    println!("building one day of a restaurant:");
    let day = template_day(&root.join("template"), args.orders)?;
    println!("seeding the cloud data directory:");
    seed_cloud(&data, args.sites, &day)?;
    println!("  cloud data directory: {}", mib(walk_size(&data) / 1024));

    let ca = FleetCa::generate("load")?;
    let cloud_cert = ca.issue(&PeerInfo::parse("load", "cloud-1", "cloud")?)?;
    let cert_dir = root.join("cloud-cert");
    cloud_cert.save(&cert_dir)?;
    let quic: SocketAddr = format!("127.0.0.1:{}", free_port(true)?).parse()?;
    let http: SocketAddr = format!("127.0.0.1:{}", free_port(false)?).parse()?;
    let exe = std::env::current_exe()?;
    let child = Command::new(exe)
        .arg("--cloud-child")
        .args([
            "--data",
            data.to_str().ok_or_else(|| anyhow!("non-UTF-8 path"))?,
        ])
        .args(["--listen", &quic.to_string(), "--http", &http.to_string()])
        .arg("--ca")
        .arg(cert_dir.join("ca.pem"))
        .arg("--cert")
        .arg(cert_dir.join("cert.pem"))
        .arg("--key")
        .arg(cert_dir.join("key.pem"))
        .args(["--idle-secs", &args.idle_secs.to_string()])
        .args(["--cache-mb", &args.cache_mb.to_string()])
        .env(
            "RUST_LOG",
            if args.cloud_log.is_some() {
                "info"
            } else {
                "warn"
            },
        )
        .stdin(Stdio::null())
        .stdout(match &args.cloud_log {
            Some(path) => Stdio::from(std::fs::File::create(path)?),
            None => Stdio::null(),
        })
        .spawn()
        .context("start the cloud")?;
    let pid = child.id();
    let mut cloud = CloudChild(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while http_get(http, "/health")
        .map(|b| !b.contains("200 OK"))
        .unwrap_or(true)
    {
        if Instant::now() > deadline {
            bail!("the cloud did not become healthy within 30 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let (start_rss, _) =
        rss_kib(pid).ok_or_else(|| anyhow!("cannot read /proc/{pid}/status (Linux only)"))?;
    println!("cloud started (pid {pid}): RSS {}", mib(start_rss));

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let fleet = Arc::new(Fleet {
        ca,
        db: sled::Config::new()
            .path(root.join("devices"))
            .cache_capacity(16 * 1024 * 1024)
            .open()?,
        endpoint: {
            let _guard = runtime.enter();
            quinn::Endpoint::client("127.0.0.1:0".parse()?)?
        },
        cloud: quic,
        cloud_peer: "cloud-1".parse()?,
        stop,
        redials: Default::default(),
    });

    println!("phase 1: a fresh device of every site pulls the site's day, then leaves");
    let started = Instant::now();
    let mut times = run_devices(&runtime, &fleet, args.sites, args.concurrency, false, pid)?;
    let (busy, peak) = rss_kib(pid).unwrap_or_default();
    let text = http_get(http, "/metrics")?;
    println!(
        "  every site synced once in {:.1?} ({}); cloud RSS {}, peak {}; sent {}",
        started.elapsed(),
        summary(&mut times),
        mib(busy),
        mib(peak),
        mib(metric(&text, "outpost_bytes_out_total").unwrap_or(0) / 1024),
    );
    let idle_wait = Duration::from_secs(args.idle_secs * 3 + 60);
    wait_metrics(http, "every site unloaded", idle_wait, |t| {
        metric(t, "outpost_sites_loaded") == Some(0)
    })?;
    std::thread::sleep(Duration::from_secs(2));
    let (idle_empty, _) = rss_kib(pid).unwrap_or_default();
    println!("  idle, no device connected: cloud RSS {}", mib(idle_empty));

    println!("phase 2: every site's device reconnects and stays connected");
    let started = Instant::now();
    let mut times = run_devices(&runtime, &fleet, args.sites, args.concurrency, true, pid)?;
    println!(
        "  {} devices connected and in sync in {:.1?} ({})",
        args.sites,
        started.elapsed(),
        summary(&mut times)
    );
    let sites = args.sites as u64;
    let text = wait_metrics(http, "idle documents unloaded", idle_wait, |t| {
        metric(t, "outpost_documents_loaded") == Some(0)
            && metric(t, "outpost_connected_peers") == Some(sites)
    })?;
    std::thread::sleep(Duration::from_secs(2));
    let (idle_connected, peak) = rss_kib(pid).unwrap_or_default();
    println!(
        "  idle, {} devices connected ({} sites loaded, {} documents in memory): cloud RSS {}",
        metric(&text, "outpost_connected_peers").unwrap_or(0),
        metric(&text, "outpost_sites_loaded").unwrap_or(0),
        metric(&text, "outpost_documents_loaded").unwrap_or(0),
        mib(idle_connected)
    );
    println!(
        "  links redialed by devices: {}",
        fleet.redials.load(std::sync::atomic::Ordering::Relaxed)
    );
    println!(
        "RESULT sites={} contexts=3 orders_per_site={} cloud_rss_start={} cloud_rss_peak={} \
         cloud_rss_idle_no_devices={} cloud_rss_idle_all_connected={}",
        args.sites,
        args.orders,
        mib(start_rss),
        mib(peak),
        mib(idle_empty),
        mib(idle_connected)
    );

    stop_tx.send(true)?;
    wait_metrics(http, "devices gone", Duration::from_secs(60), |t| {
        metric(t, "outpost_connected_peers") == Some(0)
    })?;
    // Stop the cloud as an operator would.
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()?;
    if !status.success() {
        bail!("kill -TERM {pid} failed");
    }
    let exited = cloud.0.wait()?;
    println!("cloud stopped on SIGTERM: {exited}");
    if !exited.success() {
        bail!("the cloud exited with {exited}");
    }
    Ok(())
}

fn walk_size(p: &Path) -> u64 {
    let Ok(meta) = std::fs::metadata(p) else {
        return 0;
    };
    if meta.is_file() {
        return meta.len();
    }
    std::fs::read_dir(p)
        .map(|rd| rd.flatten().map(|e| walk_size(&e.path())).sum())
        .unwrap_or(0)
}
