//! Where the time of a `Durability::Replicated` write goes: a POS `Node` and a kiosk `Node`
//! linked over QUIC on loopback, one document of `<orders>` orders; each replicated write is
//! split into its local durable write (until `Store::transact` returns inside
//! `Node::transact`), the propagation until the kiosk's store announces the change to its
//! subscribers, and the rest until the POS learns the kiosk holds it (the kiosk's flush, its
//! answer, the POS applying the answer).
//!
//! ```text
//! replicated_profile <sled|redb> <orders> <writes>
//! ```
//! `RUST_LOG=outpost_transport=trace,outpost_core=debug` adds the nodes' own trace, with
//! timestamps, to stderr. Under callgrind, `--toggle-collect='replicated_profile::measure'`
//! counts only the measured writes (both nodes run in the process).

use std::path::Path;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use outpost_benches::order;
use outpost_core::{
    Acknowledged, DocumentId, Durability, PeerInfo, StorageEngine, Store, StoreOptions,
    SubscriptionFilter,
};
use outpost_transport::{FleetCa, Node, NodeConfig};
use tokio::runtime::Runtime;

const DAY: &str = "orders/2026-12-07";

fn day() -> DocumentId {
    DAY.parse().expect("a valid document id")
}

fn key(n: u64) -> String {
    format!("/orders/o-{n:08}")
}

fn config(
    dir: &Path,
    cert: &outpost_transport::DeviceCert,
    peers: Vec<std::net::SocketAddr>,
) -> NodeConfig {
    let mut c = NodeConfig::new(dir, cert.clone());
    c.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    c.static_peers = peers;
    c.health_period = None;
    c.replicated_timeout = Duration::from_secs(30);
    c
}

/// One write's split, in microseconds: local durable, until the kiosk applied it, total.
type Split = (u128, u128, u128);

#[inline(never)]
fn measure(
    rt: &Runtime,
    pos: &Node,
    written: &Arc<Mutex<Option<Instant>>>,
    applied: &Arc<Mutex<Option<Instant>>>,
    from: u64,
    writes: u64,
) -> Vec<Split> {
    let doc = day();
    let mut out = Vec::new();
    for n in from..from + writes {
        *applied.lock().expect("lock") = None;
        *written.lock().expect("lock") = None;
        let k = key(n);
        let started = Instant::now();
        let (_, ack) = rt
            .block_on(pos.transact(&doc, Durability::Replicated, |tx| tx.put(&k, order(n))))
            .expect("the write is stored");
        let total = started.elapsed().as_micros();
        assert!(
            matches!(ack, Acknowledged::Site { .. }),
            "write {n}: {ack:?}"
        );
        let at = |m: &Arc<Mutex<Option<Instant>>>| {
            m.lock()
                .expect("lock")
                .map_or(0, |t| (t - started).as_micros())
        };
        out.push((at(written), at(applied), total));
    }
    out
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(engine), Some(orders), Some(writes)) = (
        args.get(1).and_then(|s| s.parse::<StorageEngine>().ok()),
        args.get(2).and_then(|s| s.parse::<u64>().ok()),
        args.get(3).and_then(|s| s.parse::<u64>().ok()),
    ) else {
        eprintln!("usage: replicated_profile <sled|redb> <orders> <writes>");
        return ExitCode::FAILURE;
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let root = tempfile::tempdir_in(std::env::var_os("BENCH_DIR").unwrap_or_else(|| ".".into()))
        .expect("a temporary directory");
    let ca = FleetCa::generate("bench").expect("a fleet CA");
    let pos_info = PeerInfo::parse("lyon", "pos-1", "pos").expect("identity");
    let pos_cert = ca.issue(&pos_info).expect("certificate");
    let kiosk_cert = ca
        .issue(&PeerInfo::parse("lyon", "kiosk-1", "kiosk").expect("identity"))
        .expect("certificate");
    let (pos_dir, kiosk_dir) = (root.path().join("pos"), root.path().join("kiosk"));
    {
        let store = Store::open_with(
            &pos_dir,
            StoreOptions {
                identity: Some(pos_info.clone()),
                engine,
                ..StoreOptions::default()
            },
        )
        .expect("a store opens");
        for n in 0..orders {
            store
                .put(&day(), &key(n), order(n), Durability::Fast)
                .expect("prefill");
        }
        store.flush().expect("flush");
    }
    drop(
        Store::open_with(
            &kiosk_dir,
            StoreOptions {
                engine,
                ..StoreOptions::default()
            },
        )
        .expect("the kiosk's store opens"),
    );
    let (pos, kiosk) = rt.block_on(async {
        let pos = Node::start(config(&pos_dir, &pos_cert, vec![]))
            .await
            .expect("the POS starts");
        let kiosk = Node::start(config(&kiosk_dir, &kiosk_cert, vec![pos.local_addr()]))
            .await
            .expect("the kiosk starts");
        let mut want = pos.store().heads(&day()).expect("heads");
        want.sort();
        let started = Instant::now();
        loop {
            let mut h = kiosk.store().heads(&day()).unwrap_or_default();
            h.sort();
            if h == want {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(300), "catch-up");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        eprintln!("kiosk caught up in {:?}", started.elapsed());
        (pos, kiosk)
    });
    // When the POS's store announces the write (after its durable sync), and when the
    // kiosk's store announces it (it applied the POS's message).
    let seen_at = |store: &Store| {
        let at = Arc::new(Mutex::new(None));
        let mut sub = store.subscribe(SubscriptionFilter::all());
        let seen = at.clone();
        rt.spawn(async move {
            while let Some(_event) = sub.recv().await {
                seen.lock().expect("lock").get_or_insert_with(Instant::now);
            }
        });
        at
    };
    let written = seen_at(pos.store());
    let applied = seen_at(kiosk.store());
    // Warm-up, not reported.
    measure(&rt, &pos, &written, &applied, orders, 5);
    let splits = measure(&rt, &pos, &written, &applied, orders + 5, writes);
    let q = |mut v: Vec<u128>, p: f64| {
        v.sort();
        v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1]
    };
    let col = |f: fn(&Split) -> u128| splits.iter().map(f).collect::<Vec<_>>();
    for (name, v) in [
        (
            "local durable write (the POS store announces it)",
            col(|s| s.0),
        ),
        ("until the kiosk applied it", col(|s| s.1)),
        ("until acknowledged", col(|s| s.2)),
    ] {
        println!(
            "{engine} {orders} orders, {writes} replicated writes: {name}: p50 {} us, p99 {} us",
            q(v.clone(), 0.5),
            q(v, 0.99)
        );
    }
    rt.block_on(async {
        let _ = kiosk.shutdown().await;
        let _ = pos.shutdown().await;
    });
    ExitCode::SUCCESS
}
