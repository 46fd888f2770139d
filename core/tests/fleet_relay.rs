//! Issue 28, item 1, in the simulation over real stores: head office's fleet documents
//! (`prices`, written by the cloud) reach a kiosk and a kitchen linked only to the POS, with
//! signatures required. Before, each of them told the POS it was read-only for `prices` (the
//! POS's role may not write it), so the POS never offered it: the POS's status showed the
//! changes unsynced forever, with nothing refused and nothing logged. A change a peer keeps
//! not taking now says why in the status.
#![allow(clippy::unwrap_used)]

use outpost_core::signing::SignatureRule;
use outpost_core::{DocumentId, PeerId, Policy};
use outpost_testkit::{Net, PeerOptions};
use serde_json::json;

fn doc(s: &str) -> DocumentId {
    s.parse().unwrap()
}

/// The restaurant of the README: a cloud, a POS linked to it, a kiosk and a kitchen linked
/// only to the POS (default policy, signatures required).
fn site(seed: u64, kiosk: PeerOptions) -> (Net, [PeerId; 4]) {
    let mut net = Net::seeded(seed);
    net.policy(Policy::default());
    net.signing(SignatureRule::Required);
    let cloud = net.add_peer("acme", "cloud-1", "cloud");
    let pos = net.add_peer("paris", "pos-1", "pos");
    let kiosk = net.add_peer_with("paris", "kiosk-1", "kiosk", kiosk);
    let kitchen = net.add_peer("paris", "kitchen-1", "kitchen");
    net.connect(&pos, &cloud);
    net.connect(&kiosk, &pos);
    net.connect(&kitchen, &pos);
    (net, [cloud, pos, kiosk, kitchen])
}

#[test]
fn head_office_prices_reach_a_kiosk_and_a_kitchen_behind_the_pos() {
    for seed in 2800..2806 {
        let (mut net, [cloud, pos, kiosk, kitchen]) = site(seed, PeerOptions::default());
        let prices = doc("prices");
        let menu = doc("menu");
        net.put(&pos, &menu, "/items/burger", json!({"name": "Burger"}));
        net.put(&cloud, &prices, "/burger", json!({"price": 990}));
        net.run_until_quiet();
        let mut refused = Vec::new();
        for p in [&cloud, &pos, &kiosk, &kitchen] {
            refused.extend(net.refusals(p));
        }
        assert!(refused.is_empty(), "seed {seed}: refusals {refused:?}");
        for p in [&pos, &kiosk, &kitchen] {
            assert_eq!(
                net.get(p, &prices, "/burger/price"),
                Some(json!(990)),
                "seed {seed}: {p} reads head office's price"
            );
        }
        // A later change is pushed the same way, and the POS owes its devices nothing.
        net.put(&cloud, &prices, "/burger/price", json!(1050));
        net.run_until_quiet();
        for p in [&kiosk, &kitchen] {
            assert_eq!(net.get(p, &prices, "/burger/price"), Some(json!(1050)));
        }
        let status = net.engine(&pos).status();
        for p in [&kiosk, &kitchen] {
            let s = status.peer(p).unwrap();
            assert_eq!(s.they_lack(), 0, "seed {seed}: {p} lacks nothing: {s:?}");
            assert!(s.docs.iter().all(|d| d.reason.is_none()), "{s:?}");
        }
        net.assert_converged();
    }
}

/// A tampered POS (its store skips the policy) writes `prices` as itself: the kiosk behind
/// it refuses the change (the POS may relay head office's signed changes, not write its
/// own), and the POS's status says why.
#[test]
fn a_pos_cannot_pass_its_own_price_off_as_a_relayed_one() {
    let mut net = Net::seeded(2810);
    net.policy(Policy::default());
    net.signing(SignatureRule::Required);
    let cloud = net.add_peer("acme", "cloud-1", "cloud");
    let pos = net.add_peer_with(
        "paris",
        "pos-1",
        "pos",
        PeerOptions {
            store_policy: Some(Policy::allow_all()),
            ..PeerOptions::default()
        },
    );
    let kiosk = net.add_peer("paris", "kiosk-1", "kiosk");
    net.connect(&pos, &cloud);
    net.connect(&kiosk, &pos);
    let prices = doc("prices");
    net.put(&cloud, &prices, "/burger", json!({"price": 990}));
    net.run_until_quiet();
    assert_eq!(net.get(&kiosk, &prices, "/burger/price"), Some(json!(990)));
    net.refusals(&kiosk);

    net.put(&pos, &prices, "/burger/price", json!(1));
    net.run_until_quiet();
    let refused = net.refusals(&kiosk);
    println!("kiosk refused: {refused:?}");
    assert!(
        refused
            .iter()
            .any(|r| r.contains("role pos may not write context prices")),
        "{refused:?}"
    );
    assert_eq!(net.get(&kiosk, &prices, "/burger/price"), Some(json!(990)));
    let status = net.engine(&pos).status();
    let reason = status
        .peer(&kiosk)
        .and_then(|p| p.docs.iter().find(|d| d.doc == prices))
        .and_then(|d| d.reason.clone())
        .expect("the POS's status says why the kiosk lacks its change");
    println!("POS status, kiosk, prices: {reason}");
    assert!(reason.contains("refused by the peer"), "{reason}");
    assert!(reason.contains("may not write context prices"), "{reason}");
}

/// A kiosk whose policy does not let the POS relay (an older policy file, or an older
/// version) keeps saying it is read-only for `prices`: the POS's status names the reason
/// instead of an unexplained backlog.
#[test]
fn a_peer_that_takes_none_of_our_changes_shows_why_in_status() {
    let mut old = Policy::default();
    old.relay_roles.remove(&"pos".parse().unwrap());
    let (mut net, [cloud, pos, kiosk, _kitchen]) = site(
        2820,
        PeerOptions {
            engine_policy: Some(old),
            ..PeerOptions::default()
        },
    );
    let prices = doc("prices");
    net.put(&cloud, &prices, "/burger", json!({"price": 990}));
    net.run_until_quiet();
    assert_eq!(net.get(&kiosk, &prices, "/burger/price"), None);
    let status = net.engine(&pos).status();
    let d = status
        .peer(&kiosk)
        .and_then(|p| p.docs.iter().find(|d| d.doc == prices).cloned())
        .expect("the POS reports prices for the kiosk");
    println!("POS status, kiosk, prices: {d:?}");
    assert!(d.they_lack > 0, "{d:?}");
    let reason = d.reason.expect("a reason");
    assert!(reason.contains("read-only"), "{reason}");
    assert!(reason.contains("role pos"), "{reason}");
}
