//! Mutual TLS over real QUIC on 127.0.0.1: who gets in and who does not.

mod support;

use std::sync::Arc;

use outpost_core::engine::wire::Protocol;
use outpost_core::Durability;
use outpost_transport::{self as tls, peer_info_of, TransportTuning};
use outpost_transport::{DenyList, FleetCa, PeerFilter, SiteRule};
use support::*;

#[tokio::test]
async fn valid_certificates_complete_the_handshake() {
    init_tracing();
    let ca = FleetCa::generate("acme").expect("ca");
    let pos = issue(&ca, "lyon", "pos-1", "pos");
    let kiosk = issue(&ca, "lyon", "kiosk-1", "kiosk");
    let server = endpoint(&pos, &filter_for(&pos));
    let client = endpoint(&kiosk, &filter_for(&kiosk));
    let (s, c) = link(&server, &client).await;
    let s = s.expect("server accepts");
    let c = c.expect("client connects");
    assert_eq!(peer_info_of(&s).expect("client identity"), *kiosk.info());
    assert_eq!(peer_info_of(&c).expect("server identity"), *pos.info());
    assert_eq!(alpn_of(&c), Some(tls::ALPN.to_vec()));
}

#[tokio::test]
async fn certificate_from_another_ca_is_refused() {
    init_tracing();
    let ca = FleetCa::generate("acme").expect("ca");
    let rogue_ca = FleetCa::generate("rogue").expect("ca");
    let pos = issue(&ca, "lyon", "pos-1", "pos");
    let rogue = issue(&rogue_ca, "lyon", "kiosk-1", "kiosk");

    // Rogue client to a fleet server.
    let server = endpoint(&pos, &filter_for(&pos));
    let client = endpoint(&rogue, &filter_for(&rogue));
    let (s, c) = link(&server, &client).await;
    assert!(s.is_err(), "server must refuse a client of another CA");
    assert!(c.is_err(), "client of another CA must not get a connection");

    // Fleet client to a rogue server: the client refuses the server.
    let rogue_server = endpoint(&rogue, &filter_for(&rogue));
    let fleet_client = endpoint(&pos, &filter_for(&pos));
    let (s, c) = link(&rogue_server, &fleet_client).await;
    assert!(c.is_err(), "client must refuse a server of another CA");
    assert!(
        s.is_err(),
        "handshake with a rogue server must fail on both sides"
    );
}

#[tokio::test]
async fn client_without_certificate_is_refused() {
    init_tracing();
    let ca = FleetCa::generate("acme").expect("ca");
    let pos = issue(&ca, "lyon", "pos-1", "pos");
    let server = endpoint(&pos, &filter_for(&pos));

    // A client that trusts the fleet CA but presents no certificate.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pos.ca_der().clone()).expect("root");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut crypto = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("tls13")
        .with_root_certificates(roots)
        .with_no_client_auth();
    crypto.alpn_protocols = vec![tls::ALPN.to_vec()];
    let crypto =
        quinn::crypto::rustls::QuicClientConfig::try_from(crypto).expect("quic client config");
    let mut client = quinn::Endpoint::client(localhost()).expect("client endpoint");
    client.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));

    let (s, c) = link(&server, &client).await;
    assert!(
        s.is_err(),
        "server must refuse a client without certificate"
    );
    assert!(c.is_err(), "anonymous client must not get a connection");
}

#[tokio::test]
async fn revoked_device_is_refused_both_ways() {
    init_tracing();
    let ca = FleetCa::generate("acme").expect("ca");
    let pos = issue(&ca, "lyon", "pos-1", "pos");
    let kiosk = issue(&ca, "lyon", "kiosk-1", "kiosk");

    let deny = DenyList::parse(["lyon/kiosk-1"]).expect("deny list");
    let server = endpoint(
        &pos,
        &PeerFilter::new(SiteRule::for_identity(pos.info()), deny),
    );
    let client = endpoint(&kiosk, &filter_for(&kiosk));
    let (s, c) = link(&server, &client).await;
    assert!(s.is_err(), "server must refuse a revoked client");
    assert!(c.is_err(), "revoked client must not get a connection");

    // The kiosk refuses a revoked server too.
    let server = endpoint(&pos, &filter_for(&pos));
    let client = endpoint(
        &kiosk,
        &PeerFilter::new(
            SiteRule::for_identity(kiosk.info()),
            DenyList::parse(["pos-1"]).expect("deny"),
        ),
    );
    let (_, c) = link(&server, &client).await;
    assert!(c.is_err(), "client must refuse a revoked server");

    // Revoking at runtime applies to the next handshake.
    let filter = filter_for(&pos);
    let server = endpoint(&pos, &filter);
    let client = endpoint(&kiosk, &filter_for(&kiosk));
    let (s, c) = link(&server, &client).await;
    assert!(s.is_ok() && c.is_ok(), "not revoked yet");
    filter.revoke(
        "kiosk-1"
            .parse::<outpost_transport::DenyEntry>()
            .expect("entry"),
    );
    let (s, c) = link(&server, &client).await;
    assert!(s.is_err() && c.is_err(), "revoked at runtime");
}

#[tokio::test]
async fn other_site_is_refused_unless_cloud() {
    init_tracing();
    let ca = FleetCa::generate("acme").expect("ca");
    let lyon_pos = issue(&ca, "lyon", "pos-1", "pos");
    let paris_pos = issue(&ca, "paris", "pos-2", "pos");
    let cloud = issue(&ca, "acme", "cloud-1", "cloud");

    // Device of another site: refused by the site device (server side)...
    let server = endpoint(&lyon_pos, &filter_for(&lyon_pos));
    let paris = endpoint(&paris_pos, &filter_for(&paris_pos));
    let (s, c) = link(&server, &paris).await;
    assert!(s.is_err() && c.is_err(), "lyon must refuse a paris device");
    // ...and when dialing it (client side).
    let lyon_client = endpoint(&lyon_pos, &filter_for(&lyon_pos));
    let paris_server = endpoint(
        &paris_pos,
        &PeerFilter::new(SiteRule::AnySite, DenyList::new()),
    );
    let (_, c) = link(&paris_server, &lyon_client).await;
    assert!(c.is_err(), "lyon must refuse to talk to a paris server");

    // A cloud peer of the fleet is admitted by every site, and admits every site.
    let cloud_client = endpoint(&cloud, &filter_for(&cloud));
    let (s, c) = link(&server, &cloud_client).await;
    assert!(s.is_ok() && c.is_ok(), "site devices accept the cloud");
    let cloud_server = endpoint(&cloud, &filter_for(&cloud));
    let (s, c) = link(&cloud_server, &paris).await;
    assert!(s.is_ok() && c.is_ok(), "cloud accepts paris");
    let (s, c) = link(&cloud_server, &lyon_client).await;
    assert!(s.is_ok() && c.is_ok(), "cloud accepts lyon");
}

#[tokio::test]
async fn expired_certificate_is_refused() {
    init_tracing();
    let ca = FleetCa::generate("acme").expect("ca");
    let pos = issue(&ca, "lyon", "pos-1", "pos");
    let expired = ca
        .issue_valid_for(
            &info("lyon", "kiosk-1", "kiosk"),
            time::Duration::minutes(-30),
        )
        .expect("issue");
    let server = endpoint(&pos, &filter_for(&pos));
    let client = tls::endpoint(
        &expired,
        &filter_for(&expired),
        &TransportTuning::default(),
        localhost(),
    )
    .expect("bind");
    let (s, c) = link(&server, &client).await;
    assert!(
        s.is_err() && c.is_err(),
        "expired certificate must be refused"
    );
}

fn alpn_of(conn: &quinn::Connection) -> Option<Vec<u8>> {
    conn.handshake_data()
        .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|d| d.protocol)
}

/// ALPN picks the newest protocol both sides speak: `outpost/3` between two peers of this
/// version, `outpost/2` with a peer of the version before revocations, `outpost/1` with a peer
/// that speaks only the first protocol, whichever side dials.
#[tokio::test]
async fn alpn_negotiates_the_newest_common_protocol() {
    init_tracing();
    let ca = FleetCa::generate("acme").expect("ca");
    let pos = issue(&ca, "lyon", "pos-1", "pos");
    let kiosk = issue(&ca, "lyon", "kiosk-1", "kiosk");
    let old = TransportTuning {
        protocols: vec![Protocol::V1],
        ..TransportTuning::default()
    };
    let new_pos = endpoint(&pos, &filter_for(&pos));
    let old_kiosk =
        tls::endpoint(&kiosk, &filter_for(&kiosk), &old, localhost()).expect("endpoint");
    let new_kiosk = endpoint(&kiosk, &filter_for(&kiosk));
    let (s, c) = link(&new_pos, &new_kiosk).await;
    assert_eq!(alpn_of(&s.expect("accepted")), Some(b"outpost/3".to_vec()));
    assert_eq!(alpn_of(&c.expect("connected")), Some(b"outpost/3".to_vec()));
    // A peer of the version before revocations (protocols 2 and 1).
    let v2 = TransportTuning {
        protocols: vec![Protocol::V2, Protocol::V1],
        ..TransportTuning::default()
    };
    let v2_kiosk = tls::endpoint(&kiosk, &filter_for(&kiosk), &v2, localhost()).expect("endpoint");
    for (server, client) in [(&new_pos, &v2_kiosk), (&v2_kiosk, &new_pos)] {
        let (s, c) = link(server, client).await;
        assert_eq!(alpn_of(&s.expect("accepted")), Some(b"outpost/2".to_vec()));
        assert_eq!(alpn_of(&c.expect("connected")), Some(b"outpost/2".to_vec()));
    }
    for (server, client) in [(&new_pos, &old_kiosk), (&old_kiosk, &new_pos)] {
        let (s, c) = link(server, client).await;
        assert_eq!(alpn_of(&s.expect("accepted")), Some(b"outpost/1".to_vec()));
        assert_eq!(alpn_of(&c.expect("connected")), Some(b"outpost/1".to_vec()));
    }
}

/// A rolling upgrade: a kiosk of an older version (protocol 1, a `Hello` listing every
/// document; or protocol 2, before revocations) and a POS of this version sync both ways over
/// real QUIC, documents that existed before the link included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_of_the_previous_protocol_keeps_syncing() {
    init_tracing();
    older_kiosk_syncs(vec![Protocol::V1]).await;
    older_kiosk_syncs(vec![Protocol::V2, Protocol::V1]).await;
}

async fn older_kiosk_syncs(protocols: Vec<Protocol>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = FleetCa::generate("acme").expect("ca");
    let pos_cert = issue(&ca, "lyon", "pos-1", "pos");
    let kiosk_cert = issue(&ca, "lyon", "kiosk-1", "kiosk");
    // Protocol 1 carries no signatures: a fleet still running such devices runs the
    // transitional rule (the default, `Required`, refuses their unsigned changes). Under it
    // an unsigned change counts for no more than any relay that could have forwarded it
    // (`core/tests/signed_changes.rs`: an old kiosk's orders wait until it signs, where a
    // kitchen relays orders). This test is about the wire protocol, so in its fleet the
    // relays, pos and kiosk, may write both contexts it syncs.
    let mut policy = outpost_core::Policy {
        relay_roles: ["pos", "kiosk"]
            .iter()
            .map(|r| r.parse().expect("a role"))
            .collect(),
        ..outpost_core::Policy::default()
    };
    for context in ["stock", "orders"] {
        policy.contexts.insert(
            context.parse().expect("a context"),
            outpost_core::ContextRule::new(&["pos", "kiosk"], &["pos", "kiosk"]),
        );
    }
    let mut pos_config = test_config(&dir.path().join("pos"), &pos_cert, vec![]);
    pos_config.policy = policy.clone();
    pos_config.signatures = outpost_core::signing::SignatureRule::Transitional;
    let pos = start(pos_config).await;
    for i in 0..20 {
        pos.store()
            .put(
                &doc(&format!("stock/p{i:02}")),
                "/burger",
                serde_json::json!(i),
                Durability::Fast,
            )
            .expect("write");
    }
    let mut config = test_config(
        &dir.path().join("kiosk"),
        &kiosk_cert,
        vec![pos.local_addr()],
    );
    config.tuning.protocols = protocols;
    config.policy = policy;
    config.signatures = outpost_core::signing::SignatureRule::Transitional;
    let kiosk = start(config).await;
    kiosk
        .store()
        .put(
            &doc("orders/2026-12-01"),
            "/k1",
            serde_json::json!({"sku": "burger"}),
            Durability::Fast,
        )
        .expect("write");
    for i in [0, 19] {
        wait_value(
            "stock reaches the kiosk of protocol 1",
            kiosk.store(),
            &doc(&format!("stock/p{i:02}")),
            "/burger",
            &serde_json::json!(i),
        )
        .await;
    }
    wait_value(
        "the order of the kiosk of protocol 1 reaches the pos",
        pos.store(),
        &doc("orders/2026-12-01"),
        "/k1",
        &serde_json::json!({"sku": "burger"}),
    )
    .await;
    pos.shutdown().await.expect("pos stops");
    kiosk.shutdown().await.expect("kiosk stops");
}
