//! Sealing and opening messages: header, postcard body, HMAC-SHA256.
//!
//! Both directions are signed with the node's key: batches so the hub knows
//! the sender, acknowledgements so that nobody but the hub can make an edge
//! delete data from its outbox.

use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::v1::{Ack, Batch, Message, Status};
use crate::{Kind, ProtocolError, Topic};

const MAGIC: [u8; 2] = *b"AP";
const VERSION: u8 = 1;
const HEADER: usize = 4;
/// Length of the trailing HMAC-SHA256.
pub const MAC_LEN: usize = 32;
/// Largest message either side accepts by default (batches are split well
/// below it).
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// A node's shared secret with the hub (at least 16 bytes). The HMAC key
/// is the secret's SHA-256, so secrets of any length give a full-size key.
#[derive(Clone)]
pub struct NodeKey([u8; 64]);

impl std::fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodeKey(****)")
    }
}

impl NodeKey {
    /// From the secret's bytes; `None` when shorter than 16 bytes.
    pub fn new(secret: &[u8]) -> Option<NodeKey> {
        (secret.len() >= 16).then(|| {
            // HMAC zero-pads a key to the block size (64 bytes); doing it
            // here makes the key a fixed-size array and `new` infallible.
            let mut k = [0u8; 64];
            k[..32].copy_from_slice(&Sha256::digest(secret));
            NodeKey(k)
        })
    }

    fn mac(&self, topic: &Topic, signed: &[u8]) -> Hmac<Sha256> {
        let mut m = <Hmac<Sha256> as KeyInit>::new(
            hmac::digest::generic_array::GenericArray::from_slice(&self.0),
        );
        m.update(topic.to_string().as_bytes());
        m.update(&[0]);
        m.update(signed);
        m
    }
}

/// Encode and sign `msg` for `topic`. The topic's kind must match.
pub fn seal(topic: &Topic, msg: &Message, key: &NodeKey) -> Result<Vec<u8>, ProtocolError> {
    if topic.kind != msg.kind() {
        return Err(ProtocolError::KindMismatch {
            got: msg.kind().code(),
            topic: topic.kind.code(),
        });
    }
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(msg.kind().code());
    let body = match msg {
        Message::Batch(b) => postcard::to_extend(b, out),
        Message::Ack(a) => postcard::to_extend(a, out),
        Message::Status(s) => postcard::to_extend(s, out),
    };
    let mut out = body.map_err(|e| ProtocolError::Decode(e.to_string()))?;
    let tag = key.mac(topic, &out).finalize().into_bytes();
    out.extend_from_slice(&tag);
    Ok(out)
}

/// The kind named in a message's header, without verifying anything (for
/// counting what was refused).
pub fn peek_kind(bytes: &[u8]) -> Option<Kind> {
    (bytes.len() >= HEADER && bytes[..2] == MAGIC)
        .then(|| Kind::from_code(bytes[3]))
        .flatten()
}

/// Check size, header and signature, then decode. `max` bounds the size
/// before any work is done.
pub fn open(
    topic: &Topic,
    bytes: &[u8],
    key: &NodeKey,
    max: usize,
) -> Result<Message, ProtocolError> {
    if bytes.len() > max {
        return Err(ProtocolError::TooLarge(bytes.len(), max));
    }
    if bytes.len() < HEADER + MAC_LEN {
        return Err(ProtocolError::TooShort(bytes.len()));
    }
    if bytes[..2] != MAGIC {
        return Err(ProtocolError::BadMagic);
    }
    if bytes[2] != VERSION {
        return Err(ProtocolError::UnsupportedVersion(bytes[2]));
    }
    if bytes[3] != topic.kind.code() {
        return Err(ProtocolError::KindMismatch {
            got: bytes[3],
            topic: topic.kind.code(),
        });
    }
    let (signed, tag) = bytes.split_at(bytes.len() - MAC_LEN);
    key.mac(topic, signed)
        .verify_slice(tag)
        .map_err(|_| ProtocolError::BadSignature)?;
    let body = &signed[HEADER..];
    let decode_err = |e: postcard::Error| ProtocolError::Decode(e.to_string());
    // Trailing bytes inside a signed body are a sender bug: refuse them.
    fn exact<'a, T: serde::Deserialize<'a>>(b: &'a [u8]) -> Result<T, postcard::Error> {
        let (v, rest) = postcard::take_from_bytes(b)?;
        if rest.is_empty() {
            Ok(v)
        } else {
            Err(postcard::Error::DeserializeBadEncoding)
        }
    }
    Ok(match topic.kind {
        Kind::Batch => Message::Batch(exact::<Batch>(body).map_err(decode_err)?),
        Kind::Ack => Message::Ack(exact::<Ack>(body).map_err(decode_err)?),
        Kind::Status => Message::Status(exact::<Status>(body).map_err(decode_err)?),
        // Signed with the hub's Ed25519 key, not the node's secret.
        Kind::Recommendation => {
            return Err(ProtocolError::Decode(
                "a recommendation is opened with protocol::recommend::open".to_owned(),
            ));
        }
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::v1::{Body, Window, WindowSet};

    fn batch(n: usize) -> Message {
        Message::Batch(Batch {
            seq: 42,
            created_ms: 1_700_000_000_000,
            body: Body::Aggregates(vec![WindowSet {
                width_ms: 10_000,
                start_ms: 1_700_000_000_000,
                windows: (0..n)
                    .map(|i| Window {
                        tag: format!("heater.tag_{i}"),
                        count: 10,
                        good: 10,
                        min: 1.0,
                        max: 2.0,
                        mean: 1.5,
                        twa: 1.4,
                        last: 2.0,
                    })
                    .collect(),
            }]),
        })
    }

    fn key(s: &str) -> NodeKey {
        NodeKey::new(s.as_bytes()).unwrap()
    }

    #[test]
    fn a_sealed_message_opens_with_the_same_key_and_topic_only() {
        let t = Topic::new("site", "a", Kind::Batch).unwrap();
        let m = batch(3);
        let bytes = seal(&t, &m, &key("key-of-node-a-123")).unwrap();
        assert_eq!(peek_kind(&bytes), Some(Kind::Batch));
        assert_eq!(
            open(&t, &bytes, &key("key-of-node-a-123"), MAX_MESSAGE_BYTES).unwrap(),
            m
        );
        // Another node's key: node B cannot publish as A, nor A as B.
        assert_eq!(
            open(&t, &bytes, &key("key-of-node-b-456"), MAX_MESSAGE_BYTES),
            Err(ProtocolError::BadSignature)
        );
        let as_b = Topic::new("site", "b", Kind::Batch).unwrap();
        assert_eq!(
            open(&as_b, &bytes, &key("key-of-node-a-123"), MAX_MESSAGE_BYTES),
            Err(ProtocolError::BadSignature)
        );
        assert!(NodeKey::new(b"short").is_none());
    }

    #[test]
    fn malformed_messages_are_refused_without_panicking() {
        let t = Topic::new("site", "a", Kind::Batch).unwrap();
        let k = key("key-of-node-a-123");
        let good = seal(&t, &batch(2), &k).unwrap();
        assert!(matches!(
            open(&t, &good, &k, 10),
            Err(ProtocolError::TooLarge(_, 10))
        ));
        assert_eq!(open(&t, b"AP", &k, 1000), Err(ProtocolError::TooShort(2)));
        let mut bad = good.clone();
        bad[0] = b'X';
        assert_eq!(open(&t, &bad, &k, 1 << 20), Err(ProtocolError::BadMagic));
        let mut bad = good.clone();
        bad[2] = 9;
        assert_eq!(
            open(&t, &bad, &k, 1 << 20),
            Err(ProtocolError::UnsupportedVersion(9))
        );
        let st = Topic::new("site", "a", Kind::Status).unwrap();
        assert!(matches!(
            open(&st, &good, &k, 1 << 20),
            Err(ProtocolError::KindMismatch { .. })
        ));
        // Every single-bit flip is caught by the signature.
        for i in 4..good.len() {
            let mut flipped = good.clone();
            flipped[i] ^= 0x10;
            assert!(open(&t, &flipped, &k, 1 << 20).is_err(), "byte {i}");
        }
        // A correctly signed but garbled body is a decode error, not a panic.
        let mut garbage = vec![b'A', b'P', 1, Kind::Batch.code(), 0xff, 0xff, 0xff];
        let tag = k.mac(&t, &garbage).finalize().into_bytes();
        garbage.extend_from_slice(&tag);
        assert!(matches!(
            open(&t, &garbage, &k, 1 << 20),
            Err(ProtocolError::Decode(_))
        ));
        // Arbitrary bytes never panic.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for len in 0..300 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let _ = open(&t, &bytes, &k, 1 << 20);
        }
    }

    #[test]
    fn the_encoding_is_compact() {
        let t = Topic::new("site", "a", Kind::Batch).unwrap();
        let bytes = seal(&t, &batch(1000), &key("key-of-node-a-123")).unwrap();
        // ~14 bytes of tag name + 2 varints + 5 doubles per window.
        let per_window = bytes.len() as f64 / 1000.0;
        assert!(per_window < 60.0, "{per_window} bytes per window");
        let json = batch(1000).to_json();
        assert!(json.len() > 3 * bytes.len(), "JSON is the debug view");
    }
}
