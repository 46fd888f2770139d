//! Web clients' changes carry their authorship to every receiver (issue 29): the device that
//! accepts a client's change signs a vouch record naming the client (site, name, role), and
//! every receiver, however many hops away, checks the voucher's signature, that the
//! voucher's role may vouch for the client's role (the policy's `vouch`), and that the
//! client's role may write every path the change touches.

use automerge::sync::{self, SyncDoc};
use automerge::transaction::Transactable;
use automerge::{ActorId, AutoCommit, ObjType, ReadDoc, ROOT};
use outpost_core::engine::wire::{ChangeSignature, WireMessage};
use outpost_core::signing::{KeyId, SignatureRule, Signer};
use outpost_core::vouch::{vouch_bytes, VouchClaim};
use outpost_core::{DocumentId, PeerId, WebReceived, WebSyncState, WebWriter};
use outpost_testkit::{doc, replay_hint, rogue, Net};
use serde_json::json;

/// A network kitchen-1 <-> pos-1 <-> pos-2 (and pos-1 <-> cloud-1) that signs and requires
/// signatures, with order `p-1` placed by pos-1 and known everywhere.
fn site(seed: u64) -> (Net, DocumentId, [PeerId; 4]) {
    let orders = doc("orders/2026-12-07");
    let mut net = Net::seeded(seed);
    net.signing(SignatureRule::Required);
    let kitchen = net.add_peer("paris", "kitchen-1", "kitchen");
    let pos1 = net.add_peer("paris", "pos-1", "pos");
    let pos2 = net.add_peer("paris", "pos-2", "pos");
    let cloud = net.add_peer("paris", "cloud-1", "cloud");
    net.connect(&kitchen, &pos1);
    net.connect(&pos1, &pos2);
    net.connect(&pos1, &cloud);
    net.put(&pos1, &orders, "/orders/p-1", json!({"total": 12}));
    net.run_until_quiet();
    assert_eq!(
        net.get(&pos2, &orders, "/orders/p-1/total"),
        Some(json!(12)),
        "{}",
        replay_hint(seed)
    );
    (net, orders, [kitchen, pos1, pos2, cloud])
}

/// A web client's copy of `doc` as `peer` holds it, under an actor of its own (as
/// automerge-repo makes one: it names nobody).
fn client_copy(net: &Net, peer: &PeerId, doc: &DocumentId) -> AutoCommit {
    let bytes = net.store(peer).export(doc).expect("the document exists");
    AutoCommit::load(&bytes)
        .expect("a saved document loads")
        .with_actor(ActorId::random())
}

/// Sets `/orders/<order>/<key>` to `value` in the client's copy; returns the change.
fn client_sets(client: &mut AutoCommit, order: &str, key: &str, value: &str) -> automerge::Change {
    let (_, orders) = client
        .get(ROOT, "orders")
        .expect("readable")
        .expect("/orders exists");
    let o = match client.get(&orders, order).expect("readable") {
        Some((_, o)) => o,
        None => client
            .put_object(&orders, order, ObjType::Map)
            .expect("a new order"),
    };
    client.put(&o, key, value).expect("a put");
    let hash = client.commit().expect("a change");
    client
        .get_change_by_hash(&hash)
        .expect("the change just made")
        .clone()
}

/// Syncs the client's copy with `peer` through the store's web-client side, as the
/// WebSocket server does; the last answer to a message that carried changes.
fn sync_client(
    net: &mut Net,
    peer: &PeerId,
    doc: &DocumentId,
    client: &mut AutoCommit,
    writer: &WebWriter,
) -> Option<WebReceived> {
    let mut state = WebSyncState::new();
    let mut cs = sync::State::new();
    let mut last = None;
    for _ in 0..10 {
        let mut progressed = false;
        if let Some(m) = client.sync().generate_sync_message(&mut cs) {
            let carries = !m.changes.is_empty();
            let r = net.write(peer, doc, |s, d| {
                s.web_receive(d, &mut state, &m.encode(), writer)
            });
            if carries {
                last = Some(r);
            }
            progressed = true;
        }
        let out = net
            .store(peer)
            .web_sync_message(doc, &mut state)
            .expect("a sync message");
        if let Some(bytes) = out {
            let m = sync::Message::decode(&bytes).expect("decodes");
            client
                .sync()
                .receive_sync_message(&mut cs, m)
                .expect("the client takes it");
            progressed = true;
        }
        if !progressed {
            break;
        }
    }
    last
}

/// A tampered `voucher` sends `change` of `doc` to `to`, vouched for with its own key as the
/// web client `client`.
fn inject_vouched(
    net: &mut Net,
    voucher: &PeerId,
    to: &PeerId,
    doc: &DocumentId,
    change: &automerge::Change,
    client: &VouchClaim,
) {
    let ca = net.ca().expect("a signing network");
    let signer = ca.issue(&net.info(voucher));
    let hash = change.hash();
    let raw = signer
        .sign(&vouch_bytes(doc, &hash, client))
        .expect("the test key signs");
    let signature = ChangeSignature {
        change: hash.0,
        key: KeyId::of(signer.certificate()).0,
        signature: client.seal(&raw).expect("a short claim"),
    };
    let frames = [
        rogue::sigs_frame(doc, vec![signature], vec![signer.certificate().to_vec()]),
        rogue::sync_frame(doc, vec![change.raw_bytes().to_vec()], vec![hash]),
    ];
    for f in frames {
        assert!(
            net.inject(voucher, to, f),
            "{voucher} is not linked to {to}"
        );
    }
}

fn kds(name: &str) -> VouchClaim {
    VouchClaim {
        site: "paris".parse().expect("site"),
        name: name.into(),
        role: "kds".parse().expect("role"),
    }
}

#[test]
fn a_vouched_kitchen_screen_bump_is_accepted_two_hops_away() {
    let seed = 29;
    let (mut net, orders, [kitchen, pos1, pos2, cloud]) = site(seed);
    let mut screen = client_copy(&net, &kitchen, &orders);
    client_sets(&mut screen, "p-1", "kitchen", "ready");
    net.tap(&pos2);
    let writer = WebWriter {
        peer: "web-screen-1".parse().expect("peer id"),
        role: "kds".parse().expect("role"),
        name: "screen-1".into(),
        site: "paris".parse().expect("site"),
    };
    let answer = sync_client(&mut net, &kitchen, &orders, &mut screen, &writer);
    assert_eq!(
        answer,
        Some(WebReceived::Applied(1)),
        "{}",
        replay_hint(seed)
    );
    net.run_until_quiet();
    for p in [&kitchen, &pos1, &pos2, &cloud] {
        assert_eq!(
            net.get(p, &orders, "/orders/p-1/kitchen"),
            Some(json!("ready")),
            "the bump at {p}; {}",
            replay_hint(seed)
        );
        assert!(
            net.refusals(p).is_empty(),
            "{p} refused: {:?}",
            net.refusals(p)
        );
    }
    // What reached pos-2 (two hops from the kitchen, through pos-1) for the client's change
    // is the kitchen's vouch record naming the client.
    let claims: Vec<VouchClaim> = net
        .take_tapped()
        .into_iter()
        .filter(|(from, _)| from == &pos1)
        .filter_map(|(_, frame)| match WireMessage::decode(&frame) {
            Ok(WireMessage::Signatures { signatures, .. }) => Some(signatures),
            _ => None,
        })
        .flatten()
        .filter_map(|s| {
            outpost_core::vouch::open(&s.signature)
                .and_then(Result::ok)
                .map(|(claim, _)| claim)
        })
        .collect();
    println!("vouch records relayed to pos-2: {claims:?}");
    assert!(claims.contains(&kds("screen-1")), "{claims:?}");
}

#[test]
fn a_vouch_for_a_role_the_voucher_may_not_vouch_for_is_refused() {
    let seed = 30;
    let (mut net, orders, [kitchen, pos1, ..]) = site(seed);
    // The kitchen may vouch for `kds` only; a tampered kitchen vouches for a client of role
    // `pos` placing an order (which a `pos` may write, and the kitchen itself may write
    // context `orders`): the vouch itself is what is refused.
    let mut fake = client_copy(&net, &pos1, &orders);
    let change = client_sets(&mut fake, "w-1", "total", "999");
    let claim = VouchClaim {
        role: "pos".parse().expect("role"),
        ..kds("till-9")
    };
    inject_vouched(&mut net, &kitchen, &pos1, &orders, &change, &claim);
    net.run_until_quiet();
    let refusals = net.refusals(&pos1);
    println!("pos-1 refused: {refusals:?}");
    assert!(
        refusals.iter().any(|r| r.contains("may not vouch")),
        "{refusals:?}; {}",
        replay_hint(seed)
    );
    assert_eq!(net.get(&pos1, &orders, "/orders/w-1"), None);
}

#[test]
fn a_vouched_write_outside_the_clients_role_is_refused_even_if_the_voucher_may_write_it() {
    let seed = 31;
    let (mut net, orders, [kitchen, pos1, pos2, _]) = site(seed);
    // Honestly, pos-1 refuses it at the door: a kds screen may not mark an order paid.
    let mut screen = client_copy(&net, &pos1, &orders);
    client_sets(&mut screen, "p-1", "payment", "card");
    let writer = WebWriter {
        peer: "web-screen-2".parse().expect("peer id"),
        role: "kds".parse().expect("role"),
        name: "screen-2".into(),
        site: "paris".parse().expect("site"),
    };
    let answer = sync_client(&mut net, &pos1, &orders, &mut screen, &writer);
    assert!(
        matches!(&answer, Some(WebReceived::Refused(r)) if r.contains("kds")),
        "{answer:?}"
    );
    // A tampered pos-1 vouches for it anyway (a POS may write `payment` itself): pos-2 and
    // the kitchen judge it by the client's role, `kds`, and refuse it.
    let change = screen
        .get_last_local_change()
        .expect("the client's change")
        .clone();
    for to in [&pos2, &kitchen] {
        inject_vouched(&mut net, &pos1, to, &orders, &change, &kds("screen-2"));
    }
    net.run_until_quiet();
    for p in [&pos2, &kitchen] {
        let refusals = net.refusals(p);
        println!("{p} refused: {refusals:?}");
        assert!(
            refusals
                .iter()
                .any(|r| r.contains("role kds") && r.contains("payment")),
            "{p}: {refusals:?}; {}",
            replay_hint(seed)
        );
        assert_eq!(net.get(p, &orders, "/orders/p-1/payment"), None, "{p}");
    }
}
