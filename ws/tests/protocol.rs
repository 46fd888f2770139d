//! automerge-repo's WebSocket protocol against a real site (a POS and a kitchen over QUIC, the
//! kitchen serving web clients), spoken by hand with the `automerge` crate so each rule can be
//! attacked: version negotiation, what a role reads and writes, refused writes stored nowhere,
//! revocation, and the limits a hostile client meets (each test prints the figure it bounds).

mod support;

use std::time::{Duration, Instant};

use automerge::transaction::Transactable;
use automerge::{ObjType, ReadDoc, ROOT};
use outpost_core::Durability;
use outpost_ws::WsLimits;
use serde_json::json;
use support::*;

const DAY: &str = "orders/2026-12-07";

async fn site_with_an_order(limits: WsLimits) -> Site {
    init_tracing();
    let site = Site::start(limits).await;
    site.pos
        .store()
        .put(
            &doc(DAY),
            "/orders/P1-001",
            json!({"items": ["burger"], "total": 950}),
            Durability::Durable,
        )
        .expect("order");
    wait_value(
        "the order reaches the kitchen",
        site.kitchen.store(),
        &doc(DAY),
        "/orders/P1-001/total",
        &json!(950),
    )
    .await;
    site
}

fn has_order(d: &automerge::Automerge) -> bool {
    d.get(ROOT, "orders")
        .ok()
        .flatten()
        .and_then(|(_, orders)| d.get(&orders, "P1-001").ok().flatten())
        .is_some()
}

/// Writes `/orders/P1-001/<key>` = {"state": value} in the client's copy.
fn write_step(d: &mut automerge::Automerge, key: &str, value: &str) {
    let (_, orders) = d.get(ROOT, "orders").expect("read").expect("orders");
    let (_, order) = d.get(&orders, "P1-001").expect("read").expect("order");
    let mut tx = d.transaction();
    let step = tx
        .put_object(&order, key, ObjType::Map)
        .expect("put object");
    tx.put(&step, "state", value).expect("put");
    tx.commit();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handshake_selects_version_1_and_an_unknown_version_gets_a_clear_error() {
    init_tracing();
    let site = Site::start(WsLimits::default()).await;
    let token = site.token("kds", "kitchen-screen-1");

    let mut c = Client::connect(&site.url(&token)).await.expect("upgrade");
    let peer = c.join(&["1"]).await.expect("an answer");
    assert_eq!(text(&peer, "type").as_deref(), Some("peer"));
    assert_eq!(text(&peer, "selectedProtocolVersion").as_deref(), Some("1"));
    assert_eq!(text(&peer, "targetId"), Some(c.me.clone()));

    let mut old = Client::connect(&site.url(&token)).await.expect("upgrade");
    let err = old.join(&["0", "2"]).await.expect("an answer");
    assert_eq!(text(&err, "type").as_deref(), Some("error"), "{err:?}");
    let message = text(&err, "message").unwrap_or_default();
    println!("unknown version answered: {message}");
    assert!(
        message.contains("unsupported protocol version"),
        "{message}"
    );
    assert!(
        message.contains("\"1\""),
        "says which version it speaks: {message}"
    );
    assert!(
        old.recv().await.is_none(),
        "the connection closes after the error"
    );

    // No token, a forged token: refused at the upgrade.
    let refused = Client::connect(&format!("ws://{}/", site.web.local_addr())).await;
    assert!(
        refused.as_ref().is_err_and(|e| e.contains("401")),
        "{:?}",
        refused.err()
    );
    let forged = token.replace("opt1.", "opt1.00");
    assert!(Client::connect(&site.url(&forged)).await.is_err());
    site.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kds_client_follows_orders_and_writes_only_the_kitchen_step() {
    let site = site_with_an_order(WsLimits::default()).await;
    let mut c = Client::connect(&site.url(&site.token("kds", "kitchen-screen-1")))
        .await
        .expect("upgrade");
    c.join(&["1"]).await.expect("peer");
    let mut orders = Replica::new(site.repo_id(DAY));
    orders.offer(&mut c, true).await.expect("request");
    let other = orders.sync_until(&mut c, has_order).await;
    assert!(
        has_order(&orders.doc),
        "the client got the POS's order; other messages: {other:?}"
    );

    // Live: a second order written on the POS reaches the following client.
    let started = Instant::now();
    site.pos
        .store()
        .put(
            &doc(DAY),
            "/orders/P1-002",
            json!({"total": 400}),
            Durability::Durable,
        )
        .expect("second order");
    orders
        .sync_until(&mut c, |d| {
            d.get(ROOT, "orders")
                .ok()
                .flatten()
                .and_then(|(_, o)| d.get(&o, "P1-002").ok().flatten())
                .is_some()
        })
        .await;
    println!("POS write -> web client: {:?}", started.elapsed());

    // The kitchen step: accepted, vouched for by the kitchen, and the POS sees it.
    write_step(&mut orders.doc, "kitchen", "ready");
    orders.offer(&mut c, false).await.expect("send");
    wait_value(
        "the bump reaches the POS",
        site.pos.store(),
        &doc(DAY),
        "/orders/P1-001/kitchen/state",
        &json!("ready"),
    )
    .await;

    // The payment step is the POS's: refused at the kitchen, stored nowhere.
    write_step(&mut orders.doc, "payment", "paid");
    orders.offer(&mut c, false).await.expect("send");
    let other = orders.sync_until(&mut c, |_| false).await;
    let err = other
        .iter()
        .find(|m| text(m, "type").as_deref() == Some("error"))
        .expect("an error");
    let message = text(err, "message").unwrap_or_default();
    println!("refused: {message}");
    assert!(
        message.contains("/orders/*/payment is written by pos"),
        "{message}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    for store in [site.kitchen.store(), site.pos.store()] {
        assert_eq!(
            store
                .get(&doc(DAY), "/orders/P1-001/payment")
                .expect("read"),
            None
        );
    }
    assert_eq!(
        site.web
            .stats()
            .refused_writes
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    site.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_reads_no_orders_and_its_writes_are_refused_and_stored_nowhere() {
    let site = site_with_an_order(WsLimits::default()).await;
    site.pos
        .store()
        .put(
            &doc("menu"),
            "/items/burger/price",
            json!(950),
            Durability::Durable,
        )
        .expect("menu");
    wait_value(
        "menu at the kitchen",
        site.kitchen.store(),
        &doc("menu"),
        "/items/burger/price",
        &json!(950),
    )
    .await;
    // A kitchen may not vouch for guests (the policy's `vouch`): refused at the upgrade.
    let at_kitchen = Client::connect(&site.url(&site.token("guest", "guest-42"))).await;
    assert!(
        at_kitchen.as_ref().is_err_and(|e| e.contains("403")),
        "{:?}",
        at_kitchen.err()
    );
    // Guests join through the POS.
    let mut c = Client::connect(&site.pos_url(&site.pos_token("guest", "guest-42")))
        .await
        .expect("upgrade");
    c.join(&["1"]).await.expect("peer");

    // Orders: unavailable to a guest, also when it pushes an order of its own into them.
    let mut orders = Replica::new(site.repo_id(DAY));
    let mut tx = orders.doc.transaction();
    let o = tx.put_object(ROOT, "orders", ObjType::Map).expect("orders");
    let mine = tx.put_object(&o, "G-001", ObjType::Map).expect("order");
    tx.put(&mine, "total", 1).expect("total");
    tx.commit();
    orders.offer(&mut c, false).await.expect("send");
    // The refusal in words first (a page shows it), then the protocol's answer.
    let said = c.recv().await.expect("an answer");
    assert_eq!(text(&said, "type").as_deref(), Some("error"), "{said:?}");
    assert!(
        text(&said, "message").is_some_and(|m| m.contains("may not read or write")),
        "{said:?}"
    );
    let answer = c.recv().await.expect("an answer");
    assert_eq!(
        text(&answer, "type").as_deref(),
        Some("doc-unavailable"),
        "{answer:?}"
    );

    // The menu: readable, not writable.
    let mut menu = Replica::new(site.repo_id("menu"));
    menu.offer(&mut c, true).await.expect("request");
    menu.sync_until(&mut c, |d| d.get(ROOT, "items").ok().flatten().is_some())
        .await;
    let (_, items) = menu.doc.get(ROOT, "items").expect("read").expect("items");
    let (_, burger) = menu
        .doc
        .get(&items, "burger")
        .expect("read")
        .expect("burger");
    let mut tx = menu.doc.transaction();
    tx.put(&burger, "price", 1).expect("put");
    tx.commit();
    menu.offer(&mut c, false).await.expect("send");
    let other = menu.sync_until(&mut c, |_| false).await;
    let message = other
        .iter()
        .find_map(|m| text(m, "message"))
        .unwrap_or_default();
    println!("guest's menu write: {message}");
    assert!(
        message.contains("role guest may not write menu"),
        "{message}"
    );

    tokio::time::sleep(Duration::from_millis(300)).await;
    for store in [site.kitchen.store(), site.pos.store()] {
        assert_eq!(store.get(&doc(DAY), "/orders/G-001").expect("read"), None);
        assert_eq!(
            store
                .get(&doc("menu"), "/items/burger/price")
                .expect("read"),
            Some(json!(950))
        );
    }
    site.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_token_cuts_its_connection_and_refuses_it_afterwards() {
    let site = site_with_an_order(WsLimits::default()).await;
    let now = outpost_core::Timestamp::now().as_millis() / 1000;
    let (token, claims) = site
        .tokens
        .issue(
            &"lyon".parse().expect("site"),
            &"kds".parse().expect("role"),
            "screen-2",
            now,
            3600,
        )
        .expect("issue");
    let mut c = Client::connect(&site.url(&token)).await.expect("upgrade");
    c.join(&["1"]).await.expect("peer");
    // Another handle on the same files, as `outpost token revoke` in another process.
    let other =
        outpost_ws::TokenBook::open(site.tmp.path().join("kitchen-1-tokens")).expect("book");
    let started = Instant::now();
    other.revoke(&claims.id).expect("revoke");
    let mut cut = false;
    while let Some(m) = c.recv().await {
        if text(&m, "type").as_deref() == Some("error") {
            assert!(text(&m, "message").unwrap_or_default().contains("revoked"));
            cut = true;
        }
    }
    println!("revocation -> connection cut: {:?}", started.elapsed());
    assert!(cut, "told why");
    assert!(started.elapsed() < Duration::from_secs(3));
    let again = Client::connect(&site.url(&token)).await;
    assert!(again.is_err(), "a revoked token is refused at the upgrade");
    site.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_clients_meet_the_message_size_and_documents_per_session_limits() {
    let limits = WsLimits {
        max_message_bytes: 64 * 1024,
        max_documents_per_session: 3,
        ..WsLimits::default()
    };
    let site = site_with_an_order(limits).await;
    for name in ["menu", "stock", "orders/2026-12-06", "orders/2026-12-05"] {
        site.pos
            .store()
            .put(&doc(name), "/x", json!(1), Durability::Durable)
            .expect("doc");
        wait_value(
            "doc at the kitchen",
            site.kitchen.store(),
            &doc(name),
            "/x",
            &json!(1),
        )
        .await;
    }
    let token = site.token("kds", "screen-3");

    // Documents per session: the fourth document is refused with an error and unavailable.
    let mut c = Client::connect(&site.url(&token)).await.expect("upgrade");
    c.join(&["1"]).await.expect("peer");
    let names = ["menu", DAY, "orders/2026-12-06", "orders/2026-12-05"];
    let mut refused = Vec::new();
    for name in names {
        let mut r = Replica::new(site.repo_id(name));
        r.offer(&mut c, true).await.expect("request");
        let other = r
            .sync_until(&mut c, |d| {
                d.get(ROOT, "x").ok().flatten().is_some() || has_order(d)
            })
            .await;
        if let Some(m) = other.iter().find_map(|m| text(m, "message")) {
            refused.push((name, m));
        }
    }
    println!("documents per session: limit 3, refused {refused:?}");
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0].0, "orders/2026-12-05");
    assert!(refused[0].1.contains("at most 3 documents"), "{refused:?}");

    // Message size: a message over the limit closes the connection before it is buffered.
    let mut big = Client::connect(&site.url(&token)).await.expect("upgrade");
    big.join(&["1"]).await.expect("peer");
    let sent = big
        .send_sync("sync", &site.repo_id(DAY), vec![0u8; 64 * 1024 + 1])
        .await;
    let closed = sent.is_err() || big.recv().await.is_none();
    println!("message size: limit 65,536 bytes, a message of 65,537+ bytes closed the connection: {closed}");
    assert!(closed);
    // A malformed sync message under the limit is an error, not a crash.
    let mut bad = Client::connect(&site.url(&token)).await.expect("upgrade");
    bad.join(&["1"]).await.expect("peer");
    bad.send_sync("sync", &site.repo_id(DAY), vec![0x42; 100])
        .await
        .expect("send");
    let m = bad.recv().await.expect("an error");
    assert_eq!(text(&m, "type").as_deref(), Some("error"), "{m:?}");
    // The server still serves others.
    let mut fine = Client::connect(&site.url(&token)).await.expect("upgrade");
    assert!(fine.join(&["1"]).await.is_some());
    site.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_over_its_bytes_per_minute_budget_is_closed_and_others_go_on() {
    const BUDGET: u64 = 32 * 1024;
    const CHUNK: usize = 8 * 1024;
    let limits = WsLimits {
        max_bytes_per_minute: BUDGET,
        ..WsLimits::default()
    };
    let site = site_with_an_order(limits).await;
    let token = site.token("kds", "screen-4");
    let refusals = || {
        site.web
            .stats()
            .limit_refusals
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let before = refusals();
    let mut c = Client::connect(&site.url(&token)).await.expect("upgrade");
    c.join(&["1"]).await.expect("peer");
    // Messages of 8 KiB that the server takes and ignores (`doc-unavailable`), one at a time
    // (the server answers nothing while the budget lasts), until the connection's minute
    // budget is spent: then it names the budget and closes.
    let mut sent = 0usize;
    let mut closed_with = None;
    for _ in 0..16 {
        if c.send_sync("doc-unavailable", &site.repo_id(DAY), vec![0x42; CHUNK])
            .await
            .is_err()
        {
            break;
        }
        sent += CHUNK;
        match tokio::time::timeout(Duration::from_millis(300), c.recv()).await {
            Err(_) => continue,
            Ok(None) => break,
            Ok(Some(m)) => {
                closed_with = text(&m, "message");
                break;
            }
        }
    }
    println!(
        "bytes per minute: budget {BUDGET} bytes; the connection was closed after {sent} bytes \
         of messages: {closed_with:?}"
    );
    let said = closed_with.expect("the server names the budget when it closes the connection");
    assert!(said.contains(&BUDGET.to_string()), "{said}");
    assert!(
        sent as u64 <= BUDGET + CHUNK as u64,
        "closed only after {sent} bytes"
    );
    assert!(c.recv().await.is_none(), "the connection is closed");
    assert_eq!(refusals(), before + 1, "counted as a limit refusal");
    // Another connection of the same token still syncs.
    let mut other = Client::connect(&site.url(&token)).await.expect("upgrade");
    assert!(other.join(&["1"]).await.is_some());
    let mut r = Replica::new(site.repo_id(DAY));
    r.offer(&mut other, true).await.expect("request");
    r.sync_until(&mut other, has_order).await;
    assert!(
        has_order(&r.doc),
        "the other connection gets the day's order"
    );
    site.stop().await;
}

/// A compressed change of 100 MiB of zeros is about 100 KB, well under the message limit: it
/// is refused after counting at most 64 MiB of it, before Automerge decodes it, and nothing
/// is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decompression_bomb_from_a_web_client_is_refused_unread() {
    let site = site_with_an_order(WsLimits::default()).await;
    let heads_before = site.kitchen.store().heads(&doc(DAY)).expect("heads");
    let inflated: usize = 100 << 20;
    let chunk = outpost_testkit::rogue::deflate_bomb(inflated);
    let msg = automerge::sync::Message {
        heads: vec![],
        need: vec![],
        have: vec![],
        changes: vec![chunk].into(),
        flags: None,
        version: automerge::sync::MessageVersion::V1,
    };
    let data = msg.encode();
    let token = site.token("kds", "screen-5");
    let refused_before = site
        .web
        .stats()
        .refused_writes
        .load(std::sync::atomic::Ordering::Relaxed);
    let mut c = Client::connect(&site.url(&token)).await.expect("upgrade");
    c.join(&["1"]).await.expect("peer");
    let size = data.len();
    c.send_sync("sync", &site.repo_id(DAY), data)
        .await
        .expect("send");
    let said = within("the refusal", async {
        loop {
            let m = c.recv().await.expect("an answer");
            if let Some(msg) = text(&m, "message") {
                return msg;
            }
        }
    })
    .await;
    println!(
        "web decompression bomb: a {} KB message inflating to {} MiB was refused after at most \
         {} MiB were counted: {said}",
        size / 1024,
        inflated >> 20,
        outpost_core::engine::DEFAULT_MAX_INFLATED_BYTES >> 20
    );
    assert!(said.contains("inflates beyond"), "{said}");
    assert_eq!(
        site.web
            .stats()
            .refused_writes
            .load(std::sync::atomic::Ordering::Relaxed),
        refused_before + 1
    );
    assert_eq!(
        site.kitchen.store().heads(&doc(DAY)).expect("heads"),
        heads_before,
        "nothing stored"
    );
    site.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_token_holds_at_most_its_connections_and_gets_one_back_when_one_closes() {
    const CAP: usize = 2;
    let limits = WsLimits {
        max_connections_per_token: CAP,
        ..WsLimits::default()
    };
    let site = site_with_an_order(limits).await;
    let token = site.token("kds", "screen-6");
    let mut open = Vec::new();
    for _ in 0..CAP {
        let mut c = Client::connect(&site.url(&token)).await.expect("upgrade");
        c.join(&["1"]).await.expect("peer");
        open.push(c);
    }
    let refused = Client::connect(&site.url(&token)).await;
    println!(
        "connections per token: limit {CAP}; connection {} of one token: {:?}",
        CAP + 1,
        refused.as_ref().err()
    );
    let refused = refused
        .err()
        .expect("the connection over the limit is refused");
    assert!(refused.contains("429"), "{refused}");
    // Another token is not held back by this one's count.
    let other = site.token("kds", "screen-7");
    let mut c = Client::connect(&site.url(&other))
        .await
        .expect("another token");
    assert!(c.join(&["1"]).await.is_some());
    // One closes: the token gets its place back (once the server has seen the close).
    drop(open.pop());
    let again = within("a place again for the token", async {
        loop {
            if let Ok(c) = Client::connect(&site.url(&token)).await {
                return c;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    drop(again);
    site.stop().await;
}
