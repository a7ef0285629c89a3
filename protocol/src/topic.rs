//! Topics: `apos/v1/{site}/{node}/{kind}`.

use std::fmt;

use crate::ProtocolError;

/// Prefix of every version-1 topic.
pub const PREFIX: &str = "apos/v1";

/// What a message on a topic carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Edge → hub: one outbox batch ([`crate::v1::Batch`]), QoS 1.
    Batch,
    /// Hub → edge: the sequence numbers the hub has committed
    /// ([`crate::v1::Ack`]), QoS 1.
    Ack,
    /// Edge → hub: the node's state ([`crate::v1::Status`]), QoS 0, periodic;
    /// not through the outbox (only the latest matters).
    Status,
    /// Hub → edge: a setpoint recommendation signed with the hub's Ed25519
    /// key ([`crate::recommend::Recommendation`]), QoS 1.
    Recommendation,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Batch, Kind::Ack, Kind::Status, Kind::Recommendation];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Batch => "batch",
            Kind::Ack => "ack",
            Kind::Status => "status",
            Kind::Recommendation => "rec",
        }
    }

    /// The byte that names this kind inside the envelope.
    pub fn code(self) -> u8 {
        match self {
            Kind::Batch => 1,
            Kind::Ack => 2,
            Kind::Status => 3,
            Kind::Recommendation => 4,
        }
    }

    pub fn from_code(c: u8) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.code() == c)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Site and node identifiers: short, and safe in a topic level and a file
/// name (no `/`, `+`, `#`; rumqttd also mishandles `/` in client ids).
pub fn check_id(id: &str) -> Result<(), ProtocolError> {
    let ok = (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(ProtocolError::BadId(id.to_owned()))
    }
}

/// A parsed topic.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Topic {
    pub site: String,
    pub node: String,
    pub kind: Kind,
}

impl Topic {
    pub fn new(site: &str, node: &str, kind: Kind) -> Result<Topic, ProtocolError> {
        check_id(site)?;
        check_id(node)?;
        Ok(Topic {
            site: site.to_owned(),
            node: node.to_owned(),
            kind,
        })
    }

    /// The subscription filter for one kind from every node.
    pub fn filter_all(kind: Kind) -> String {
        format!("{PREFIX}/+/+/{kind}")
    }

    pub fn parse(topic: &str) -> Result<Topic, ProtocolError> {
        let bad = || ProtocolError::BadTopic(topic.chars().take(200).collect());
        let rest = topic.strip_prefix(PREFIX).ok_or_else(bad)?;
        let rest = rest.strip_prefix('/').ok_or_else(bad)?;
        let mut parts = rest.split('/');
        let (Some(site), Some(node), Some(kind), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let kind = Kind::ALL
            .into_iter()
            .find(|k| k.as_str() == kind)
            .ok_or_else(bad)?;
        Topic::new(site, node, kind)
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}/{}/{}/{}", self.site, self.node, self.kind)
    }
}

/// A node's MQTT user name on the hub's embedded broker, `{site}.{node}`,
/// and its client id everywhere: the broker refuses a client id other than
/// the user name, so no client can take another's session. (`.` cannot
/// occur in site or node ids, so the name is unambiguous.)
pub fn node_login(site: &str, node: &str) -> String {
    format!("{site}.{node}")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn topics_round_trip_and_bad_ones_are_refused() {
        let t = Topic::new("plant-1", "edge_a", Kind::Batch).unwrap();
        assert_eq!(t.to_string(), "apos/v1/plant-1/edge_a/batch");
        assert_eq!(Topic::parse(&t.to_string()).unwrap(), t);
        assert_eq!(Topic::filter_all(Kind::Status), "apos/v1/+/+/status");
        for bad in [
            "apos/v1/a/b",
            "apos/v1/a/b/batch/x",
            "apos/v2/a/b/batch",
            "apos/v1/a/b/nope",
            "apos/v1//b/batch",
            "apos/v1/a+/b/batch",
            "apos/v1/a/#/batch",
            "xapos/v1/a/b/batch",
        ] {
            assert!(Topic::parse(bad).is_err(), "{bad}");
        }
        assert!(check_id(&"x".repeat(65)).is_err());
        assert!(check_id("with/slash").is_err());
        for k in Kind::ALL {
            assert_eq!(Kind::from_code(k.code()), Some(k));
        }
        assert_eq!(Kind::from_code(0), None);
    }
}
