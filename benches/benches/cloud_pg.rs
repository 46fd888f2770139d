//! The cloud on PostgreSQL (issue 18), next to the sled cloud and local writes in the same
//! run. A throwaway PostgreSQL cluster (`outpost_testbins::PgCluster`: Debian's binaries,
//! a unix socket, fsync on) holds one database per measurement.
//!
//! 1. **Fan-in**: `OUTPOST_FANIN_SITES` sites (default 8), one POS each over QUIC (mutual
//!    TLS, loopback), write `OUTPOST_FANIN_ORDERS` orders each (default 200, one change
//!    each, `Durability::Fast`) as fast as they can into
//!    - `sled`: one in-process cloud on sled (today's cloud, as the `fanin` bench),
//!    - `pg_one`: one in-process cloud on PostgreSQL,
//!    - `pg_two`: two in-process clouds on the same PostgreSQL database, the sites split
//!      between them (site `i` on instance `i % 2`),
//!    - `local`: the reference, the same orders written into as many local stores.
//!
//!    `OUTPOST_CLOUD_PG_ROUNDS=N` runs N rounds of every arm in turn instead of criterion's
//!    groups (one arm after the other), for ratios under the same load.
//!
//!    A fan-in is the time from the first write until every device was told that the
//!    cloud has all its orders (on PostgreSQL an acknowledgement means the transaction
//!    committed; on sled, that sled flushed); the time until the clouds' applied counters
//!    reached every order is printed too. Fresh sites and devices for every sample.
//! 2. **Memory per idle site**: the real `outpost-cloud` binary, a process of its own (so
//!    the devices, which run in this process, do not count), on sled then on PostgreSQL:
//!    its VmRSS with no site, then with `OUTPOST_IDLE_SITES` sites (default 20) whose POS
//!    wrote 20 orders each and stays connected: once the writes are acknowledged ("loaded")
//!    and after the cloud's idle period (`--idle-secs 10`, documents evicted: "idle").
//! 3. **Bytes per site-day**: one POS writes a busy day (`OUTPOST_DAY_ORDERS`, default
//!    1,000 orders of `order()`, one change each) into an in-process cloud; what the store
//!    holds for the site once acknowledged (the cloud is stopped before it compacts), then
//!    after the cloud compacted the day (restarted, the device reconnects: a document that
//!    changed is compacted once per load). PostgreSQL: the site's live rows as
//!    `PgStore::site_bytes` counts them, and the growth of the tables with their indexes and
//!    TOAST (`pg_total_relation_size`), before and after `VACUUM FULL`. sled: the keys and
//!    values of the site's trees, and the database's size on disk.
//!
//! A summary line with every figure is printed at the end.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode};
use outpost_cloud::server::Cloud;
use outpost_testbins::{start_cloud_with, PgCluster};
use outpost_transport::{FleetCa, Node};
use tokio::runtime::Runtime;

#[allow(dead_code)]
#[path = "support/fanin.rs"]
mod fanin;

use fanin::{
    cloud_identity, device, drained, env_or, fan_in, local, median, start_cloud, start_sites,
    status_kib, within, write_orders, CLOUD_PEER,
};

/// Orders each idle site wrote before it went quiet.
const IDLE_SITE_ORDERS: u64 = 20;
/// The cloud's idle period in the memory measurement (`--idle-secs`).
const IDLE_SECS: u64 = 10;
/// The site of the site-day measurement.
const DAY_SITE: &str = "day";

/// Fan-in times of one arm.
#[derive(Default)]
struct Arm {
    applied: Mutex<Vec<Duration>>,
    acked: Mutex<Vec<Duration>>,
}

fn fan_in_arms(c: &mut Criterion, rt: &Runtime, pg: &PgCluster, ca: &FleetCa) -> String {
    let sites = env_or("OUTPOST_FANIN_SITES", 8).max(1);
    let orders = env_or("OUTPOST_FANIN_ORDERS", 200).max(1);
    let dir = tempfile::tempdir().expect("temporary directory");
    let one_url = pg.create_database("fanin_one");
    let two_url = pg.create_database("fanin_two");
    let sled = rt.block_on(start_cloud(&dir.path().join("sled"), ca, None));
    let pg_one = rt.block_on(start_cloud(&dir.path().join("pg-one"), ca, Some(&one_url)));
    let pg_two_a = rt.block_on(start_cloud(
        &dir.path().join("pg-two-a"),
        ca,
        Some(&two_url),
    ));
    let pg_two_b = rt.block_on(start_cloud(
        &dir.path().join("pg-two-b"),
        ca,
        Some(&two_url),
    ));

    let arms: [(&str, Vec<&Cloud>); 3] = [
        ("sled", vec![&sled]),
        ("pg_one", vec![&pg_one]),
        ("pg_two", vec![&pg_two_a, &pg_two_b]),
    ];
    let times: BTreeMap<&str, Arm> = arms.iter().map(|(n, _)| (*n, Arm::default())).collect();
    let local_times = Mutex::new(Vec::new());
    let mut round = 0u64;
    let one = |round: u64, name: &str, clouds: &[&Cloud]| {
        let t = rt.block_on(fan_in(clouds, ca, round, sites, orders));
        let arm = &times[name];
        arm.applied.lock().expect("samples").push(t.applied);
        arm.acked.lock().expect("samples").push(t.acked);
        t.acked
    };
    let local_one = || {
        let t = local(sites, orders);
        local_times.lock().expect("samples").push(t);
        t
    };
    let interleaved = env_or("OUTPOST_CLOUD_PG_ROUNDS", 0);
    let how = if interleaved > 0 {
        // Under a load that changes by the minute, rounds of every arm in turn compare
        // the arms under the same load; criterion's groups run one arm after the other.
        for _ in 0..interleaved {
            for (name, clouds) in &arms {
                round += 1;
                one(round, name, clouds);
            }
            local_one();
        }
        format!("{interleaved} interleaved rounds")
    } else {
        let mut group = c.benchmark_group(format!("cloud_pg_fanin_{sites}x{orders}"));
        group
            .sample_size(10)
            .sampling_mode(SamplingMode::Flat)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(5));
        for (name, clouds) in &arms {
            group.bench_function(*name, |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        round += 1;
                        total += one(round, name, clouds);
                    }
                    total
                })
            });
        }
        group.bench_function("local", |b| {
            b.iter_custom(|iters| (0..iters).map(|_| local_one()).sum())
        });
        group.finish();
        "criterion, one arm after the other".to_string()
    };
    drop(arms);
    for cloud in [sled, pg_one, pg_two_a, pg_two_b] {
        rt.block_on(cloud.shutdown()).expect("the cloud shuts down");
    }

    // How many transactions the orders took: every commit of a site takes the next number
    // of `sites.seq` (compactions too, one or two per site and round).
    let commits = |db: &str| -> u64 {
        pg.psql_on(db, "SELECT COALESCE(sum(seq), 0) FROM sites")
            .parse()
            .expect("a number of commits")
    };
    let rows = |db: &str| -> u64 {
        pg.psql_on(db, "SELECT count(*) FROM changes")
            .parse()
            .expect("a number of rows")
    };
    let per_order = |name: &str, db: &str| {
        let all = times[name].acked.lock().expect("samples").len() as u64 * sites * orders;
        let commits = commits(db);
        format!(
            "{name}: {commits} commits for {all} orders ({:.2} orders per commit, {} change rows kept after compaction)",
            all as f64 / commits.max(1) as f64,
            rows(db)
        )
    };
    let commit_note = format!(
        "{}; {}",
        per_order("pg_one", "fanin_one"),
        per_order("pg_two", "fanin_two")
    );

    let all = (sites * orders) as f64;
    let rate = |d: Duration| all / d.as_secs_f64();
    let reference = rate(median(&local_times));
    let sled_rate = rate(median(&times["sled"].acked));
    let mut out = format!(
        "fan-in of {sites} sites x {orders} orders ({how}), median orders/s until \
         acknowledged (until applied): "
    );
    for (name, arm) in &times {
        let acked = rate(median(&arm.acked));
        out.push_str(&format!(
            "{name} {acked:.0} ({:.0}, x{:.2} the sled cloud, x{:.2} local writes); ",
            rate(median(&arm.applied)),
            acked / sled_rate,
            acked / reference,
        ));
    }
    out.push_str(&format!("local writes {reference:.0}. {commit_note}"));
    out
}

/// VmRSS in KiB of a separate `outpost-cloud`: with no site, with the sites' writes just
/// acknowledged, and after the cloud's idle period.
struct Rss {
    empty: u64,
    loaded: u64,
    idle: u64,
}

fn idle_rss(rt: &Runtime, ca: &FleetCa, sites: u64, store: Option<&str>) -> Rss {
    let dir = tempfile::tempdir().expect("temporary directory");
    let certs = dir.path().join("certs");
    cloud_identity(&certs, ca);
    let idle_secs = IDLE_SECS.to_string();
    let mut extra = vec!["--idle-secs", &idle_secs];
    if let Some(url) = store {
        extra.extend(["--store", url]);
    }
    let (mut cloud, quic, _) = start_cloud_with(&certs, &dir.path().join("data"), &extra);
    let pid = cloud.pid().to_string();
    let settle = Duration::from_secs(2);
    std::thread::sleep(settle);
    let empty = status_kib(&pid, "VmRSS");
    let nodes = rt.block_on(async {
        let nodes = start_sites(&dir.path().join("devices"), ca, "idle", sites, &[quic]).await;
        for node in &nodes {
            write_orders(node.store(), IDLE_SITE_ORDERS);
        }
        for node in &nodes {
            drained(node).await;
        }
        nodes
    });
    std::thread::sleep(settle);
    let loaded = status_kib(&pid, "VmRSS");
    // Documents unused for the idle period are evicted at the next housekeeping tick
    // (every idle/4 at most); the devices stay connected, so the sites stay loaded.
    std::thread::sleep(Duration::from_secs(IDLE_SECS + IDLE_SECS / 4 + 3));
    let idle = status_kib(&pid, "VmRSS");
    rt.block_on(async {
        for node in nodes {
            within("node shutdown", node.shutdown())
                .await
                .expect("node shuts down");
        }
    });
    cloud.terminate();
    Rss {
        empty,
        loaded,
        idle,
    }
}

/// What a store holds for the day's site.
#[derive(Debug, Default)]
struct Held {
    /// PostgreSQL: the site's live rows (`pg_column_size` of each, as
    /// `PgStore::site_bytes`); sled: keys and values of the site's trees.
    live: u64,
    /// PostgreSQL: growth of the tables with indexes and TOAST since the empty schema;
    /// sled: the database's size on disk (every namespace; little else is in it).
    on_disk: u64,
    /// PostgreSQL only: `on_disk` after `VACUUM FULL`.
    vacuumed: Option<u64>,
    /// Change rows, entry rows, snapshot rows (PostgreSQL); trees' entries (sled).
    rows: String,
}

/// A POS of the day's site writes `orders` orders to the cloud at `cloud`; returns once the
/// cloud acknowledged them all, with the device stopped.
async fn write_day(dir: &Path, ca: &FleetCa, cloud: &Cloud, orders: u64) {
    let node = within(
        "day device start",
        Node::start(device(dir, ca, DAY_SITE, cloud.quic_addr())),
    )
    .await
    .expect("the device starts");
    let peer = CLOUD_PEER.parse().expect("valid peer id");
    within("day device connected", node.wait_connected(&peer)).await;
    let store = node.store().clone();
    tokio::task::spawn_blocking(move || {
        write_orders(&store, orders);
        store.flush().expect("the device's disk takes the day");
    })
    .await
    .expect("the day is written");
    drained(&node).await;
    node.shutdown().await.expect("the device stops");
}

/// The day's device connects again (the cloud compacts what changed, once per load), and
/// stays until `compacted` says so or a minute passed.
async fn reconnect_until(dir: &Path, ca: &FleetCa, cloud: &Cloud, compacted: impl Fn() -> bool) {
    let node = within(
        "day device restart",
        Node::start(device(dir, ca, DAY_SITE, cloud.quic_addr())),
    )
    .await
    .expect("the device starts");
    let peer = CLOUD_PEER.parse().expect("valid peer id");
    within("day device reconnected", node.wait_connected(&peer)).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !compacted() {
        assert!(
            Instant::now() < deadline,
            "the cloud did not compact the day within a minute"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    node.shutdown().await.expect("the device stops");
}

/// The sled database of a stopped cloud (sled lets its lock go a moment after closing).
fn open_sled(path: &Path) -> sled::Db {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match sled::open(path) {
            Ok(db) => return db,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("cannot open the stopped cloud's database: {e}"),
        }
    }
}

/// What the sled cloud's data directory holds for the day's site, and whether the cloud
/// recorded a compaction of the day.
fn sled_held(data: &Path) -> (Held, bool) {
    let db = open_sled(data);
    let prefix = format!("site/{DAY_SITE}/");
    let (mut live, mut entries) = (0u64, 0u64);
    for name in db.tree_names() {
        if !name.starts_with(prefix.as_bytes()) {
            continue;
        }
        let tree = db.open_tree(&name).expect("open a tree");
        for kv in tree.iter() {
            let (k, v) = kv.expect("read the cloud's database");
            live += (k.len() + v.len()) as u64;
            entries += 1;
        }
    }
    let marker = format!("{DAY_SITE}\0orders/p0");
    let compacted = db
        .open_tree("cloud/compacted")
        .expect("open the compaction marks")
        .contains_key(marker.as_bytes())
        .expect("read the compaction marks");
    let held = Held {
        live,
        on_disk: db.size_on_disk().expect("sled's size on disk"),
        vacuumed: None,
        rows: format!("{entries} entries"),
    };
    (held, compacted)
}

/// The sled cloud's bytes for one site-day: (acknowledged, compacted).
fn sled_day(rt: &Runtime, ca: &FleetCa, orders: u64) -> (Held, Held) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let (cloud_dir, device_dir) = (dir.path().join("cloud"), dir.path().join("pos"));
    let data = cloud_dir.join("data");
    let cloud = rt.block_on(start_cloud(&cloud_dir, ca, None));
    rt.block_on(write_day(&device_dir, ca, &cloud, orders));
    // Stopped at once: a site compacts after a second without traffic.
    rt.block_on(cloud.shutdown()).expect("the cloud stops");
    let (before, compacted) = sled_held(&data);
    assert!(
        !compacted,
        "the sled cloud compacted the day before it stopped: rerun on a less loaded machine"
    );
    let cloud = rt.block_on(start_cloud(&cloud_dir, ca, None));
    // No way to look into a running cloud's sled: wait for the quiet second and two
    // housekeeping ticks (every 2.5 s with the default idle period of 10 s), then check.
    rt.block_on(reconnect_until(&device_dir, ca, &cloud, {
        let started = Instant::now();
        move || started.elapsed() > Duration::from_secs(8)
    }));
    rt.block_on(cloud.shutdown()).expect("the cloud stops");
    let (after, compacted) = sled_held(&data);
    assert!(compacted, "the sled cloud did not compact the day");
    (before, after)
}

/// `pg_total_relation_size` of the store's tables (indexes and TOAST included).
const RELATIONS: &str = "pg_total_relation_size('changes') + pg_total_relation_size('entries') \
     + pg_total_relation_size('snapshots') + pg_total_relation_size('sites')";

fn pg_numbers(pg: &PgCluster, db: &str, sql: &str) -> Vec<u64> {
    pg.psql_on(db, sql)
        .split('|')
        .map(|v| v.trim().parse().expect("a number"))
        .collect()
}

/// What PostgreSQL holds for the day's site; `empty` is the tables' size before the day.
fn pg_held(pg: &PgCluster, db: &str, empty: u64) -> (Held, u64) {
    let sql = format!(
        "SELECT
           (SELECT count(*) FROM snapshots WHERE site = '{DAY_SITE}'),
           (SELECT count(*) FROM changes WHERE site = '{DAY_SITE}'),
           (SELECT count(*) FROM entries WHERE site = '{DAY_SITE}'),
           COALESCE((SELECT SUM(pg_column_size(c.*)) FROM changes c WHERE site = '{DAY_SITE}'), 0)
           + COALESCE((SELECT SUM(pg_column_size(s.*)) FROM snapshots s WHERE site = '{DAY_SITE}'), 0)
           + COALESCE((SELECT SUM(pg_column_size(e.*)) FROM entries e WHERE site = '{DAY_SITE}'), 0),
           {RELATIONS}"
    );
    let v = pg_numbers(pg, db, &sql);
    let held = Held {
        live: v[3],
        on_disk: v[4].saturating_sub(empty),
        vacuumed: None,
        rows: format!(
            "{} change rows, {} entry rows, {} snapshots",
            v[1], v[2], v[0]
        ),
    };
    (held, v[0])
}

/// The PostgreSQL cloud's bytes for one site-day: (acknowledged, compacted).
fn pg_day(rt: &Runtime, pg: &PgCluster, ca: &FleetCa, orders: u64) -> (Held, Held) {
    let db = "site_day";
    let url = pg.create_database(db);
    let dir = tempfile::tempdir().expect("temporary directory");
    let (cloud_dir, device_dir) = (dir.path().join("cloud"), dir.path().join("pos"));
    let cloud = rt.block_on(start_cloud(&cloud_dir, ca, Some(&url)));
    // The schema exists now (migrated at start), empty.
    let empty = pg_numbers(pg, db, &format!("SELECT {RELATIONS}"))[0];
    rt.block_on(write_day(&device_dir, ca, &cloud, orders));
    rt.block_on(cloud.shutdown()).expect("the cloud stops");
    let (before, snapshots) = pg_held(pg, db, empty);
    assert_eq!(
        snapshots, 0,
        "the PostgreSQL cloud compacted the day before it stopped: rerun on a less loaded machine"
    );
    let cloud = rt.block_on(start_cloud(&cloud_dir, ca, Some(&url)));
    rt.block_on(reconnect_until(&device_dir, ca, &cloud, || {
        pg_held(pg, db, empty).1 > 0
    }));
    rt.block_on(cloud.shutdown()).expect("the cloud stops");
    let (mut after, _) = pg_held(pg, db, empty);
    pg.psql_on(db, "VACUUM FULL");
    after.vacuumed =
        Some(pg_numbers(pg, db, &format!("SELECT {RELATIONS}"))[0].saturating_sub(empty));
    (before, after)
}

fn kib(bytes: u64) -> String {
    format!("{:.1} KiB", bytes as f64 / 1024.0)
}

fn bench(c: &mut Criterion) {
    let rt = Runtime::new().expect("tokio runtime");
    let pg = PgCluster::start();
    let ca = FleetCa::generate("cloudpg").expect("generate a fleet CA");

    let fan_in = fan_in_arms(c, &rt, &pg, &ca);
    println!("cloud_pg {fan_in}");

    let sites = env_or("OUTPOST_IDLE_SITES", 20).max(1);
    let rss_url = pg.create_database("idle");
    let mut rss_line = format!(
        "memory of a separate outpost-cloud (VmRSS) with {sites} sites, {IDLE_SITE_ORDERS} orders each, \
         devices connected: "
    );
    for (name, store) in [("sled", None), ("pg", Some(rss_url.as_str()))] {
        let r = idle_rss(&rt, &ca, sites, store);
        let per_site = |kib: u64| (kib.saturating_sub(r.empty)) as f64 / sites as f64;
        rss_line.push_str(&format!(
            "{name}: empty {:.1} MiB, loaded {:.1} MiB ({:.0} KiB per site), idle {:.1} MiB \
             ({:.0} KiB per site); ",
            r.empty as f64 / 1024.0,
            r.loaded as f64 / 1024.0,
            per_site(r.loaded),
            r.idle as f64 / 1024.0,
            per_site(r.idle),
        ));
    }
    println!("cloud_pg {rss_line}");

    let orders = env_or("OUTPOST_DAY_ORDERS", 1000).max(1);
    let (sled_before, sled_after) = sled_day(&rt, &ca, orders);
    let (pg_before, pg_after) = pg_day(&rt, &pg, &ca, orders);
    let day_line = format!(
        "one site-day of {orders} orders: PostgreSQL acknowledged {} live rows ({}), tables +{}; \
         compacted {} live rows ({}), tables +{}, +{} after VACUUM FULL | sled acknowledged {} \
         in the site's trees ({}), database {} on disk; compacted {} ({}), database {} on disk",
        kib(pg_before.live),
        pg_before.rows,
        kib(pg_before.on_disk),
        kib(pg_after.live),
        pg_after.rows,
        kib(pg_after.on_disk),
        kib(pg_after.vacuumed.unwrap_or_default()),
        kib(sled_before.live),
        sled_before.rows,
        kib(sled_before.on_disk),
        kib(sled_after.live),
        sled_after.rows,
        kib(sled_after.on_disk),
    );
    println!("cloud_pg {day_line}");
    println!(
        "cloud_pg summary: {fan_in} | {rss_line}| {day_line} | load average {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
}
