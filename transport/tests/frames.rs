//! Framing over real QUIC: messages flow on control and document streams, and a peer
//! sending an oversized, truncated or malformed frame loses its connection while the
//! other connections of the same endpoint keep working.

mod support;

use outpost_core::CloseCode;
use outpost_core::{DocumentId, PeerId};
use outpost_transport::peer_info_of;
use outpost_transport::{self as frame, CloseCodeExt};
use outpost_transport::{FleetCa, Session, SessionConfig, SessionEvent};
use support::*;
use tokio::sync::mpsc;

const MAX: usize = 64 * 1024;

/// A server that runs a [`Session`] for every accepted connection and reports all
/// session events on one channel.
fn serve(endpoint: quinn::Endpoint) -> mpsc::Receiver<SessionEvent> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        let mut sessions = Vec::new();
        while let Some(incoming) = endpoint.accept().await {
            let Ok(conn) = incoming.await else { continue };
            let Ok(peer) = peer_info_of(&conn) else {
                continue;
            };
            let config = SessionConfig {
                max_frame_size: MAX,
                ..SessionConfig::default()
            };
            sessions.push(Session::start(conn, peer, config, tx.clone()));
        }
    });
    rx
}

async fn next_message(
    rx: &mut mpsc::Receiver<SessionEvent>,
) -> (PeerId, Option<DocumentId>, Vec<u8>) {
    loop {
        match within("next session event", rx.recv())
            .await
            .expect("server running")
        {
            SessionEvent::Message {
                peer, doc, bytes, ..
            } => return (peer, doc, bytes),
            SessionEvent::Closed { .. } => continue,
        }
    }
}

async fn next_closed(rx: &mut mpsc::Receiver<SessionEvent>) -> (PeerId, quinn::ConnectionError) {
    loop {
        match within("session close", rx.recv())
            .await
            .expect("server running")
        {
            SessionEvent::Closed { peer, error, .. } => return (peer, error),
            SessionEvent::Message { .. } => continue,
        }
    }
}

struct Fixture {
    events: mpsc::Receiver<SessionEvent>,
    good: Session,
    good_events: mpsc::Receiver<SessionEvent>,
    bad: quinn::Connection,
}

async fn fixture() -> Fixture {
    init_tracing();
    let ca = FleetCa::generate("acme").expect("ca");
    let pos = issue(&ca, "lyon", "pos-1", "pos");
    let kiosk = issue(&ca, "lyon", "kiosk-1", "kiosk");
    let evil = issue(&ca, "lyon", "kiosk-9", "kiosk");
    let server = endpoint(&pos, &filter_for(&pos));
    let addr = server.local_addr().expect("addr");
    let events = serve(server);

    let good_ep = endpoint(&kiosk, &filter_for(&kiosk));
    let conn = within(
        "good connect",
        good_ep.connect(addr, "outpost").expect("connect"),
    )
    .await
    .expect("handshake");
    let (tx, good_events) = mpsc::channel(64);
    let config = SessionConfig {
        max_frame_size: MAX,
        ..SessionConfig::default()
    };
    let good = Session::start(conn, pos.info().clone(), config, tx);

    let bad_ep = endpoint(&evil, &filter_for(&evil));
    let bad = within(
        "bad connect",
        bad_ep.connect(addr, "outpost").expect("connect"),
    )
    .await
    .expect("handshake");
    Fixture {
        events,
        good,
        good_events,
        bad,
    }
}

async fn assert_good_link_works(f: &mut Fixture, round: u8) {
    let menu: DocumentId = "menu".parse().expect("doc");
    f.good.send(None, vec![round, 1]).expect("send control");
    f.good.send(Some(&menu), vec![round, 2]).expect("send doc");
    let mut got = [
        next_message(&mut f.events).await,
        next_message(&mut f.events).await,
    ];
    got.sort_by(|a, b| a.2.cmp(&b.2));
    assert_eq!(
        got[0],
        ("kiosk-1".parse().expect("peer"), None, vec![round, 1])
    );
    assert_eq!(
        got[1],
        ("kiosk-1".parse().expect("peer"), Some(menu), vec![round, 2])
    );
}

fn close_code(error: &quinn::ConnectionError) -> Option<CloseCode> {
    CloseCode::of_connection_error(error)
}

#[tokio::test]
async fn messages_flow_on_control_and_document_streams() {
    let mut f = fixture().await;
    assert_good_link_works(&mut f, 1).await;
    // Many documents, each on its own stream, in order per document.
    for i in 0..20u8 {
        let doc: DocumentId = format!("orders/day-{}", i % 5).parse().expect("doc");
        f.good.send(Some(&doc), vec![i]).expect("send");
    }
    let mut per_doc: std::collections::BTreeMap<String, Vec<u8>> = Default::default();
    for _ in 0..20 {
        let (_, doc, bytes) = next_message(&mut f.events).await;
        per_doc
            .entry(doc.expect("doc stream").to_string())
            .or_default()
            .extend(bytes);
    }
    assert_eq!(per_doc.len(), 5);
    for (doc, bytes) in per_doc {
        let mut sorted = bytes.clone();
        sorted.sort();
        assert_eq!(bytes, sorted, "frames of {doc} arrive in order");
    }
    // Nothing closed the good client.
    assert!(f.good_events.try_recv().is_err());
}

#[tokio::test]
async fn oversized_frame_closes_only_that_connection() {
    let mut f = fixture().await;
    assert_good_link_works(&mut f, 1).await;

    let (mut send, _recv) = within("open bi", f.bad.open_bi()).await.expect("open bi");
    frame::write_frame(&mut send, b"", MAX)
        .await
        .expect("header");
    // Announce 4 GiB.
    send.write_all(&[0xff, 0xff, 0xff, 0xff, 0, 0])
        .await
        .expect("write");
    let error = within("bad connection closed", f.bad.closed()).await;
    assert_eq!(
        close_code(&error),
        Some(CloseCode::FrameTooLarge),
        "{error}"
    );
    let (peer, _) = next_closed(&mut f.events).await;
    assert_eq!(peer.as_str(), "kiosk-9");

    assert_good_link_works(&mut f, 2).await;
}

#[tokio::test]
async fn frame_over_the_configured_maximum_closes_the_connection() {
    let mut f = fixture().await;
    let (mut send, _recv) = within("open bi", f.bad.open_bi()).await.expect("open bi");
    frame::write_frame(&mut send, b"", MAX)
        .await
        .expect("header");
    frame::write_frame(&mut send, &vec![7u8; MAX + 1], usize::MAX)
        .await
        .expect("write big frame");
    let error = within("bad connection closed", f.bad.closed()).await;
    assert_eq!(
        close_code(&error),
        Some(CloseCode::FrameTooLarge),
        "{error}"
    );
    assert_good_link_works(&mut f, 1).await;
}

#[tokio::test]
async fn truncated_frame_closes_the_connection() {
    let mut f = fixture().await;
    let mut send = within("open uni", f.bad.open_uni())
        .await
        .expect("open uni");
    frame::write_frame(&mut send, b"menu", MAX)
        .await
        .expect("header");
    send.write_all(&[0, 0, 0, 10, 1, 2, 3])
        .await
        .expect("write partial frame");
    send.finish().expect("finish");
    let error = within("bad connection closed", f.bad.closed()).await;
    assert_eq!(
        close_code(&error),
        Some(CloseCode::FrameTruncated),
        "{error}"
    );
    assert_good_link_works(&mut f, 1).await;
}

#[tokio::test]
async fn garbage_stream_header_closes_the_connection() {
    let mut f = fixture().await;
    let mut send = within("open uni", f.bad.open_uni())
        .await
        .expect("open uni");
    frame::write_frame(&mut send, b"../../etc/passwd", MAX)
        .await
        .expect("header");
    frame::write_frame(&mut send, b"payload", MAX)
        .await
        .expect("frame");
    let error = within("bad connection closed", f.bad.closed()).await;
    assert_eq!(close_code(&error), Some(CloseCode::Protocol), "{error}");
    assert_good_link_works(&mut f, 1).await;
}

#[tokio::test]
async fn sending_more_than_the_maximum_is_refused_locally() {
    let mut f = fixture().await;
    let err = f.good.send(None, vec![0; MAX + 1]).expect_err("too large");
    assert!(
        matches!(err, outpost_transport::Error::FrameTooLarge { .. }),
        "{err}"
    );
    assert_good_link_works(&mut f, 1).await;
}

#[tokio::test]
async fn finish_flushes_queued_messages_before_closing() {
    let mut f = fixture().await;
    let doc: DocumentId = "stock".parse().expect("doc");
    for i in 0..50u8 {
        f.good.send(Some(&doc), vec![i; 1000]).expect("send");
    }
    f.good.finish(CloseCode::Shutdown, STEP).await;
    for i in 0..50u8 {
        let (_, _, bytes) = next_message(&mut f.events).await;
        assert_eq!(bytes, vec![i; 1000]);
    }
    let (_, error) = next_closed(&mut f.events).await;
    assert_eq!(close_code(&error), Some(CloseCode::Shutdown), "{error}");
}

#[tokio::test]
async fn a_peer_that_does_not_read_fills_the_send_queue() {
    init_tracing();
    let ca = FleetCa::generate("acme").expect("ca");
    let pos = issue(&ca, "lyon", "pos-1", "pos");
    let kiosk = issue(&ca, "lyon", "kiosk-1", "kiosk");
    let server = endpoint(&pos, &filter_for(&pos));
    let addr = server.local_addr().expect("addr");
    // The server's owner never reads its inbox, so its readers stop and QUIC flow
    // control stops the sender.
    let (stuck_tx, _stuck_rx) = mpsc::channel(1);
    let accept = tokio::spawn(async move {
        let conn = server
            .accept()
            .await
            .expect("incoming")
            .await
            .expect("handshake");
        let peer = peer_info_of(&conn).expect("identity");
        let session = Session::start(conn, peer, SessionConfig::default(), stuck_tx);
        (server, session)
    });
    let client = endpoint(&kiosk, &filter_for(&kiosk));
    let conn = within("connect", client.connect(addr, "outpost").expect("connect"))
        .await
        .expect("handshake");
    let _server = within("accept", accept).await.expect("accept task");
    let (tx, _rx) = mpsc::channel(8);
    let config = SessionConfig {
        max_frame_size: MAX,
        send_queue: 4,
        ..SessionConfig::default()
    };
    let mut session = Session::start(conn, pos.info().clone(), config, tx);
    let doc: DocumentId = "menu".parse().expect("doc");
    let error = within("queue fills", async {
        loop {
            if let Err(e) = session.send(Some(&doc), vec![0; 60_000]) {
                return e;
            }
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    })
    .await;
    assert!(
        matches!(
            error,
            outpost_transport::Error::SendQueueFull { queued: 4, .. }
        ),
        "{error}"
    );
    // The control stream has its own queue and still accepts messages.
    session
        .send(None, vec![1])
        .expect("control stream is independent");
}
