//! automerge-repo's WebSocket messages (CBOR maps with text keys), as this server reads and
//! writes them. The protocol is described in the README of
//! `@automerge/automerge-repo-network-websocket`.

use ciborium::Value;

/// The only protocol version automerge-repo speaks so far.
pub const PROTOCOL_VERSION: &str = "1";

/// A message from a client.
#[derive(Debug, PartialEq)]
pub(crate) enum Incoming {
    /// The handshake's first message.
    Join {
        sender: String,
        versions: Vec<String>,
    },
    /// The client is going away.
    Leave,
    /// `request` (the client wants the document, or `doc-unavailable`) or `sync`.
    Sync {
        request: bool,
        doc: String,
        data: Vec<u8>,
    },
    /// The client does not have a document we asked about.
    Unavailable,
    /// An ephemeral message for the other clients following the document.
    Ephemeral {
        doc: String,
        session: String,
        count: u64,
        data: Vec<u8>,
    },
    /// A message type this server takes no action on (`remote-subscription-change`,
    /// `remote-heads-changed`: this server gossips no storage ids).
    Ignored,
}

fn get<'a>(map: &'a [(Value, Value)], key: &str) -> Option<&'a Value> {
    map.iter()
        .find(|(k, _)| k.as_text() == Some(key))
        .map(|(_, v)| v)
}

fn text(map: &[(Value, Value)], key: &str) -> Result<String, String> {
    get(map, key)
        .and_then(Value::as_text)
        .map(str::to_string)
        .ok_or_else(|| format!("`{key}` is missing or not a string"))
}

fn bytes(map: &[(Value, Value)], key: &str) -> Result<Vec<u8>, String> {
    match get(map, key) {
        Some(Value::Bytes(b)) => Ok(b.clone()),
        // cbor-x may tag a Uint8Array (tag 64) when not told otherwise.
        Some(Value::Tag(64, inner)) => match inner.as_ref() {
            Value::Bytes(b) => Ok(b.clone()),
            _ => Err(format!("`{key}` is not bytes")),
        },
        _ => Err(format!("`{key}` is missing or not bytes")),
    }
}

/// Decodes one client message. `Err` says what is wrong, for the client's error message.
pub(crate) fn decode(frame: &[u8]) -> Result<Incoming, String> {
    let value: Value =
        ciborium::from_reader(frame).map_err(|e| format!("not a CBOR message: {e}"))?;
    let Value::Map(map) = value else {
        return Err("a message must be a CBOR map".to_string());
    };
    let kind = text(&map, "type")?;
    Ok(match kind.as_str() {
        "join" => Incoming::Join {
            sender: text(&map, "senderId")?,
            versions: match get(&map, "supportedProtocolVersions") {
                Some(Value::Array(a)) => a
                    .iter()
                    .filter_map(Value::as_text)
                    .map(str::to_string)
                    .collect(),
                _ => return Err("`supportedProtocolVersions` is missing".to_string()),
            },
        },
        "leave" => Incoming::Leave,
        "request" | "sync" => Incoming::Sync {
            request: kind == "request",
            doc: text(&map, "documentId")?,
            data: bytes(&map, "data")?,
        },
        "doc-unavailable" => Incoming::Unavailable,
        "ephemeral" => Incoming::Ephemeral {
            doc: text(&map, "documentId")?,
            session: text(&map, "sessionId")?,
            count: get(&map, "count")
                .and_then(Value::as_integer)
                .and_then(|i| u64::try_from(i).ok())
                .unwrap_or(0),
            data: bytes(&map, "data")?,
        },
        "remote-subscription-change" | "remote-heads-changed" => Incoming::Ignored,
        other => return Err(format!("unknown message type {other:?}")),
    })
}

fn map(entries: Vec<(&str, Value)>) -> Vec<u8> {
    let value = Value::Map(
        entries
            .into_iter()
            .map(|(k, v)| (Value::Text(k.to_string()), v))
            .collect(),
    );
    let mut out = Vec::new();
    ciborium::into_writer(&value, &mut out).expect("writing CBOR to a Vec cannot fail");
    out
}

fn t(s: &str) -> Value {
    Value::Text(s.to_string())
}

/// The handshake's answer.
pub(crate) fn peer(sender: &str, target: &str) -> Vec<u8> {
    map(vec![
        ("type", t("peer")),
        ("senderId", t(sender)),
        ("targetId", t(target)),
        ("selectedProtocolVersion", t(PROTOCOL_VERSION)),
        (
            "peerMetadata",
            Value::Map(vec![(t("isEphemeral"), Value::Bool(true))]),
        ),
    ])
}

/// An error; the protocol closes the connection after one, except for refused writes,
/// which this server reports and lives on (the client keeps what it may do).
pub(crate) fn error(sender: &str, target: Option<&str>, message: &str) -> Vec<u8> {
    let mut entries = vec![
        ("type", t("error")),
        ("senderId", t(sender)),
        ("message", t(message)),
    ];
    if let Some(target) = target {
        entries.push(("targetId", t(target)));
    }
    map(entries)
}

/// A sync message for `doc`.
pub(crate) fn sync(sender: &str, target: &str, doc: &str, data: Vec<u8>) -> Vec<u8> {
    map(vec![
        ("type", t("sync")),
        ("senderId", t(sender)),
        ("targetId", t(target)),
        ("documentId", t(doc)),
        ("data", Value::Bytes(data)),
    ])
}

/// The document is not available to this client (unknown, or not readable by its role).
pub(crate) fn unavailable(sender: &str, target: &str, doc: &str) -> Vec<u8> {
    map(vec![
        ("type", t("doc-unavailable")),
        ("senderId", t(sender)),
        ("targetId", t(target)),
        ("documentId", t(doc)),
    ])
}

/// An ephemeral message relayed from another client.
pub(crate) fn ephemeral(
    sender: &str,
    target: &str,
    doc: &str,
    session: &str,
    count: u64,
    data: Vec<u8>,
) -> Vec<u8> {
    map(vec![
        ("type", t("ephemeral")),
        ("senderId", t(sender)),
        ("targetId", t(target)),
        ("count", Value::Integer(count.into())),
        ("sessionId", t(session)),
        ("documentId", t(doc)),
        ("data", Value::Bytes(data)),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sync_message_round_trips_and_garbage_is_an_error() {
        let frame = sync("server", "client", "abc", vec![1, 2, 3]);
        match decode(&frame).expect("decodes") {
            Incoming::Sync { request, doc, data } => {
                assert!(!request);
                assert_eq!(doc, "abc");
                assert_eq!(data, vec![1, 2, 3]);
            }
            other => panic!("{other:?}"),
        }
        for bad in [&b""[..], &[0xff, 0x00], &[0xa1, 0x61, 0x78, 0x01]] {
            assert!(decode(bad).is_err(), "{bad:?}");
        }
    }
}
