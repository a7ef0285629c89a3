//! Walking a server's address space: what `apos-edge opcua browse` prints,
//! and the tag-list CSV it writes for `[[import]]`.
//!
//! Node ids are written with the namespace URI (`nsu=…`), not the index,
//! because indices differ between servers and may change on restart.
//!
//! What the CSV holds must import into a configuration that validates and
//! reads, whatever the server:
//! - tag names are made from the browse path below the start node,
//!   prefixed with the start node's own name (two PLCs browsed from their
//!   own objects do not collide), in the configuration's alphabet, at most
//!   [`MAX_NAME`] characters (a longer one is cut and ends in a hash of
//!   its node id), and made unique the same way; the same server gives the
//!   same names every time;
//! - the server's session diagnostics (one object per session, ids that
//!   vanish when the browsing session ends) are skipped;
//! - variables whose value is not a scalar are marked: arrays (stored as
//!   JSON text) are left out of the CSV unless asked for, structures always
//!   (their fields are separate variables).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::time::Duration;

use firmware_config::{NodeRef, OpcUaEndpoint};
use opcua::types::{
    AttributeId, BrowseDescription, BrowseDirection, BrowseResultMask, ByteString, DataValue,
    Identifier as UaIdentifier, NodeClass, NodeId, ReadValueId, ReferenceTypeId,
    TimestampsToReturn, Variant,
};

use super::connect::{self, ConnectError};
use super::pki::OwnIdentity;

/// Longest tag name the CSV gets (the configuration allows 128; long
/// names are unreadable on a page).
pub const MAX_NAME: usize = 64;

/// `ServerDiagnostics`: below it, one object per client session.
const SERVER_DIAGNOSTICS: u32 = 2274;

/// What a variable holds, from a read of its value and value rank.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Scalar,
    /// An array: a tag stores it as JSON text.
    Array,
    /// A structure: not a tag value (its fields usually are variables).
    Structure,
    /// Unreadable or empty right now.
    Unknown,
}

/// One node found while browsing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Display names from the start node down, e.g. `["Plant", "Ramp"]`
    /// (the start node's own name first when browsing from one).
    pub path: Vec<String>,
    /// The node id in configuration syntax (`nsu=…;s=…`).
    pub node: String,
    pub is_variable: bool,
    /// For variables: what their value is.
    pub shape: Option<Shape>,
}

/// What a browse found and what it left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Browsed {
    pub found: Vec<Found>,
    /// Session diagnostics nodes not listed.
    pub skipped_diagnostics: usize,
}

/// Browse from `start` (default: the Objects folder) down to `max_depth`.
pub async fn browse(
    endpoint: &OpcUaEndpoint,
    identity: &OwnIdentity,
    start: Option<&NodeRef>,
    max_depth: usize,
    timeout: Duration,
) -> Result<Browsed, String> {
    let mut client = connect::build_client(endpoint, identity, timeout)?;
    let live = connect::open(&mut client, endpoint, &identity.application_uri, timeout)
        .await
        .map_err(|ConnectError { message, .. }| message)?;
    let result = walk(&live.session, start, max_depth, timeout).await;
    live.close().await;
    result
}

async fn walk(
    session: &opcua::client::Session,
    start: Option<&NodeRef>,
    max_depth: usize,
    timeout: Duration,
) -> Result<Browsed, String> {
    let namespaces = session
        .read_namespace_array()
        .await
        .map_err(|e| format!("cannot read the namespace array: {e}"))?;
    let uri_of: HashMap<u16, String> = namespaces
        .known_namespaces()
        .iter()
        .map(|(uri, idx)| (*idx, uri.clone()))
        .collect();
    let (root, prefix) = match start {
        None => (NodeId::new(0, 85u32), Vec::new()), // Objects
        Some(n) => {
            let ns = match &n.namespace {
                firmware_config::Namespace::Index(i) => *i,
                firmware_config::Namespace::Uri(u) => *namespaces
                    .known_namespaces()
                    .get(u)
                    .ok_or_else(|| format!("the server has no namespace {u:?}"))?,
            };
            let id = match &n.identifier {
                firmware_config::Identifier::Numeric(v) => NodeId::new(ns, *v),
                firmware_config::Identifier::String(s) => NodeId::new(ns, s.as_str()),
                _ => return Err("start the browse from a numeric or string node id".into()),
            };
            let name = display_name(session, &id, timeout).await?;
            (id, vec![name])
        }
    };
    let mut out = Browsed::default();
    let mut seen: HashSet<NodeId> = HashSet::new();
    let mut frontier: Vec<(NodeId, Vec<String>)> = vec![(root, prefix)];
    let skip = NodeId::new(0, SERVER_DIAGNOSTICS);
    for _depth in 0..max_depth {
        let mut next = Vec::new();
        for (node, path) in frontier {
            for (child, name, class) in children(session, &node, timeout).await? {
                if !seen.insert(child.clone()) {
                    continue;
                }
                if child == skip {
                    out.skipped_diagnostics += 1;
                    continue;
                }
                let mut p = path.clone();
                p.push(name);
                out.found.push(Found {
                    path: p.clone(),
                    node: config_text(&child, &uri_of),
                    is_variable: class == NodeClass::Variable,
                    shape: None,
                });
                // Variables can have children (properties); objects mostly do.
                if class == NodeClass::Object || class == NodeClass::Variable {
                    next.push((child, p));
                }
            }
        }
        if next.is_empty() {
            break;
        }
        frontier = next;
    }
    // What each variable holds: read value and value rank, in chunks.
    let ids: Vec<(usize, NodeId)> = out
        .found
        .iter()
        .enumerate()
        .filter(|(_, f)| f.is_variable)
        .filter_map(|(i, f)| Some((i, parse_back(&f.node, &namespaces)?)))
        .collect();
    for chunk in ids.chunks(100) {
        let reads: Vec<ReadValueId> = chunk
            .iter()
            .flat_map(|(_, id)| {
                [AttributeId::Value, AttributeId::ValueRank].map(|a| ReadValueId {
                    node_id: id.clone(),
                    attribute_id: a as u32,
                    ..Default::default()
                })
            })
            .collect();
        let values = tokio::time::timeout(
            timeout,
            session.read(&reads, TimestampsToReturn::Neither, 0.0),
        )
        .await
        .map_err(|_| "reading the variables' values timed out".to_owned())?
        .map_err(|e| format!("reading the variables' values failed: {e}"))?;
        for ((i, _), pair) in chunk.iter().zip(values.chunks(2)) {
            out.found[*i].shape = Some(shape(pair));
        }
    }
    Ok(out)
}

/// Classify a variable from its `[Value, ValueRank]` read.
fn shape(pair: &[DataValue]) -> Shape {
    let rank = pair
        .get(1)
        .and_then(|d| d.value.as_ref())
        .and_then(|v| match v {
            Variant::Int32(r) => Some(*r),
            _ => None,
        });
    match pair.first().and_then(|d| d.value.as_ref()) {
        Some(Variant::Array(_)) => Shape::Array,
        Some(Variant::ExtensionObject(_)) => Shape::Structure,
        Some(Variant::Empty) | None => match rank {
            Some(r) if r >= 0 || r == -3 => Shape::Array,
            _ => Shape::Unknown,
        },
        Some(_) => match rank {
            Some(r) if r >= 1 => Shape::Array,
            _ => Shape::Scalar,
        },
    }
}

async fn display_name(
    session: &opcua::client::Session,
    id: &NodeId,
    timeout: Duration,
) -> Result<String, String> {
    let read = ReadValueId {
        node_id: id.clone(),
        attribute_id: AttributeId::DisplayName as u32,
        ..Default::default()
    };
    let values = tokio::time::timeout(
        timeout,
        session.read(&[read], TimestampsToReturn::Neither, 0.0),
    )
    .await
    .map_err(|_| format!("reading the name of {id} timed out"))?
    .map_err(|e| format!("reading the name of {id} failed: {e}"))?;
    match values.first().and_then(|d| d.value.as_ref()) {
        Some(Variant::LocalizedText(t)) => Ok(t.text.as_ref().to_owned()),
        _ => Err(format!("the start node {id} does not exist on this server")),
    }
}

/// The `NodeId` of a node text this module wrote.
fn parse_back(text: &str, ns: &opcua::types::NamespaceMap) -> Option<NodeId> {
    let r: NodeRef = text.parse().ok()?;
    let idx = match &r.namespace {
        firmware_config::Namespace::Index(i) => *i,
        firmware_config::Namespace::Uri(u) => *ns.known_namespaces().get(u)?,
    };
    Some(match &r.identifier {
        firmware_config::Identifier::Numeric(n) => NodeId::new(idx, *n),
        firmware_config::Identifier::String(s) => NodeId::new(idx, s.as_str()),
        firmware_config::Identifier::Guid(g) => {
            NodeId::new(idx, g.parse::<opcua::types::Guid>().ok()?)
        }
        firmware_config::Identifier::Opaque(b) => NodeId::new(idx, ByteString::from_base64(b)?),
    })
}

async fn children(
    session: &opcua::client::Session,
    node: &NodeId,
    timeout: Duration,
) -> Result<Vec<(NodeId, String, NodeClass)>, String> {
    let desc = BrowseDescription {
        node_id: node.clone(),
        browse_direction: BrowseDirection::Forward,
        reference_type_id: ReferenceTypeId::HierarchicalReferences.into(),
        include_subtypes: true,
        node_class_mask: (NodeClass::Object as u32) | (NodeClass::Variable as u32),
        result_mask: BrowseResultMask::All as u32,
    };
    let mut out = Vec::new();
    let mut results = tokio::time::timeout(timeout, session.browse(&[desc], 1000, None))
        .await
        .map_err(|_| format!("browse of {node} timed out"))?
        .map_err(|e| format!("browse of {node} failed: {e}"))?;
    while let Some(r) = results.pop() {
        for rd in r.references.unwrap_or_default() {
            let name = rd.display_name.text.as_ref().to_owned();
            out.push((rd.node_id.node_id, name, rd.node_class));
        }
        let cp: ByteString = r.continuation_point;
        if cp.is_null() || cp.is_empty() {
            break;
        }
        results = tokio::time::timeout(timeout, session.browse_next(false, &[cp]))
            .await
            .map_err(|_| format!("browse of {node} timed out"))?
            .map_err(|e| format!("browse of {node} failed: {e}"))?;
    }
    Ok(out)
}

/// `nsu=<uri>;s=…` (or `i=…` in namespace 0).
fn config_text(id: &NodeId, uri_of: &HashMap<u16, String>) -> String {
    let ident = match &id.identifier {
        UaIdentifier::Numeric(n) => format!("i={n}"),
        UaIdentifier::String(s) => format!("s={}", s.as_ref()),
        UaIdentifier::Guid(g) => format!("g={g}"),
        UaIdentifier::ByteString(b) => format!("b={}", b.as_base64()),
    };
    match (id.namespace, uri_of.get(&id.namespace)) {
        (0, _) => ident,
        (_, Some(uri)) => format!("nsu={uri};{ident}"),
        (ns, None) => format!("ns={ns};{ident}"),
    }
}

/// An indented tree for people; variables that will not import are marked.
pub fn tree(b: &Browsed) -> String {
    let mut s = String::new();
    let mut sorted: Vec<&Found> = b.found.iter().collect();
    // Path order puts every node under its parent.
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    for f in sorted {
        let indent = "  ".repeat(f.path.len().saturating_sub(1));
        let name = f.path.last().map(String::as_str).unwrap_or("");
        let kind = if f.is_variable { "" } else { "/" };
        let mark = match f.shape {
            Some(Shape::Array) => "  [array]",
            Some(Shape::Structure) => "  [structure: not a tag value]",
            _ => "",
        };
        let _ = writeln!(s, "{indent}{name}{kind}  {}{mark}", f.node);
    }
    if b.skipped_diagnostics > 0 {
        let _ = writeln!(
            s,
            "(session diagnostics left out: they describe this browsing session and vanish with it)"
        );
    }
    s
}

/// Which variables the CSV holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CsvOptions {
    /// Include arrays (stored as JSON text).
    pub arrays: bool,
}

/// A tag-list CSV for `[[import]]`: one row per variable, with the names
/// described in the module documentation. Returns the text and how many
/// variables were left out.
pub fn csv(b: &Browsed, device: &str, opts: CsvOptions) -> (String, usize) {
    let wanted: Vec<&Found> = b
        .found
        .iter()
        .filter(|f| f.is_variable)
        .filter(|f| match f.shape {
            Some(Shape::Structure) => false,
            Some(Shape::Array) => opts.arrays,
            _ => true,
        })
        .collect();
    let skipped = b.found.iter().filter(|f| f.is_variable).count() - wanted.len();
    let names = tag_names(&wanted);
    let mut s = String::from("name,device,node,description\n");
    let quote = |x: &str| format!("\"{}\"", x.replace('"', "\"\""));
    for (f, name) in wanted.iter().zip(names) {
        let _ = writeln!(
            s,
            "{},{},{},{}",
            quote(&name),
            quote(device),
            quote(&f.node),
            quote(&f.path.join("/"))
        );
    }
    (s, skipped)
}

/// Names for `found`, in order: path segments in the configuration's
/// alphabet joined by `.`, cut to [`MAX_NAME`], made unique; a cut or a
/// clash ends the name in a hash of the node id, so it is stable.
fn tag_names(found: &[&Found]) -> Vec<String> {
    let base: Vec<String> = found
        .iter()
        .map(|f| {
            let name = f
                .path
                .iter()
                .map(|p| segment(p))
                .filter(|p| !p.is_empty())
                .collect::<Vec<_>>()
                .join(".");
            let name = if name.is_empty() {
                "tag".to_owned()
            } else {
                name
            };
            if name.len() > MAX_NAME {
                with_hash(&name, &f.node)
            } else {
                name
            }
        })
        .collect();
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    for n in &base {
        *count.entry(n.as_str()).or_default() += 1;
    }
    base.iter()
        .zip(found)
        .map(|(n, f)| {
            if count.get(n.as_str()).copied().unwrap_or(0) > 1 {
                with_hash(n, &f.node)
            } else {
                n.clone()
            }
        })
        .collect()
}

/// `Line 1 / Temp (°C)` → `line_1_temp_c`.
fn segment(p: &str) -> String {
    let mut out = String::new();
    for c in p.chars() {
        if c.is_ascii_alphanumeric() || c == '-' {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    out.trim_matches('_').to_owned()
}

/// `name` cut so that `_` and 8 hex digits of a hash of `node` fit.
fn with_hash(name: &str, node: &str) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in node.bytes() {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    let keep = MAX_NAME - 9;
    let mut cut: String = name.chars().take(keep).collect();
    while cut.ends_with(['.', '_']) {
        cut.pop();
    }
    format!("{cut}_{h:08x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn var(path: &[&str], node: &str) -> Found {
        Found {
            path: path.iter().map(|s| (*s).to_owned()).collect(),
            node: node.to_owned(),
            is_variable: true,
            shape: Some(Shape::Scalar),
        }
    }

    #[test]
    fn names_are_short_valid_unique_and_stable() {
        let long = "A very long display name that a vendor thought was helpful";
        let found = [
            var(&["PLC 1", "Temp (°C)"], "nsu=u;s=a"),
            var(&["PLC 1", long, long, "Value"], "nsu=u;s=b"),
            var(&["PLC 1", long, long, "Value"], "nsu=u;s=c"),
            var(&["PLC 1", "temp °C"], "nsu=u;s=d"),
        ];
        let refs: Vec<&Found> = found.iter().collect();
        let names = tag_names(&refs);
        for n in &names {
            assert!(n.len() <= MAX_NAME, "{n}");
            assert!(
                n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)),
                "{n}"
            );
        }
        let unique: HashSet<&String> = names.iter().collect();
        assert_eq!(unique.len(), names.len(), "{names:?}");
        // "Temp (°C)" and "temp °C" clash: both get their node's hash.
        assert!(names[0].starts_with("plc_1.temp_c_"), "{names:?}");
        assert!(names[3].starts_with("plc_1.temp_c_"), "{names:?}");
        // Same input, same names.
        assert_eq!(tag_names(&refs), names);
        // Order does not change a name.
        let rev: Vec<&Found> = found.iter().rev().collect();
        let mut again = tag_names(&rev);
        again.reverse();
        assert_eq!(again, names);
    }

    #[test]
    fn structures_never_and_arrays_only_on_request_go_into_the_csv() {
        let mut a = var(&["S", "NamespaceArray"], "i=2255");
        a.shape = Some(Shape::Array);
        let mut st = var(&["S", "ServerStatus"], "i=2256");
        st.shape = Some(Shape::Structure);
        let b = Browsed {
            found: vec![var(&["S", "State"], "i=2259"), a, st],
            skipped_diagnostics: 1,
        };
        let (text, skipped) = csv(&b, "ua", CsvOptions::default());
        assert_eq!(skipped, 2);
        assert_eq!(text.lines().count(), 2, "{text}");
        let (text, skipped) = csv(&b, "ua", CsvOptions { arrays: true });
        assert_eq!(skipped, 1);
        assert!(text.contains("s.namespacearray"), "{text}");
        assert!(tree(&b).contains("[structure: not a tag value]"));
    }
}
