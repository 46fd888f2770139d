//! Certificates that expire and renew, over real QUIC and mutual TLS (issue 12): a device
//! whose certificate nears its end renews it through the peer that holds the fleet CA (same
//! key, same identity, saved to its certificate directory, presented in every later
//! handshake); a device cannot renew through another device; a connection whose peer's
//! certificate expires is closed, and the expired device cannot come back.

mod support;

use std::time::Duration;

use outpost_transport::{
    self as tls, not_after_ms, request_renewal, serve_renewal, DeviceCert, Error, FleetCa, Renewer,
    TransportTuning,
};
use support::*;

/// A peer that renews, as the cloud does with `--ca-key`: a bare endpoint whose accept loop
/// answers renewal requests.
fn renewing_peer(ca: &FleetCa, cloud: &DeviceCert, days: u32) -> quinn::Endpoint {
    let ep = endpoint(cloud, &filter_for(cloud));
    let accept = ep.clone();
    let renewer = Renewer::new(
        FleetCa::from_pem(ca.cert_pem(), &ca.key_pem()).expect("CA"),
        days,
    );
    tokio::spawn(async move {
        while let Some(incoming) = accept.accept().await {
            if let Ok(conn) = incoming.await {
                if tls::is_renewal(&conn) {
                    serve_renewal(conn, Some(&renewer)).await;
                }
            }
        }
    });
    ep
}

fn days_left(cert: &DeviceCert) -> f64 {
    let ms = not_after_ms(cert.cert_der()).expect("validity") as f64;
    (ms - outpost_core::Timestamp::now().as_millis() as f64) / 86_400_000.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_renews_its_certificate_through_the_cloud_before_it_expires() {
    init_tracing();
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = FleetCa::generate("test").expect("CA");
    let cloud_cert = issue(&ca, "acme", "cloud-1", "cloud");
    let cloud = renewing_peer(&ca, &cloud_cert, 30);
    // Two hours left: due, with the default of renewing 10 days ahead.
    let short = ca
        .issue_valid_for(&info("s1", "pos-1", "pos"), time::Duration::hours(2))
        .expect("cert");
    let cert_dir = dir.path().join("pos-cert");
    short.save(&cert_dir).expect("save");
    let mut config = test_config(
        &dir.path().join("pos"),
        &short,
        vec![cloud.local_addr().expect("addr")],
    );
    config.cert_dir = Some(cert_dir.clone());
    let pos = start(config).await;
    println!("before: {:.3} days left", days_left(&short));
    within("the certificate is renewed", async {
        while days_left(&pos.certificate()) < 29.0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let renewed = pos.certificate();
    println!("after: {:.1} days left", days_left(&renewed));
    assert_eq!(renewed.info(), short.info(), "same identity");
    assert_eq!(
        renewed.key_pem(),
        short.key_pem(),
        "the device keeps its key"
    );
    assert_ne!(renewed.cert_der(), short.cert_der());
    // Saved where the device keeps its certificate: the next start uses it.
    let saved = within("the renewed certificate is saved", async {
        loop {
            if let Ok(c) = DeviceCert::load(&cert_dir) {
                if c.cert_der() == renewed.cert_der() {
                    return c;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(days_left(&saved) > 29.0);

    // Every later handshake presents the renewed certificate.
    let kiosk = issue(&ca, "s1", "kiosk-1", "kiosk");
    let client = endpoint(&kiosk, &filter_for(&kiosk));
    let conn = within("dial the POS", async {
        client
            .connect(pos.local_addr(), tls::SERVER_NAME)
            .expect("connect")
            .await
            .expect("handshake")
    })
    .await;
    let presented = tls::peer_certificate(&conn).expect("server certificate");
    assert_eq!(presented.as_ref(), renewed.cert_der().as_ref());
    conn.close(0u32.into(), b"done");

    // A device does not renew another device's certificate.
    match request_renewal(
        &client,
        &kiosk,
        &filter_for(&kiosk),
        &TransportTuning::default(),
        pos.local_addr(),
    )
    .await
    {
        Err(Error::Renewal { reason, .. }) => {
            println!("a device asked to renew: {reason}");
            assert!(reason.contains("does not renew"), "{reason}");
        }
        other => panic!("a device renewed a certificate: {other:?}"),
    }
    pos.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_closes_when_the_peers_certificate_expires() {
    init_tracing();
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = FleetCa::generate("test").expect("CA");
    let pos_cert = issue(&ca, "s1", "pos-1", "pos");
    let mut config = test_config(&dir.path().join("pos"), &pos_cert, vec![]);
    // No clock skew to tolerate in one process.
    config.expiry_grace = Duration::ZERO;
    let pos = start(config).await;
    // A kiosk whose certificate ends in a few seconds, and nobody renews it.
    let kiosk_cert = ca
        .issue_valid_for(&info("s1", "kiosk-1", "kiosk"), time::Duration::seconds(4))
        .expect("cert");
    let mut config = test_config(
        &dir.path().join("kiosk"),
        &kiosk_cert,
        vec![pos.local_addr()],
    );
    config.renew_before = None;
    let kiosk = start(config).await;
    wait_connected(&pos, "kiosk-1").await;
    let connected_at = std::time::Instant::now();
    within(
        "the POS closes the expired kiosk's link",
        pos.wait_disconnected(&peer("kiosk-1")),
    )
    .await;
    println!(
        "link closed {} ms after it came up ({:.1} s of validity were left)",
        connected_at.elapsed().as_millis(),
        days_left(&kiosk_cert) * 86_400.0
    );
    // Its redials fail the handshake now: the certificate has expired.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !pos.connected_peers()
            .iter()
            .any(|p| p.peer.as_str() == "kiosk-1"),
        "an expired certificate was let in again"
    );
    kiosk.shutdown().await.expect("shutdown");
    pos.shutdown().await.expect("shutdown");
}
