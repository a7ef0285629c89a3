//! Walking a server's address space: what `apos-edge opcua browse` prints,
//! and the tag-list CSV it writes for `[[import]]`.
//!
//! Node ids are written with the namespace URI (`nsu=…`), not the index,
//! because indices differ between servers and may change on restart.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::time::Duration;

use firmware_config::{NodeRef, OpcUaEndpoint};
use opcua::types::{
    BrowseDescription, BrowseDirection, BrowseResultMask, ByteString, Identifier as UaIdentifier,
    NodeClass, NodeId, ReferenceTypeId,
};

use super::{build_client, open_session};

/// One node found while browsing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Display names from the start node down, e.g. `["Plant", "Ramp"]`.
    pub path: Vec<String>,
    /// The node id in configuration syntax (`nsu=…;s=…`).
    pub node: String,
    pub is_variable: bool,
}

/// Browse from `start` (default: the Objects folder) down to `max_depth`.
pub async fn browse(
    endpoint: &OpcUaEndpoint,
    start: Option<&NodeRef>,
    max_depth: usize,
    timeout: Duration,
) -> Result<Vec<Found>, String> {
    let mut client = build_client(endpoint, "urn:apos:edge:browse", timeout)?;
    let (session, event_loop) = open_session(&mut client, endpoint, timeout)
        .await
        .map_err(|(e, _)| e)?;
    let result = walk(&session, start, max_depth, timeout).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), session.disconnect()).await;
    event_loop.abort();
    result
}

async fn walk(
    session: &opcua::client::Session,
    start: Option<&NodeRef>,
    max_depth: usize,
    timeout: Duration,
) -> Result<Vec<Found>, String> {
    let namespaces = session
        .read_namespace_array()
        .await
        .map_err(|e| format!("cannot read the namespace array: {e}"))?;
    let uri_of: HashMap<u16, String> = namespaces
        .known_namespaces()
        .iter()
        .map(|(uri, idx)| (*idx, uri.clone()))
        .collect();
    let root = match start {
        None => NodeId::new(0, 85u32), // Objects
        Some(n) => {
            let ns = match &n.namespace {
                firmware_config::Namespace::Index(i) => *i,
                firmware_config::Namespace::Uri(u) => *namespaces
                    .known_namespaces()
                    .get(u)
                    .ok_or_else(|| format!("the server has no namespace {u:?}"))?,
            };
            match &n.identifier {
                firmware_config::Identifier::Numeric(v) => NodeId::new(ns, *v),
                firmware_config::Identifier::String(s) => NodeId::new(ns, s.as_str()),
                _ => return Err("start the browse from a numeric or string node id".into()),
            }
        }
    };
    let mut out = Vec::new();
    let mut seen: HashSet<NodeId> = HashSet::new();
    let mut frontier: Vec<(NodeId, Vec<String>)> = vec![(root, Vec::new())];
    for _depth in 0..max_depth {
        let mut next = Vec::new();
        for (node, path) in frontier {
            for (child, name, class) in children(session, &node, timeout).await? {
                if !seen.insert(child.clone()) {
                    continue;
                }
                let mut p = path.clone();
                p.push(name);
                out.push(Found {
                    path: p.clone(),
                    node: config_text(&child, &uri_of),
                    is_variable: class == NodeClass::Variable,
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
    Ok(out)
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

/// An indented tree for people.
pub fn tree(found: &[Found]) -> String {
    let mut s = String::new();
    let mut sorted: Vec<&Found> = found.iter().collect();
    // Path order puts every node under its parent.
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    for f in sorted {
        let indent = "  ".repeat(f.path.len().saturating_sub(1));
        let name = f.path.last().map(String::as_str).unwrap_or("");
        let kind = if f.is_variable { "" } else { "/" };
        let _ = writeln!(s, "{indent}{name}{kind}  {}", f.node);
    }
    s
}

/// A tag-list CSV for `[[import]]`: one row per variable, tag names made
/// from the browse path (`Plant.Ramp` → `plant.ramp`).
pub fn csv(found: &[Found], device: &str) -> String {
    let mut s = String::from("name,device,node,description\n");
    for f in found.iter().filter(|f| f.is_variable) {
        let name: String = f
            .path
            .iter()
            .map(|p| {
                p.chars()
                    .map(|c| {
                        if c.is_ascii_alphanumeric() || c == '-' {
                            c.to_ascii_lowercase()
                        } else {
                            '_'
                        }
                    })
                    .collect::<String>()
            })
            .collect::<Vec<_>>()
            .join(".");
        let quote = |x: &str| format!("\"{}\"", x.replace('"', "\"\""));
        let _ = writeln!(
            s,
            "{},{},{},{}",
            quote(&name),
            quote(device),
            quote(&f.node),
            quote(&f.path.join("/"))
        );
    }
    s
}
