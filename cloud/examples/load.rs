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
//!    directory (`site/<site>/`), as if the site's POS had synced its day.
//! 3. Starts the real cloud server (this program re-executed in cloud mode, which runs
//!    `outpost_cloud::server::main_from`) on 127.0.0.1.
//! 4. For every site, a fresh device (`outpost_transport::Node`, its own store) connects over
//!    QUIC with mutual TLS, pulls the site's three documents from the cloud, and disconnects:
//!    every site is loaded by the cloud at least once. `--concurrency` devices at a time.
//! 5. Waits until the cloud has unloaded the idle sites (`--idle-secs`), then reports the
//!    cloud's RSS: at start, the peak (VmHWM) while loading, and idle.
//!
//! Everything runs on loopback; the run is bounded by the number of sites and ends by itself.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use outpost_core::{DocumentId, Durability, PeerInfo, Store, StoreOptions};
use outpost_transport::{FleetCa, Node, NodeConfig};
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
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// The cloud unloads documents and sites idle for this long.
    #[arg(long, default_value_t = 10)]
    idle_secs: u64,
    /// sled page cache of the cloud, in MiB.
    #[arg(long, default_value_t = 64)]
    cache_mb: u64,
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

/// One device of `site` pulls the site's documents from the cloud, then stops.
async fn sync_one_device(
    ca: &FleetCa,
    site: &str,
    root: &Path,
    cloud: SocketAddr,
) -> Result<Duration> {
    let started = Instant::now();
    let info = PeerInfo::parse(site, "pos-1", "pos")?;
    let cert = ca.issue(&info)?;
    let dir = root.join(site);
    let mut config = NodeConfig::new(&dir, cert);
    config.listen = "127.0.0.1:0".parse()?;
    config.static_peers = vec![cloud];
    let node = Node::start(config).await?;
    let cloud_peer = "cloud-1".parse()?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let status = node.status().await?;
        let done = node.store().documents()?.len() == 3
            && status.peer(&cloud_peer).is_some_and(|p| {
                p.connected
                    && p.docs.len() == 3
                    && p.docs
                        .iter()
                        .all(|d| d.last_sync.is_some() && !d.we_lack && d.they_lack == 0)
            });
        if done {
            break;
        }
        if Instant::now() > deadline {
            bail!("{site}: the device did not sync within 120 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    node.shutdown().await?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(started.elapsed())
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
    let size: u64 = walk_size(&data);
    println!("  cloud data directory: {}", mib(size / 1024));

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
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
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
    let devices = root.join("devices");
    std::fs::create_dir_all(&devices)?;
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let ca = Arc::new(ca);
    let sites = args.sites;
    let result: Result<Vec<Duration>> = runtime.block_on(async {
        let mut workers = Vec::new();
        for _ in 0..args.concurrency.max(1) {
            let (next, done, ca, devices) =
                (next.clone(), done.clone(), ca.clone(), devices.clone());
            workers.push(tokio::spawn(async move {
                let mut times = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= sites {
                        return Ok::<_, anyhow::Error>(times);
                    }
                    times.push(sync_one_device(&ca, &site_name(i), &devices, quic).await?);
                    let n = done.fetch_add(1, Ordering::SeqCst) + 1;
                    if n % 100 == 0 || n == sites {
                        let (rss, hwm) = rss_kib(pid).unwrap_or_default();
                        println!(
                            "  {n} sites synced ({:.0?}): cloud RSS {}, peak {}",
                            started.elapsed(),
                            mib(rss),
                            mib(hwm)
                        );
                    }
                }
            }));
        }
        let mut all = Vec::new();
        for w in workers {
            all.extend(w.await??);
        }
        Ok(all)
    });
    let mut times = result?;
    times.sort();
    let (rss_busy, peak) = rss_kib(pid).unwrap_or_default();
    let text = http_get(http, "/metrics")?;
    println!(
        "every site synced once in {:.1?} (per device: median {:.0?}, max {:.0?}); cloud RSS {}, peak {}; sites loaded {}, documents loaded {}",
        started.elapsed(),
        times.get(times.len() / 2).copied().unwrap_or_default(),
        times.last().copied().unwrap_or_default(),
        mib(rss_busy),
        mib(peak),
        metric(&text, "outpost_sites_loaded").unwrap_or(0),
        metric(&text, "outpost_documents_loaded").unwrap_or(0),
    );
    let applied = metric(&text, "outpost_bytes_out_total").unwrap_or(0);
    println!("  sync bytes sent by the cloud: {}", mib(applied / 1024));

    // Idle: wait until the cloud has unloaded every site.
    let deadline = Instant::now() + Duration::from_secs(args.idle_secs * 3 + 60);
    loop {
        let text = http_get(http, "/metrics")?;
        if metric(&text, "outpost_sites_loaded") == Some(0) {
            break;
        }
        if Instant::now() > deadline {
            bail!("sites were not unloaded in time:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    // Give the allocator a moment to return freed pages.
    std::thread::sleep(Duration::from_secs(2));
    let (idle, peak) = rss_kib(pid).unwrap_or_default();
    println!(
        "RESULT sites={} contexts=3 orders_per_site={} cloud_rss_start={} cloud_rss_peak={} cloud_rss_idle={}",
        args.sites,
        args.orders,
        mib(start_rss),
        mib(peak),
        mib(idle)
    );
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
