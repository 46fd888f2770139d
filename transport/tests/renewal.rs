//! Certificates that expire and renew, over real QUIC and mutual TLS (issue 12): a device
//! whose certificate nears its end renews it through the peer that holds the fleet CA (same
//! key, same identity, saved to its certificate directory, presented in every later
//! handshake); a device cannot renew through another device; a connection whose peer's
//! certificate expires is closed, and the expired device cannot come back.

mod support;

use std::time::Duration;

use outpost_transport::{
    self as tls, not_after_ms, request_renewal, serve_renewal, DeviceCert, Error, FleetCa,
    PeerFilter, Renewer, TransportTuning,
};
use support::*;

/// A peer that renews, as the cloud does with `--ca-key`: a bare endpoint whose accept loop
/// answers renewal requests.
fn renewing_peer(ca: &FleetCa, cloud: &DeviceCert, days: u32) -> quinn::Endpoint {
    let renewer = Renewer::new(
        FleetCa::from_pem(ca.cert_pem(), &ca.key_pem()).expect("CA"),
        days,
    );
    serving_peer(cloud, &filter_for(cloud), renewer)
}

/// A bare endpoint with certificate `cert` and handshake filter `filter` that answers renewal
/// requests with `renewer` (which may hold another CA: a tampered peer).
fn serving_peer(cert: &DeviceCert, filter: &PeerFilter, renewer: Renewer) -> quinn::Endpoint {
    let ep = endpoint(cert, filter);
    let accept = ep.clone();
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
    // The audit trail says when (recorded before the new certificate is put in use).
    let renewals = pos
        .store()
        .audit()
        .query(&outpost_core::AuditQuery {
            kinds: vec![outpost_core::AuditKind::CertificateRenewed],
            ..Default::default()
        })
        .expect("the audit trail reads");
    println!("audit: {renewals:?}");
    assert_eq!(renewals.len(), 1, "{renewals:?}");
    assert!(
        renewals[0].detail.starts_with("valid until "),
        "{renewals:?}"
    );

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

    // A device does not renew another device's certificate, and is not asked.
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
            assert!(reason.contains("not a cloud peer"), "{reason}");
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

async fn renew_with(
    client: &quinn::Endpoint,
    cert: &DeviceCert,
    at: &quinn::Endpoint,
) -> Result<DeviceCert, Error> {
    request_renewal(
        client,
        cert,
        &filter_for(cert),
        &TransportTuning::default(),
        at.local_addr().expect("addr"),
    )
    .await
}

/// Issue 27, hole 7 (failed before: a revocation named one certificate's DER, and the cloud
/// renewed any valid certificate on demand): a device renews, then the operator revokes the
/// certificate it was given first; the renewed certificate is refused too, in the handshake
/// and for a further renewal. A certificate outside the renewal window is not renewed, and a
/// key is renewed at most once per window (asking again with the same certificate gets the
/// same answer, not a second certificate).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_certificate_takes_its_renewals_with_it_and_renewal_keeps_to_its_window() {
    init_tracing();
    let ca = FleetCa::generate("test").expect("CA");
    let cloud_cert = issue(&ca, "acme", "cloud-1", "cloud");
    let cloud_filter = filter_for(&cloud_cert);
    let renewer = Renewer::new(
        FleetCa::from_pem(ca.cert_pem(), &ca.key_pem()).expect("CA"),
        30,
    )
    .with_filter(cloud_filter.clone());
    println!(
        "renewal window: {:.1} days",
        renewer.window().as_seconds_f64() / 86_400.0
    );
    let cloud = serving_peer(&cloud_cert, &cloud_filter, renewer);

    // Outside the window: a fresh certificate (5 years) is not renewed.
    let fresh = issue(&ca, "s1", "pos-2", "pos");
    let client = endpoint(&fresh, &filter_for(&fresh));
    match renew_with(&client, &fresh, &cloud).await {
        Err(Error::Renewal { reason, .. }) => {
            println!("outside the window: {reason}");
            assert!(reason.contains("renewal window"), "{reason}");
        }
        other => panic!("a certificate outside the renewal window was renewed: {other:?}"),
    }

    // Inside the window: renewed once; the same request again gets the same certificate.
    let stolen = ca
        .issue_valid_for(&info("s1", "kiosk-1", "kiosk"), time::Duration::days(2))
        .expect("cert");
    let client = endpoint(&stolen, &filter_for(&stolen));
    let renewed = within("renew", renew_with(&client, &stolen, &cloud))
        .await
        .expect("renewed inside the window");
    println!("renewed: {:.1} days left", days_left(&renewed));
    let again = within("renew again", renew_with(&client, &stolen, &cloud))
        .await
        .expect("the same answer again");
    assert_eq!(
        again.cert_der(),
        renewed.cert_der(),
        "a second certificate was minted for one key in one window"
    );

    // The operator revokes the certificate it issued (`outpost cert revoke --cert`): the
    // renewed certificate, same key, is refused in the handshake.
    let record = ca
        .revoke(
            &stolen.info().site,
            &stolen.info().peer,
            Some(stolen.cert_der().as_ref()),
            "stolen",
        )
        .expect("revocation");
    let revocation = record.revocation().expect("decodes");
    assert!(
        revocation.public_key.is_some(),
        "the revocation names the key"
    );
    cloud_filter.add_revocation(revocation);
    let with_renewed = endpoint(&renewed, &filter_for(&renewed));
    match renew_with(&with_renewed, &renewed, &cloud).await {
        Err(e) => println!("the renewed certificate after the revocation: {e}"),
        Ok(c) => panic!(
            "a renewed certificate of a revoked key renewed again: {:.1} days",
            days_left(&c)
        ),
    }
    let refused = within("dial with the renewed certificate", async {
        match with_renewed
            .connect(cloud.local_addr().expect("addr"), tls::SERVER_NAME)
            .expect("connect")
            .await
        {
            Ok(conn) => {
                // TLS 1.3: the client may learn of the refusal only when it reads.
                conn.accept_uni().await.is_err()
            }
            Err(_) => true,
        }
    })
    .await;
    assert!(
        refused,
        "the renewed certificate of a revoked key was let in"
    );
    // Nor is the revoked key renewed, whichever of its certificates asks.
    assert!(renew_with(&client, &stolen, &cloud).await.is_err());
    // Another device is not affected.
    let other = ca
        .issue_valid_for(&info("s1", "kiosk-2", "kiosk"), time::Duration::days(2))
        .expect("cert");
    let other_client = endpoint(&other, &filter_for(&other));
    within(
        "another device renews",
        renew_with(&other_client, &other, &cloud),
    )
    .await
    .expect("another device still renews");
}

/// Issue 27, hole 8 (failed before: a device asked every static peer and saved the first
/// answer after checking only the key and the issuer's name): a tampered POS answers the
/// kiosk's renewal with a certificate of its own CA that copies the fleet CA's name; the
/// kiosk keeps its certificate (in memory and on disk) and still handshakes. And a peer with
/// the cloud's role whose answer does not chain to the fleet CA is not believed either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_peer_cannot_lock_a_device_out_with_a_forged_renewal() {
    init_tracing();
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = FleetCa::generate("test").expect("CA");
    // Same fleet name: the same subject as the fleet CA, another key.
    let forger = FleetCa::generate("test").expect("rogue CA");
    let pos_cert = issue(&ca, "s1", "pos-1", "pos");
    let tampered_pos = serving_peer(
        &pos_cert,
        &filter_for(&pos_cert),
        Renewer::new(
            FleetCa::from_pem(forger.cert_pem(), &forger.key_pem()).expect("CA"),
            30,
        ),
    );
    let short = ca
        .issue_valid_for(&info("s1", "kiosk-1", "kiosk"), time::Duration::hours(2))
        .expect("cert");
    let cert_dir = dir.path().join("kiosk-cert");
    short.save(&cert_dir).expect("save");
    let mut config = test_config(
        &dir.path().join("kiosk"),
        &short,
        vec![tampered_pos.local_addr().expect("addr")],
    );
    config.cert_dir = Some(cert_dir.clone());
    let kiosk = start(config).await;
    // The renewal task runs at once (2 hours left, 10 days ahead); give it time to ask and
    // (before the fix) to save the forged answer.
    let waited = std::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    println!(
        "waited {} ms for the kiosk's renewal attempt",
        waited.elapsed().as_millis()
    );
    assert_eq!(
        kiosk.certificate().cert_der(),
        short.cert_der(),
        "the kiosk took a forged certificate"
    );
    let saved = DeviceCert::load(&cert_dir).expect("the certificate directory still loads");
    assert_eq!(
        saved.cert_der(),
        short.cert_der(),
        "the kiosk saved a forged certificate"
    );
    // It still handshakes: an honest POS dials it.
    let honest = issue(&ca, "s1", "pos-2", "pos");
    let client = endpoint(&honest, &filter_for(&honest));
    let conn = within("dial the kiosk", async {
        client
            .connect(kiosk.local_addr(), tls::SERVER_NAME)
            .expect("connect")
            .await
            .expect("the kiosk still handshakes")
    })
    .await;
    assert_eq!(
        tls::peer_certificate(&conn).expect("cert").as_ref(),
        short.cert_der().as_ref()
    );
    conn.close(0u32.into(), b"done");
    kiosk.shutdown().await.expect("shutdown");

    // A peer with a genuine cloud certificate that answers with a forged one: refused by the
    // chain check.
    let cloud_cert = issue(&ca, "acme", "cloud-1", "cloud");
    let tampered_cloud = serving_peer(
        &cloud_cert,
        &filter_for(&cloud_cert),
        Renewer::new(
            FleetCa::from_pem(forger.cert_pem(), &forger.key_pem()).expect("CA"),
            30,
        ),
    );
    let client = endpoint(&short, &filter_for(&short));
    match renew_with(&client, &short, &tampered_cloud).await {
        Err(Error::Renewal { reason, .. }) => {
            println!("a forged renewal from a cloud-role peer: {reason}");
            assert!(reason.contains("fleet's CA"), "{reason}");
        }
        other => panic!("a forged renewal was taken: {other:?}"),
    }
}
