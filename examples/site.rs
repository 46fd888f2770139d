//! A whole site on this machine: a cloud peer and a restaurant with POS tablets, ordering
//! kiosks, a menu board and a kitchen printer, each a real node with its own sled store and
//! certificate, syncing over QUIC with mutual TLS on loopback.
//!
//! It plays a scripted service, prints a timeline, and exits 0 only if every node converged
//! and the kitchen printer, restarted mid-service, printed every order exactly once.
//!
//! ```sh
//! cargo run --release -p outpost-examples --example site -- --help
//! ```

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use outpost_core::Event;
use outpost_core::{
    DocumentId, Durability, Error as CoreError, Feed, FeedDocs, FeedFilter, PeerId, PeerInfo,
    Policy, Store, StoreOptions, SubscriptionFilter, Ticket,
};
use outpost_examples::{percentile, wait_for, Timeline};
use outpost_transport::FleetCa;
use outpost_transport::{Node, NodeConfig, SiteRule};
use serde_json::{json, Value};

/// A whole outpost site on this machine, playing a scripted service.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
struct Args {
    /// Number of POS tablets (at least 1).
    #[arg(long, default_value_t = 2)]
    pos: usize,
    /// Number of ordering kiosks (at least 1).
    #[arg(long, default_value_t = 1)]
    kiosks: usize,
    /// Orders the kiosks take during normal service (spread over the kiosks).
    #[arg(long, default_value_t = 12)]
    orders: usize,
    /// Orders taken while the cloud link is cut.
    #[arg(long, default_value_t = 5)]
    offline_orders: usize,
    /// Give up (exit 1) if any step takes longer than this many seconds.
    #[arg(long, default_value_t = 20)]
    step_timeout: u64,
    /// Keep the nodes' data in this directory instead of a temporary one.
    #[arg(long)]
    data: Option<PathBuf>,
}

struct Device {
    node: Node,
    info: PeerInfo,
}

impl Device {
    fn id(&self) -> &PeerId {
        &self.info.peer
    }
}

const SITE: &str = "paris-11";

fn doc(s: &str) -> DocumentId {
    s.parse().expect("document ids of the demo are valid")
}

async fn start(
    ca: &FleetCa,
    root: &std::path::Path,
    info: PeerInfo,
    dial: Vec<SocketAddr>,
    store_policy: Option<Policy>,
    ticket_prefix: Option<&str>,
) -> anyhow::Result<Device> {
    let cert = ca.issue(&info)?;
    let mut config = NodeConfig::new(root.join(info.peer.as_str()), cert);
    config.ticket_prefix = ticket_prefix.map(str::parse).transpose()?;
    config.listen = "127.0.0.1:0".parse()?;
    config.static_peers = dial;
    config.store_policy = store_policy;
    if info.role == outpost_core::Role::cloud() {
        // A Node serves one site; a fleet's many sites are outpost-cloud's.
        config.site_rule = Some(SiteRule::SameSite(SITE.parse()?));
    }
    let node = Node::start(config)
        .await
        .with_context(|| format!("starting {info}"))?;
    Ok(Device { node, info })
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .init();
    }
    let args = Args::parse();
    match run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("\nDEMO FAILED: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    if args.pos == 0 || args.kiosks == 0 {
        bail!("the demo needs at least one POS and one kiosk");
    }
    let t = Timeline::start();
    let timeout = Duration::from_secs(args.step_timeout);
    let tmp;
    let root = match &args.data {
        Some(d) => d.clone(),
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path().to_path_buf()
        }
    };

    // ---------------------------------------------------------------- the fleet
    t.step("Fleet: a certificate authority, a cloud peer and one restaurant");
    let ca = FleetCa::generate("acme-burgers")?;
    let cloud = start(
        &ca,
        &root,
        PeerInfo::parse("fleet", "cloud", "cloud")?,
        vec![],
        None,
        None,
    )
    .await?;
    t.say(format!(
        "cloud peer listening on {} (QUIC, mutual TLS)",
        cloud.node.local_addr()
    ));

    // Devices that take orders have a ticket prefix of their own: K1-001, P2-001.
    let mut roles: Vec<(String, &str, Option<String>)> = Vec::new();
    for i in 1..=args.pos {
        roles.push((format!("pos-{i}"), "pos", Some(format!("P{i}"))));
    }
    for i in 1..=args.kiosks {
        roles.push((format!("kiosk-{i}"), "kiosk", Some(format!("K{i}"))));
    }
    roles.push(("menu-board-1".into(), "menu-board", None));
    roles.push(("kitchen-1".into(), "kitchen", None));

    let mut devices: Vec<Device> = Vec::new();
    for (name, role, prefix) in &roles {
        // Each device dials the cloud and the devices started before it: a full mesh.
        let mut dial = vec![cloud.node.local_addr()];
        dial.extend(devices.iter().map(|d| d.node.local_addr()));
        let d = start(
            &ca,
            &root,
            PeerInfo::parse(SITE, name, role)?,
            dial,
            None,
            prefix.as_deref(),
        )
        .await?;
        t.say(format!(
            "{:<13} {:<10} on {}",
            d.info.peer.as_str(),
            d.info.role.as_str(),
            d.node.local_addr()
        ));
        devices.push(d);
    }
    for d in &devices {
        for other in devices
            .iter()
            .filter(|o| o.id() != d.id())
            .chain(std::iter::once(&cloud))
        {
            tokio::time::timeout(timeout, d.node.wait_connected(other.id()))
                .await
                .with_context(|| format!("{} never connected to {}", d.id(), other.id()))?;
        }
    }
    t.say(format!(
        "all {} links up",
        devices.len() * (devices.len() - 1) / 2 + devices.len()
    ));

    let by_name: BTreeMap<String, usize> = devices
        .iter()
        .enumerate()
        .map(|(i, d)| (d.id().to_string(), i))
        .collect();
    let dev = |name: &str| &devices[by_name[name]];
    let pos1 = dev("pos-1");
    let pos_last = dev(&format!("pos-{}", args.pos));
    let kiosk1 = dev("kiosk-1");
    let board = dev("menu-board-1");
    let kitchen = dev("kitchen-1");
    let menu = doc("menu");
    let stock = doc("stock");
    let orders = doc("orders/2026-11-27");

    // The kitchen printer reads its durable feed and prints every order once, keyed by the
    // order's ticket; what it printed is on its paper (a file it syncs before acknowledging).
    let paper = root.join("kitchen-1-paper.log");
    // With --data reused, what earlier runs printed is on the paper already.
    let printed_before = paper_counts(&paper)?;
    let mut printer = Printer::start(kitchen.node.store().clone(), paper.clone(), t)?;
    // ---------------------------------------------------------------- menu and stock
    t.step("Opening: pos-1 sets up the menu and the stock");
    pos1.node
        .store()
        .transact(&menu, Durability::Durable, |tx| {
            tx.put(
                "/items",
                json!({
                    "burger": {"name": "Burger", "price": 950, "available": true},
                    "fries": {"name": "Fries", "price": 350, "available": true},
                    "soda": {"name": "Soda", "price": 250, "available": true},
                }),
            )
        })?;
    pos1.node
        .store()
        .transact(&stock, Durability::Durable, |tx| {
            tx.increment("/burger", 50)?;
            tx.increment("/fries", 3)?;
            tx.increment("/soda", 40)
        })?;
    // The day's map of orders comes from one device: two devices creating it concurrently
    // would make two maps, and one would win (core/docs/design.md, "Value API").
    if !pos1.node.store().contains(&orders)? {
        pos1.node
            .store()
            .put(&orders, "/orders", json!({}), Durability::Durable)?;
    }
    let since = Instant::now();
    for d in devices.iter().chain(std::iter::once(&cloud)) {
        if Policy::default().may_read(&d.info.role, orders.context()) {
            wait_for(d.node.store(), &orders, "/orders", since, timeout, |v| {
                v.is_some()
            })
            .await?;
        }
        wait_for(
            d.node.store(),
            &menu,
            "/items/soda/price",
            since,
            timeout,
            |v| v == Some(&json!(250)),
        )
        .await?;
        // Counters must exist everywhere before anyone decrements them: a device that
        // decremented a counter it has not received yet would create a second counter at the
        // same key, and only one of two concurrently created values wins.
        wait_for(d.node.store(), &stock, "/soda", since, timeout, |v| {
            v == Some(&json!(40))
        })
        .await?;
    }
    t.say(format!(
        "menu and stock on every device and the cloud after {:.1} ms",
        since.elapsed().as_secs_f64() * 1e3
    ));

    // ---------------------------------------------------------------- service
    t.step(format!(
        "Service: kiosks take {} orders; they show on every POS and print in the kitchen",
        args.orders
    ));
    let mut latencies = Vec::new();
    let mut sold: BTreeMap<&str, i64> = BTreeMap::new();
    let mut tickets: Vec<Ticket> = Vec::new();
    let menu_items = ["burger", "soda", "burger", "soda"];
    let restart_at = args.orders / 2;
    for i in 0..args.orders {
        if i == restart_at {
            // Mid-service the printer dies after printing a batch and before acknowledging
            // it, and comes back: its feed hands it that batch again.
            printer.crash_before_next_ack();
        }
        let k = dev(&format!("kiosk-{}", 1 + i % args.kiosks));
        let sku = menu_items[i % menu_items.len()];
        let price = k
            .node
            .store()
            .get(&menu, &format!("/items/{sku}/price"))?
            .unwrap_or(Value::Null);
        let started = Instant::now();
        let pos_name = format!("pos-{}", 1 + i % args.pos);
        let ticket = take_order(k, &orders, &stock, sku, 1, price, &pos_name)?;
        let id = ticket.to_string();
        tickets.push(ticket);
        *sold.entry(sku).or_default() += 1;
        for d in devices
            .iter()
            .filter(|d| d.info.role.as_str() == "pos" || d.id() == kitchen.id())
        {
            let l = wait_for(
                d.node.store(),
                &orders,
                &format!("/orders/{id}/ticket"),
                started,
                timeout,
                |v| v.is_some(),
            )
            .await?;
            latencies.push(l);
        }
        if i == restart_at {
            let (crashed, again) = printer.restart(timeout).await?;
            t.say(format!(
                "kitchen-1 printer crashed after printing {crashed} before acknowledging it; \
                 restarted, its feed handed it {again} again: already printed, skipped by ticket"
            ));
        }
    }
    t.say(format!(
        "{} orders x {} receivers: latency p50 {:.2} ms, p99 {:.2} ms (write on kiosk -> visible on POS/kitchen)",
        args.orders,
        args.pos + 1,
        percentile(&mut latencies, 50).as_secs_f64() * 1e3,
        percentile(&mut latencies, 99).as_secs_f64() * 1e3
    ));

    // ---------------------------------------------------------------- the order's life
    let first = tickets
        .first()
        .context("the service took no order")?
        .to_string();
    let taker = dev("pos-1");
    t.step(format!(
        "An order's life: {first}, placed on a kiosk for pos-1, printed, ready, paid, closed"
    ));
    let order = format!("/orders/{first}");
    let mut taker_sub = taker
        .node
        .store()
        .subscribe(SubscriptionFilter::doc(orders.clone()));
    let started = Instant::now();
    kitchen.node.store().put(
        &orders,
        &format!("{order}/kitchen/state"),
        json!("ready"),
        Durability::Durable,
    )?;
    t.say(format!(
        "kitchen-1 marks {first} ready (it marked it in progress when printing it)"
    ));
    let deadline = tokio::time::Instant::now() + timeout;
    let ready_path = format!("{order}/kitchen/state");
    loop {
        let ev = tokio::time::timeout_at(deadline, taker_sub.recv())
            .await
            .context("pos-1 was never told the order is ready")?
            .context("pos-1's store closed")?;
        if ev.paths.iter().any(|p| p == &ready_path)
            && taker.node.store().get(&orders, &ready_path)? == Some(json!("ready"))
        {
            break;
        }
    }
    t.say(format!(
        "pos-1 (named on the order) is notified {first} is ready after {:.2} ms",
        started.elapsed().as_secs_f64() * 1e3
    ));
    match kiosk1.node.store().put(
        &orders,
        &format!("{order}/payment"),
        json!({"amount": 0}),
        Durability::Durable,
    ) {
        Err(e @ CoreError::PathNotPermitted { .. }) => {
            t.say(format!("kiosk-1 marking it paid is refused: {e}"))
        }
        other => bail!("kiosk-1 could mark an order paid: {other:?}"),
    }
    match kitchen.node.store().put(
        &orders,
        &format!("{order}/closed"),
        json!({"by": "kitchen-1"}),
        Durability::Durable,
    ) {
        Err(CoreError::PathNotPermitted { .. }) => {
            t.say("kitchen-1 closing it is refused: only a POS closes orders")
        }
        other => bail!("kitchen-1 could close an order: {other:?}"),
    }
    let total = taker
        .node
        .store()
        .get(&orders, &format!("{order}/items/0/price"))?
        .unwrap_or(Value::Null);
    let started = Instant::now();
    taker
        .node
        .store()
        .transact(&orders, Durability::Durable, |tx| {
            tx.put(
                &format!("{order}/payment"),
                json!({"amount": total, "by": "pos-1"}),
            )?;
            tx.put(&format!("{order}/closed"), json!({"by": "pos-1"}))
        })?;
    let l = wait_for(
        kiosk1.node.store(),
        &orders,
        &format!("{order}/closed/by"),
        started,
        timeout,
        |v| v == Some(&json!("pos-1")),
    )
    .await?;
    t.say(format!(
        "pos-1 takes the payment and closes {first}; kiosk-1 sees it closed after {:.2} ms",
        l.as_secs_f64() * 1e3
    ));

    // ---------------------------------------------------------------- price change
    t.step(format!(
        "Manager edits a price on {}: every menu board shows it",
        pos_last.id()
    ));
    let started = Instant::now();
    pos_last.node.store().put(
        &menu,
        "/items/burger/price",
        json!(1050),
        Durability::Durable,
    )?;
    let l = wait_for(
        board.node.store(),
        &menu,
        "/items/burger/price",
        started,
        timeout,
        |v| v == Some(&json!(1050)),
    )
    .await?;
    t.say(format!(
        "menu-board-1 shows burger at 10.50 after {:.2} ms",
        l.as_secs_f64() * 1e3
    ));
    for d in &devices {
        wait_for(
            d.node.store(),
            &menu,
            "/items/burger/price",
            started,
            timeout,
            |v| v == Some(&json!(1050)),
        )
        .await?;
    }
    t.say(format!(
        "every device shows the new price after {:.2} ms",
        started.elapsed().as_secs_f64() * 1e3
    ));

    // ---------------------------------------------------------------- out of stock
    t.step("Stock runs out: fries sell out and leave the kiosk's menu and the menu board");
    // pos-1 runs the stock rule: an item whose counter reaches 0 becomes unavailable.
    let rule_store = pos1.node.store().clone();
    let mut stock_sub = rule_store.subscribe(SubscriptionFilter::doc(stock.clone()));
    let (menu2, stock2) = (menu.clone(), stock.clone());
    let rule = tokio::spawn(async move {
        while stock_sub.recv().await.is_some() {
            let Ok(Some(Value::Object(levels))) = rule_store.get(&stock2, "") else {
                continue;
            };
            for (sku, n) in levels {
                let available = rule_store
                    .get(&menu2, &format!("/items/{sku}/available"))
                    .ok()
                    .flatten();
                if n.as_i64().is_some_and(|n| n <= 0) && available == Some(json!(true)) {
                    let _ = rule_store.put(
                        &menu2,
                        &format!("/items/{sku}/available"),
                        json!(false),
                        Durability::Durable,
                    );
                }
            }
        }
    });
    t.say(format!("kiosk-1 menu: {}", kiosk_menu(kiosk1)?));
    let started = Instant::now();
    for _ in 0..3 {
        tickets.push(take_order(
            kiosk1,
            &orders,
            &stock,
            "fries",
            1,
            json!(350),
            "pos-1",
        )?);
    }
    *sold.entry("fries").or_default() += 3;
    let l = wait_for(
        board.node.store(),
        &menu,
        "/items/fries/available",
        started,
        timeout,
        |v| v == Some(&json!(false)),
    )
    .await?;
    t.say(format!(
        "fries stock is 0: menu-board-1 drops fries after {:.2} ms",
        l.as_secs_f64() * 1e3
    ));
    wait_for(
        kiosk1.node.store(),
        &menu,
        "/items/fries/available",
        started,
        timeout,
        |v| v == Some(&json!(false)),
    )
    .await?;
    t.say(format!("kiosk-1 menu: {}", kiosk_menu(kiosk1)?));

    // ---------------------------------------------------------------- cloud down
    t.step("The internet goes down: the cloud link is cut, the site keeps working");
    for d in &devices {
        cloud.node.cut_link(d.id()).await?;
    }
    for d in &devices {
        tokio::time::timeout(timeout, d.node.wait_disconnected(cloud.id()))
            .await
            .context("cloud link did not drop")?;
    }
    let cut_at = Instant::now();
    t.say("cloud unreachable from every device");
    for i in 0..args.offline_orders {
        let started = Instant::now();
        let ticket = take_order(kiosk1, &orders, &stock, "burger", 2, json!(1050), "pos-1")?;
        let id = ticket.to_string();
        tickets.push(ticket);
        *sold.entry("burger").or_default() += 2;
        let l = wait_for(
            pos1.node.store(),
            &orders,
            &format!("/orders/{id}/ticket"),
            started,
            timeout,
            |v| v.is_some(),
        )
        .await?;
        wait_for(
            kitchen.node.store(),
            &orders,
            &format!("/orders/{id}/ticket"),
            started,
            timeout,
            |v| v.is_some(),
        )
        .await?;
        if i == 0 {
            t.say(format!(
                "offline order {id} reached pos-1 and the kitchen in {:.2} ms",
                l.as_secs_f64() * 1e3
            ));
        }
    }
    let status = pos1.node.status().await?;
    let backlog = status.peer(cloud.id()).map(|p| p.they_lack()).unwrap_or(0);
    let since = status
        .peer(cloud.id())
        .and_then(|p| p.docs.iter().filter_map(|d| d.unsynced_since).min())
        .map(|s| format!("{s}"))
        .unwrap_or_else(|| "-".into());
    t.say(format!("pos-1 status: cloud connected=false, {backlog} changes not yet in the cloud, unsynced since t={since}"));
    if backlog == 0 {
        bail!("pos-1 reports no backlog to the cloud while the link is cut");
    }

    // ---------------------------------------------------------------- cloud back
    t.step("The internet comes back: the backlog drains, the cloud converges");
    for d in &devices {
        cloud.node.restore_link(d.id());
    }
    let started = Instant::now();
    let want = pos1.node.store().heads(&orders)?;
    let mut sub = cloud
        .node
        .store()
        .subscribe(SubscriptionFilter::doc(orders.clone()));
    let deadline = tokio::time::Instant::now() + timeout;
    // "Has all of": the kitchen printer may write meanwhile.
    while !cloud.node.store().has_all(&orders, &want)? {
        tokio::time::timeout_at(deadline, sub.recv())
            .await
            .context("the cloud did not catch up")?;
    }
    t.say(format!(
        "cloud caught up {:.0} ms after the link came back (offline for {:.1} s)",
        started.elapsed().as_secs_f64() * 1e3,
        cut_at.elapsed().as_secs_f64()
    ));
    let mut backlog = usize::MAX;
    for _ in 0..200 {
        backlog = pos1
            .node
            .status()
            .await?
            .peer(cloud.id())
            .map(|p| p.they_lack())
            .unwrap_or(0);
        if backlog == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    t.say(format!(
        "pos-1 status: {backlog} changes missing in the cloud"
    ));

    // ---------------------------------------------------------------- trust
    t.step("A kiosk tries to change a price");
    match kiosk1
        .node
        .store()
        .put(&menu, "/items/burger/price", json!(1), Durability::Durable)
    {
        Err(e @ CoreError::NotPermitted { .. }) => t.say(format!("kiosk-1 app gets: {e}")),
        other => bail!("kiosk-1 could write the menu: {other:?}"),
    }
    t.say("a tampered kiosk-99 (local checks removed, forging a POS authorship) joins the site");
    let rogue_dir = root.join("kiosk-99");
    {
        // The tampered app writes straight into its store: a menu price, and an order whose
        // Automerge actor claims to be a POS.
        let forged = PeerInfo::parse(SITE, "kiosk-99", "pos")?;
        let options = StoreOptions {
            identity: Some(forged),
            policy: Policy::allow_all(),
            ..Default::default()
        };
        let store = Store::open_with(&rogue_dir, options)?;
        store.put(&menu, "/items/burger/price", json!(1), Durability::Durable)?;
        store.put(
            &orders,
            "/orders/forged-free-meal",
            json!({"items": [{"sku": "burger", "qty": 10, "price": 0}], "status": "paid"}),
            Durability::Durable,
        )?;
    }
    let mut watchers: Vec<_> = devices
        .iter()
        .filter(|d| Policy::default().may_read(&d.info.role, orders.context()))
        .map(|d| (d.id().clone(), d.node.events()))
        .collect();
    watchers.push((cloud.id().clone(), cloud.node.events()));
    let mut dial: Vec<SocketAddr> = devices.iter().map(|d| d.node.local_addr()).collect();
    dial.push(cloud.node.local_addr());
    let rogue = start(
        &ca,
        &root,
        PeerInfo::parse(SITE, "kiosk-99", "kiosk")?,
        dial,
        Some(Policy::allow_all()),
        None,
    )
    .await?;
    for (id, events) in watchers.iter_mut() {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Ok(Event::ChangeRefused { peer, doc, reason })) => {
                    t.say(format!("{id:<12} refused {doc} from {peer}: {reason}"));
                    break;
                }
                Ok(Ok(_)) | Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {}
                Ok(Err(_)) => bail!("{id}'s events closed"),
                Err(_) => bail!("{id} never refused the tampered kiosk's change"),
            }
        }
    }
    // Its menu write never even leaves it: peers tell a kiosk its menu link is read-only.
    tokio::time::sleep(Duration::from_millis(200)).await;
    rogue.node.shutdown().await?;
    for d in devices.iter().chain(std::iter::once(&cloud)) {
        let price = d.node.store().get(&menu, "/items/burger/price")?;
        if price != Some(json!(1050)) {
            bail!(
                "{} has burger price {price:?} after the tampered write",
                d.id()
            );
        }
        if Policy::default().may_read(&d.info.role, orders.context())
            && d.node
                .store()
                .get(&orders, "/orders/forged-free-meal")?
                .is_some()
        {
            bail!("{} stored the forged order", d.id());
        }
    }
    t.say("the forged order is stored nowhere");
    t.say("burger is still 10.50 on every device and in the cloud");

    // ---------------------------------------------------------------- convergence
    t.step("Closing: every order printed once, every node the same documents");
    rule.abort();
    printer.wait_printed(&tickets, timeout).await?;
    let mut ok = true;
    for d_id in [&menu, &stock, &orders] {
        let readers: Vec<&Device> = devices
            .iter()
            .chain(std::iter::once(&cloud))
            .filter(|d| Policy::default().may_read(&d.info.role, d_id.context()))
            .collect();
        let deadline = Instant::now() + timeout;
        loop {
            let first = readers[0].node.store().get(d_id, "")?;
            let heads0 = readers[0].node.store().heads(d_id)?;
            let same = readers.iter().all(|r| {
                r.node.store().heads(d_id).ok() == Some(heads0.clone())
                    && r.node.store().get(d_id, "").ok() == Some(first.clone())
            });
            if same {
                t.say(format!(
                    "{d_id:<18} identical on {} nodes ({} heads)",
                    readers.len(),
                    heads0.len()
                ));
                break;
            }
            if Instant::now() > deadline {
                t.say(format!("{d_id} DIVERGED"));
                ok = false;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let levels = pos1.node.store().get(&stock, "")?.unwrap_or(Value::Null);
    for (sku, start) in [("burger", 50), ("fries", 3), ("soda", 40)] {
        let want = start - sold.get(sku).copied().unwrap_or(0);
        let got = levels.get(sku).and_then(Value::as_i64);
        t.say(format!(
            "stock {sku}: {got:?} (expected {want}: counters add up concurrent sales)"
        ));
        ok &= got == Some(want);
    }
    let stopped = Instant::now();
    let mut shutdowns = tokio::task::JoinSet::new();
    for d in devices.into_iter().chain(std::iter::once(cloud)) {
        shutdowns.spawn(d.node.shutdown());
    }
    while let Some(r) = shutdowns.join_next().await {
        r??;
    }
    t.say(format!(
        "all nodes shut down and flushed in {:.0} ms",
        stopped.elapsed().as_secs_f64() * 1e3
    ));
    printer.stop();
    let mut counts = paper_counts(&paper)?;
    for (ticket, n) in &printed_before {
        if let Some(c) = counts.get_mut(ticket) {
            *c = c.saturating_sub(*n);
        }
    }
    counts.retain(|_, n| *n > 0);
    let missing: Vec<String> = tickets
        .iter()
        .map(Ticket::to_string)
        .filter(|t| !counts.contains_key(t))
        .collect();
    let twice: Vec<&String> = counts
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(t, _)| t)
        .collect();
    let unknown = counts.len() + missing.len() - tickets.len();
    t.say(format!(
        "kitchen-1 printer: {} orders taken, {} tickets printed, {} printed twice, {} never \
         printed, {unknown} printed that nobody ordered (restarted once; {} handed again by its \
         feed, skipped by ticket)",
        tickets.len(),
        counts.len(),
        twice.len(),
        missing.len(),
        printer.handed_again
    ));
    if !missing.is_empty() || !twice.is_empty() || unknown != 0 {
        bail!("the kitchen printer did not print every order exactly once: never {missing:?}, twice {twice:?}");
    }
    if !ok {
        bail!("the site did not converge");
    }
    println!(
        "\nSITE CONVERGED: all nodes hold identical menu, stock and orders; the kitchen printed \
         each of the {} orders exactly once.",
        tickets.len()
    );
    Ok(())
}

/// A device takes an order for the POS `pos`: the order is written under the next ticket
/// number of the device, issued in the same commit, then its stock counter is decremented (a
/// counter, so concurrent sales on other devices add up). Both writes are durable.
fn take_order(
    device: &Device,
    orders: &DocumentId,
    stock: &DocumentId,
    sku: &str,
    qty: i64,
    price: Value,
    pos: &str,
) -> anyhow::Result<Ticket> {
    let store = device.node.store();
    let ticket = store.transact(orders, Durability::Durable, |tx| {
        let t = tx.next_ticket()?;
        tx.put(
            &format!("/orders/{t}"),
            json!({
                "ticket": t.to_string(),
                "items": [{"sku": sku, "qty": qty, "price": price}],
                "pos": pos,
                "by": device.id(),
            }),
        )?;
        Ok(t)
    })?;
    store.increment(stock, &format!("/{sku}"), -qty, Durability::Durable)?;
    Ok(ticket)
}

/// The kitchen printer: reads the durable consumer feed `kitchen-1/printer` (orders of every
/// day), prints each order it has not printed yet (its paper, a file synced before the feed
/// is acknowledged, is its record, keyed by ticket), marks it in progress, acknowledges.
struct Printer {
    store: Store,
    paper: PathBuf,
    crash: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<anyhow::Result<Vec<String>>>,
    /// Tickets the restarted printer's feed handed it again (already printed).
    handed_again: usize,
}

impl Printer {
    fn start(store: Store, paper: PathBuf, t: Timeline) -> anyhow::Result<Printer> {
        let crash = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(print_orders(
            store.clone(),
            paper.clone(),
            crash.clone(),
            None,
            Some(t),
        ));
        Ok(Printer {
            store,
            paper,
            crash,
            task,
            handed_again: 0,
        })
    }

    /// The printer dies after printing its next batch with a new order, before
    /// acknowledging it.
    fn crash_before_next_ack(&self) {
        self.crash.store(true, Ordering::SeqCst);
    }

    /// Waits for the crash and starts the printer again on the same consumer; returns what
    /// it printed before crashing and what its feed handed it again.
    async fn restart(&mut self, timeout: Duration) -> anyhow::Result<(String, String)> {
        let crashed = tokio::time::timeout(timeout, &mut self.task)
            .await
            .context("the printer did not reach its crash")???;
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.task = tokio::spawn(print_orders(
            self.store.clone(),
            self.paper.clone(),
            self.crash.clone(),
            Some(tx),
            None,
        ));
        let again = tokio::time::timeout(timeout, rx)
            .await
            .context("the restarted printer got nothing")?
            .context("the restarted printer stopped")?;
        self.handed_again += again.len();
        Ok((crashed.join(", "), again.join(", ")))
    }

    /// Waits until every ticket is on the paper.
    async fn wait_printed(&self, tickets: &[Ticket], timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let counts = paper_counts(&self.paper)?;
            if tickets.iter().all(|t| counts.contains_key(&t.to_string())) {
                return Ok(());
            }
            if self.task.is_finished() {
                bail!("the kitchen printer stopped before printing every order");
            }
            if Instant::now() > deadline {
                bail!("the kitchen printer did not print every order within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn stop(&self) {
        self.task.abort();
    }
}

/// The printer's loop; returns the tickets of the batch it crashed on. `first` receives the
/// tickets of its first batch that were already printed (handed again).
async fn print_orders(
    store: Store,
    paper: PathBuf,
    crash: Arc<AtomicBool>,
    mut first: Option<tokio::sync::oneshot::Sender<Vec<String>>>,
    t: Option<Timeline>,
) -> anyhow::Result<Vec<String>> {
    // No path of its own: the policy says what an item of `orders` is (`/orders/*`), so each
    // batch carries the orders that changed, one item each.
    let filter = FeedFilter {
        docs: Some(FeedDocs::Context("orders".parse()?)),
        prefix: None,
    };
    let mut feed = Feed::open(&store, "kitchen-1/printer", filter)?;
    let mut printed: std::collections::BTreeSet<String> =
        paper_counts(&paper)?.into_keys().collect();
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&paper)
        .with_context(|| format!("opening the printer's paper {}", paper.display()))?;
    loop {
        let batch = feed.next().await?;
        let (mut new, mut again) = (Vec::new(), Vec::new());
        for item in &batch.items {
            let Some(id) = item.strip_prefix("/orders/") else {
                continue;
            };
            if printed.contains(id) {
                again.push(id.to_string());
                continue;
            }
            let items = store
                .get(&batch.doc, &format!("{item}/items"))?
                .unwrap_or(Value::Null);
            writeln!(out, "{id}")?;
            out.sync_data()?;
            printed.insert(id.to_string());
            if let Some(t) = t.filter(|_| printed.len() <= 3 || printed.len() % 5 == 0) {
                t.say(format!("kitchen-1 prints {id} {items}"));
            }
            store.put(
                &batch.doc,
                &format!("{item}/kitchen"),
                json!({"state": "in_progress", "by": "kitchen-1"}),
                Durability::Fast,
            )?;
            new.push(id.to_string());
        }
        if let Some(tx) = first.take() {
            let _ = tx.send(again);
        }
        if !new.is_empty() && crash.swap(false, Ordering::SeqCst) {
            return Ok(new);
        }
        feed.ack(&batch)?;
    }
}

/// How many times each ticket is on the printer's paper.
fn paper_counts(paper: &std::path::Path) -> anyhow::Result<BTreeMap<String, usize>> {
    let text = match std::fs::read_to_string(paper) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).context("reading the printer's paper"),
    };
    let mut counts = BTreeMap::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        *counts.entry(line.to_string()).or_insert(0) += 1;
    }
    Ok(counts)
}

/// What the kiosk screen offers: available items with stock left.
fn kiosk_menu(kiosk: &Device) -> anyhow::Result<String> {
    let items = kiosk
        .node
        .store()
        .get(&doc("menu"), "/items")?
        .unwrap_or(Value::Null);
    let stock = kiosk
        .node
        .store()
        .get(&doc("stock"), "")?
        .unwrap_or(Value::Null);
    let mut out = Vec::new();
    if let Value::Object(items) = items {
        for (sku, item) in items {
            let available = item.get("available") == Some(&json!(true));
            let left = stock.get(&sku).and_then(Value::as_i64).unwrap_or(0);
            if available && left > 0 {
                let price = item.get("price").and_then(Value::as_i64).unwrap_or(0);
                out.push(format!("{sku} {}.{:02}", price / 100, price % 100));
            }
        }
    }
    Ok(out.join(", "))
}
