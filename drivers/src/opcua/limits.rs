//! The server's operation limits, read once per session, so that monitored
//! items and cyclic reads are sent in batches the server accepts.
//!
//! OPC UA Part 5 publishes them under `Server/ServerCapabilities`
//! (`OperationLimits/MaxMonitoredItemsPerCall`, `…/MaxNodesPerRead`, and,
//! since 1.05, `MaxMonitoredItemsPerSubscription`). A value of 0, a missing
//! node or a bad status all mean "not stated"; we then fall back to batch
//! sizes that every server we know accepts.

use opcua::types::{DataValue, NodeId, VariableId, Variant};

/// Batch sizes when the server states no limit. 1000 items per
/// subscription is a common cap (and keeps one subscription's publish
/// responses reasonably sized); 1000 nodes per call stays well under the
/// default 64 KiB-chunk message limits with numeric node ids.
pub const DEFAULT_ITEMS_PER_SUBSCRIPTION: usize = 1000;
pub const DEFAULT_ITEMS_PER_CALL: usize = 1000;
pub const DEFAULT_NODES_PER_READ: usize = 1000;

/// What the server told us, already turned into batch sizes (all ≥ 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OperationLimits {
    pub items_per_subscription: usize,
    pub items_per_call: usize,
    pub nodes_per_read: usize,
}

impl Default for OperationLimits {
    fn default() -> Self {
        Self {
            items_per_subscription: DEFAULT_ITEMS_PER_SUBSCRIPTION,
            items_per_call: DEFAULT_ITEMS_PER_CALL,
            nodes_per_read: DEFAULT_NODES_PER_READ,
        }
    }
}

/// The nodes to read, in the order [`OperationLimits::from_values`] expects.
pub fn nodes() -> [NodeId; 3] {
    [
        VariableId::Server_ServerCapabilities_MaxMonitoredItemsPerSubscription.into(),
        VariableId::Server_ServerCapabilities_OperationLimits_MaxMonitoredItemsPerCall.into(),
        VariableId::Server_ServerCapabilities_OperationLimits_MaxNodesPerRead.into(),
    ]
}

fn stated(dv: Option<&DataValue>) -> Option<usize> {
    let dv = dv?;
    if dv.status.is_some_and(|s| !s.is_good()) {
        return None;
    }
    let n: u64 = match dv.value.as_ref()? {
        Variant::UInt32(v) => u64::from(*v),
        Variant::UInt16(v) => u64::from(*v),
        Variant::UInt64(v) => *v,
        Variant::Int32(v) => u64::try_from(*v).ok()?,
        Variant::Int64(v) => u64::try_from(*v).ok()?,
        _ => return None,
    };
    (n > 0).then(|| usize::try_from(n).unwrap_or(usize::MAX))
}

impl OperationLimits {
    /// From the values read for [`nodes`]; anything unstated keeps the default.
    pub fn from_values(values: &[DataValue]) -> Self {
        let d = Self::default();
        // A server limit only ever lowers our batch sizes: larger batches
        // than the defaults buy little and risk message-size limits.
        let lower =
            |stated: Option<usize>, default: usize| stated.map_or(default, |n| n.min(default));
        Self {
            items_per_subscription: lower(stated(values.first()), d.items_per_subscription),
            items_per_call: lower(stated(values.get(1)), d.items_per_call),
            nodes_per_read: lower(stated(values.get(2)), d.nodes_per_read),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opcua::types::StatusCode;

    fn dv(v: Variant) -> DataValue {
        DataValue::value_only(v)
    }

    #[test]
    fn stated_limits_lower_the_batches_and_unstated_ones_keep_the_defaults() {
        let limits = OperationLimits::from_values(&[
            dv(Variant::UInt32(200)),
            dv(Variant::UInt32(0)), // 0 = no limit
            dv(Variant::UInt32(50)),
        ]);
        assert_eq!(
            limits,
            OperationLimits {
                items_per_subscription: 200,
                items_per_call: DEFAULT_ITEMS_PER_CALL,
                nodes_per_read: 50,
            }
        );
        // A server that states a larger limit does not get larger batches.
        let big = OperationLimits::from_values(&vec![dv(Variant::UInt32(100_000)); 3]);
        assert_eq!(big, OperationLimits::default());
    }

    #[test]
    fn missing_nodes_and_odd_values_mean_unstated() {
        let mut unknown = DataValue::null();
        unknown.status = Some(StatusCode::BadNodeIdUnknown);
        let limits = OperationLimits::from_values(&[
            unknown,
            dv(Variant::String("ten".into())),
            dv(Variant::Int32(-5)),
        ]);
        assert_eq!(limits, OperationLimits::default());
        assert_eq!(
            OperationLimits::from_values(&[]),
            OperationLimits::default()
        );
    }
}
