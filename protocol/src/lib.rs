//! The contract between edge nodes and the hub: MQTT topics and payloads.
//!
//! Everything that crosses the MQTT boundary is defined here and nowhere
//! else; `docs/protocol.md` is its prose description. A payload is a
//! contract: a change to a type in [`v1`] that an older peer cannot decode
//! needs a new module (`v2`) and a new topic prefix (`apos/v2/…`), served
//! side by side until every node has moved.
//!
//! Wire format of every message (see [`envelope`]):
//!
//! ```text
//! "AP" | version u8 | kind u8 | postcard body | HMAC-SHA256 (32 bytes)
//! ```
//!
//! The MAC covers the topic and every byte before it, keyed by the sending
//! node's secret, so the hub knows which node sent a batch whatever the
//! broker does (rumqttd has no topic ACL; see `../shared/notes/mqtt.md`).
//! Setpoint recommendations (hub → edge) are the exception: they carry an
//! Ed25519 signature by the hub's own key instead ([`recommend`]).

pub mod check;
pub mod envelope;
#[cfg(feature = "mqtt")]
pub mod link;
pub mod recommend;
pub mod topic;
pub mod v1;

pub use envelope::{MAC_LEN, MAX_MESSAGE_BYTES, NodeKey};
pub use topic::{Kind, Topic, node_login};

/// Why a topic or payload was refused. Every variant is counted by the
/// receiver; none of them may panic.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtocolError {
    #[error("topic {0:?} is not apos/v1/<site>/<node>/<kind>")]
    BadTopic(String),
    #[error("identifier {0:?} must be 1–64 of A–Z a–z 0–9 _ -")]
    BadId(String),
    #[error("message of {0} bytes is larger than the limit of {1} bytes")]
    TooLarge(usize, usize),
    #[error("message too short ({0} bytes)")]
    TooShort(usize),
    #[error("not an APOS message (bad magic)")]
    BadMagic,
    #[error("unsupported protocol version {0}")]
    UnsupportedVersion(u8),
    #[error("payload kind {got} does not match the topic's kind {topic}")]
    KindMismatch { got: u8, topic: u8 },
    #[error("signature does not verify for this node (wrong key, or sent as another node)")]
    BadSignature,
    #[error("undecodable body: {0}")]
    Decode(String),
    #[error("hub key: {0}")]
    Key(String),
}
