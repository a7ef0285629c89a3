//! Hub → edge setpoint recommendations, signed with the hub's Ed25519 key.
//!
//! Batches and acks are authenticated with the node's shared secret
//! (HMAC): either side could have made them, which is fine for data but not
//! for a message that ends in a PLC write. A recommendation is signed with
//! a key only the hub holds; the edge holds the public half
//! (`[setpoints] hub_public_key`), so a node's leaked secret, a rogue
//! broker client or another node cannot propose a setpoint.
//!
//! Wire format (topic `apos/v1/{site}/{node}/rec`, QoS 1):
//!
//! ```text
//! "AP" | version 1 | kind 4 | postcard Recommendation | Ed25519 signature (64 bytes)
//! ```
//!
//! The signature covers the topic, a zero byte and every byte before it.
//! [`open`] checks size, header and signature, decodes exactly, then the
//! value ranges ([`check`]); the receiver then checks what needs its own
//! state ([`Freshness`]): that it is the target node, that the message has
//! not expired, and that its sequence number is higher than any it accepted
//! before (no replay).
//!
//! A recommendation is never an instruction: the edge queues it for an
//! operator's approval and writes only within its own limits.

use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use serde::{Deserialize, Serialize};

use crate::check::{Invalid, MAX_SEQ, MAX_TEXT, MAX_TS_MS, MIN_TS_MS};
use crate::{Kind, ProtocolError, Topic};

const MAGIC: [u8; 2] = *b"AP";
const VERSION: u8 = 1;
const HEADER: usize = 4;
/// Length of the trailing Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;
/// Largest recommendation accepted (far above a real one: a few hundred bytes).
pub const MAX_RECOMMENDATION_BYTES: usize = 64 * 1024;
/// Most setpoints in one recommendation.
pub const MAX_SETPOINTS: usize = 32;
/// Longest rationale or confidence text, in bytes.
pub const MAX_RATIONALE: usize = 4096;
/// How far in the future an issue time may lie (clock skew between hub and
/// edge) before the message is refused.
pub const MAX_CLOCK_SKEW_MS: i64 = 5 * 60_000;
/// Prefix of the text form of a hub public key.
pub const PUBLIC_KEY_PREFIX: &str = "ed25519:";

/// One proposed setpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Setpoint {
    /// The edge's tag name (a writable setpoint in its configuration).
    pub tag: String,
    pub unit: String,
    /// The value the hub's model started from (the latest it knew).
    pub current: f64,
    pub proposed: f64,
}

/// A setpoint recommendation for one node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recommendation {
    /// Strictly increasing per target node (the hub stores its counter).
    pub seq: u64,
    /// The hub's id of the optimization run, e.g. `cdu-margin-42`.
    pub id: String,
    /// Target site and node: must equal the topic's and the receiver's own.
    pub site: String,
    pub node: String,
    /// The optimization problem's name.
    pub problem: String,
    pub issued_ms: i64,
    /// After this the edge refuses to approve it.
    pub expires_ms: i64,
    pub setpoints: Vec<Setpoint>,
    /// Expected benefit in `benefit_unit` (per hour) and per year.
    pub benefit_per_hour: f64,
    pub benefit_per_year: f64,
    /// e.g. `$/h`.
    pub benefit_unit: String,
    /// 0 … 1, and what it rests on.
    pub confidence: f64,
    pub confidence_text: String,
    /// Plain language: what limits the optimum and why the move pays.
    pub rationale: String,
}

/// The hub's signing key (PKCS#8 v2, as ring generates it).
pub struct SigningKey(Ed25519KeyPair);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({})", self.public().to_text())
    }
}

impl SigningKey {
    /// A fresh key, as PKCS#8 bytes to store (mode 0600) and the key.
    pub fn generate() -> Result<(Vec<u8>, SigningKey), ProtocolError> {
        let rng = ring::rand::SystemRandom::new();
        let doc = Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| ProtocolError::Key("the system random source failed".to_owned()))?;
        let key = SigningKey::from_pkcs8(doc.as_ref())?;
        Ok((doc.as_ref().to_vec(), key))
    }

    pub fn from_pkcs8(bytes: &[u8]) -> Result<SigningKey, ProtocolError> {
        Ed25519KeyPair::from_pkcs8_maybe_unchecked(bytes)
            .map(SigningKey)
            .map_err(|e| ProtocolError::Key(format!("not an Ed25519 PKCS#8 key: {e}")))
    }

    pub fn public(&self) -> VerifyKey {
        let mut k = [0u8; 32];
        k.copy_from_slice(self.0.public_key().as_ref());
        VerifyKey(k)
    }
}

/// The hub's public key, as the edge holds it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct VerifyKey([u8; 32]);

impl std::fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_text())
    }
}

impl VerifyKey {
    /// `ed25519:` and 64 hex digits: what `apos-hub optimize key` prints and
    /// `[setpoints] hub_public_key` takes.
    pub fn to_text(&self) -> String {
        let mut s = String::with_capacity(PUBLIC_KEY_PREFIX.len() + 64);
        s.push_str(PUBLIC_KEY_PREFIX);
        for b in self.0 {
            s.push_str(&format!("{b:02x}"));
        }
        s
    }

    pub fn from_text(text: &str) -> Result<VerifyKey, ProtocolError> {
        let bad = |why: &str| {
            ProtocolError::Key(format!(
                "{why}: a hub public key is `{PUBLIC_KEY_PREFIX}` and 64 hex digits (`apos-hub optimize key` prints it)"
            ))
        };
        let hex = text
            .trim()
            .strip_prefix(PUBLIC_KEY_PREFIX)
            .ok_or_else(|| bad("missing the `ed25519:` prefix"))?;
        if hex.len() != 64 {
            return Err(bad(&format!("{} hex digits", hex.len())));
        }
        let mut k = [0u8; 32];
        for (i, byte) in k.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
                .map_err(|_| bad("not hexadecimal"))?;
        }
        Ok(VerifyKey(k))
    }
}

fn signed_bytes(topic: &Topic, signed: &[u8]) -> Vec<u8> {
    let t = topic.to_string();
    let mut m = Vec::with_capacity(t.len() + 1 + signed.len());
    m.extend_from_slice(t.as_bytes());
    m.push(0);
    m.extend_from_slice(signed);
    m
}

/// Encode and sign a recommendation for its target node's topic. The value
/// ranges are checked first: the hub never sends what an edge refuses.
pub fn seal(rec: &Recommendation, key: &SigningKey) -> Result<(Topic, Vec<u8>), ProtocolError> {
    check(rec).map_err(|e| ProtocolError::Decode(e.to_string()))?;
    let topic = Topic::new(&rec.site, &rec.node, Kind::Recommendation)?;
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(Kind::Recommendation.code());
    let mut out =
        postcard::to_extend(rec, out).map_err(|e| ProtocolError::Decode(e.to_string()))?;
    let sig = key.0.sign(&signed_bytes(&topic, &out));
    out.extend_from_slice(sig.as_ref());
    Ok((topic, out))
}

/// Check size, header, signature and value ranges, then decode.
pub fn open(topic: &Topic, bytes: &[u8], key: &VerifyKey) -> Result<Recommendation, ProtocolError> {
    if topic.kind != Kind::Recommendation {
        return Err(ProtocolError::KindMismatch {
            got: Kind::Recommendation.code(),
            topic: topic.kind.code(),
        });
    }
    if bytes.len() > MAX_RECOMMENDATION_BYTES {
        return Err(ProtocolError::TooLarge(
            bytes.len(),
            MAX_RECOMMENDATION_BYTES,
        ));
    }
    if bytes.len() < HEADER + SIGNATURE_LEN {
        return Err(ProtocolError::TooShort(bytes.len()));
    }
    if bytes[..2] != MAGIC {
        return Err(ProtocolError::BadMagic);
    }
    if bytes[2] != VERSION {
        return Err(ProtocolError::UnsupportedVersion(bytes[2]));
    }
    if bytes[3] != Kind::Recommendation.code() {
        return Err(ProtocolError::KindMismatch {
            got: bytes[3],
            topic: Kind::Recommendation.code(),
        });
    }
    let (signed, sig) = bytes.split_at(bytes.len() - SIGNATURE_LEN);
    UnparsedPublicKey::new(&ED25519, &key.0)
        .verify(&signed_bytes(topic, signed), sig)
        .map_err(|_| ProtocolError::BadSignature)?;
    let (rec, rest): (Recommendation, _) = postcard::take_from_bytes(&signed[HEADER..])
        .map_err(|e| ProtocolError::Decode(e.to_string()))?;
    if !rest.is_empty() {
        return Err(ProtocolError::Decode(format!(
            "{} bytes after the recommendation",
            rest.len()
        )));
    }
    check(&rec).map_err(|e| ProtocolError::Decode(e.to_string()))?;
    if rec.site != topic.site || rec.node != topic.node {
        return Err(ProtocolError::Decode(format!(
            "addressed to {}/{} but published on {topic}",
            rec.site, rec.node
        )));
    }
    Ok(rec)
}

fn bad(field: impl Into<String>, problem: impl Into<String>) -> Invalid {
    Invalid {
        field: field.into(),
        problem: problem.into(),
    }
}

fn text(field: &str, v: &str, max: usize) -> Result<(), Invalid> {
    if v.len() > max {
        return Err(bad(field, format!("{} bytes, at most {max}", v.len())));
    }
    if v.chars().any(|c| c.is_control() && c != '\n') {
        return Err(bad(field, "contains control characters"));
    }
    Ok(())
}

fn finite(field: &str, v: f64) -> Result<(), Invalid> {
    if v.is_finite() && v.abs() <= 1e15 {
        Ok(())
    } else {
        Err(bad(
            field,
            format!("{v} is not a finite number within ±1e15"),
        ))
    }
}

/// The value ranges of a recommendation (docs/protocol.md, "Value ranges").
pub fn check(r: &Recommendation) -> Result<(), Invalid> {
    if r.seq == 0 || r.seq > MAX_SEQ {
        return Err(bad("seq", format!("{} is not in 1 ..= 2^53", r.seq)));
    }
    if r.id.is_empty() {
        return Err(bad("id", "empty"));
    }
    text("id", &r.id, MAX_TEXT)?;
    text("problem", &r.problem, MAX_TEXT)?;
    text("benefit_unit", &r.benefit_unit, MAX_TEXT)?;
    text("confidence_text", &r.confidence_text, MAX_RATIONALE)?;
    text("rationale", &r.rationale, MAX_RATIONALE)?;
    for (field, v) in [("issued_ms", r.issued_ms), ("expires_ms", r.expires_ms)] {
        if !(MIN_TS_MS..MAX_TS_MS).contains(&v) {
            return Err(bad(
                field,
                format!("{v} ms is not between 2000-01-01 and 2200-01-01"),
            ));
        }
    }
    if r.expires_ms <= r.issued_ms {
        return Err(bad("expires_ms", "not after issued_ms"));
    }
    finite("benefit_per_hour", r.benefit_per_hour)?;
    finite("benefit_per_year", r.benefit_per_year)?;
    if !(0.0..=1.0).contains(&r.confidence) {
        return Err(bad(
            "confidence",
            format!("{} is not in 0 … 1", r.confidence),
        ));
    }
    if r.setpoints.is_empty() || r.setpoints.len() > MAX_SETPOINTS {
        return Err(bad(
            "setpoints",
            format!(
                "{} setpoints, 1 … {MAX_SETPOINTS} allowed",
                r.setpoints.len()
            ),
        ));
    }
    for (i, s) in r.setpoints.iter().enumerate() {
        let f = |name: &str| format!("setpoints[{i}].{name}");
        if s.tag.is_empty() {
            return Err(bad(f("tag"), "empty"));
        }
        text(&f("tag"), &s.tag, MAX_TEXT)?;
        text(&f("unit"), &s.unit, MAX_TEXT)?;
        finite(&f("current"), s.current)?;
        finite(&f("proposed"), s.proposed)?;
        if r.setpoints[..i].iter().any(|o| o.tag == s.tag) {
            return Err(bad(f("tag"), format!("{:?} appears twice", s.tag)));
        }
    }
    Ok(())
}

/// Why a correctly signed recommendation is still refused by the receiver.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Stale {
    #[error("addressed to {site}/{node}, not to this node")]
    OtherNode { site: String, node: String },
    #[error("expired {0} ms ago")]
    Expired(i64),
    #[error("issued {0} ms in the future (clocks more than 5 minutes apart?)")]
    FromTheFuture(i64),
    #[error(
        "sequence {seq} is not above {last}, the last one accepted (a replay, or a duplicate delivery)"
    )]
    Replay { seq: u64, last: u64 },
}

/// The receiver's checks that need its identity, clock and the last
/// sequence number it accepted (stored durably by the caller).
#[derive(Debug, Clone)]
pub struct Freshness<'a> {
    pub site: &'a str,
    pub node: &'a str,
    pub now_ms: i64,
    pub last_seq: u64,
}

impl Freshness<'_> {
    pub fn check(&self, r: &Recommendation) -> Result<(), Stale> {
        if r.site != self.site || r.node != self.node {
            return Err(Stale::OtherNode {
                site: r.site.clone(),
                node: r.node.clone(),
            });
        }
        if r.seq <= self.last_seq {
            return Err(Stale::Replay {
                seq: r.seq,
                last: self.last_seq,
            });
        }
        if r.expires_ms <= self.now_ms {
            return Err(Stale::Expired(self.now_ms - r.expires_ms));
        }
        if r.issued_ms > self.now_ms + MAX_CLOCK_SKEW_MS {
            return Err(Stale::FromTheFuture(r.issued_ms - self.now_ms));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
