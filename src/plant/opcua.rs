//! The plant's variables served over OPC UA (async-opcua server side).
//!
//! Namespace `urn:apos:plant`; one folder per area of the unit under
//! `Objects/Plant` (`Heater`, `Column`, `Product`, `Unit`, …) and one variable
//! per register of the Modbus map, with the same engineering values (scaled,
//! as Double for measurements), string node ids equal to the tag names
//! (`ns=<idx>;s=heater.outlet_temp`). Setpoints and commands are writable
//! with the same range checks as over Modbus (`BadOutOfRange` otherwise).
//! Variables with a unit are `AnalogItemType` with an `EngineeringUnits`
//! property (UNECE codes, OPC UA Part 8) and, for setpoints, an `EURange`.
//! Security None, anonymous: it is a simulator on 127.0.0.1.

use std::path::Path;
use std::sync::{Arc, Mutex};

use firmware_config::{Area, DataType};
use opcua::server::ServerBuilder;
use opcua::server::address_space::{AccessLevel, VariableBuilder};
use opcua::server::diagnostics::NamespaceMetadata;
use opcua::server::node_manager::memory::{SimpleNodeManager, simple_node_manager};
use opcua::types::{
    DataTypeId, DataValue, EUInformation, ExtensionObject, LocalizedText, NodeId, NumericRange,
    ObjectId, Range, StatusCode, VariableTypeId, Variant,
};
use tokio_util::sync::CancellationToken;

use super::registers::{Command, Register, Source, register_map};
use super::server::Shared;

/// Namespace of the plant's nodes.
pub const NAMESPACE_URI: &str = "urn:apos:plant";

/// UNECE Recommendation 20 common code of a unit text used in the register
/// map, as OPC UA Part 8 `EUInformation.unitId` wants it.
fn unece(unit: &str) -> Option<&'static str> {
    Some(match unit {
        "°C" => "CEL",
        "%" => "P1",
        "MW" => "MAW",
        "MWh" => "MWH",
        "kW" => "KWT",
        "kg" => "KGM",
        "kg/h" => "E93",
        "m³" => "MTQ",
        "m³/h" => "MQH",
        "h" => "HUR",
        // UNECE has no gauge pressure: bar, with "barg" as the display name.
        "barg" => "BAR",
        _ => return None,
    })
}

fn eu_information(unit: &str) -> Option<EUInformation> {
    let code = unece(unit)?;
    let unit_id = code.bytes().fold(0i32, |id, b| (id << 8) | i32::from(b));
    Some(EUInformation {
        namespace_uri: "http://www.opcfoundation.org/UA/units/un/cefact".into(),
        unit_id,
        display_name: LocalizedText::new("", unit),
        description: LocalizedText::new("", code),
    })
}

fn folder_name(tag: &str) -> String {
    let first = tag.split('.').next().unwrap_or("Plant");
    let mut c = first.chars();
    c.next()
        .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
        .unwrap_or_default()
}

fn data_type(r: &Register) -> DataTypeId {
    match r.data_type {
        DataType::Bool | DataType::Bit(_) => DataTypeId::Boolean,
        DataType::String { .. } => DataTypeId::String,
        _ if r.scale != 1.0 => DataTypeId::Double,
        DataType::F32 | DataType::F64 => DataTypeId::Double,
        DataType::U16 | DataType::U32 => DataTypeId::UInt32,
        DataType::I16 | DataType::I32 => DataTypeId::Int32,
        DataType::U64 => DataTypeId::UInt64,
        DataType::I64 => DataTypeId::Int64,
    }
}

/// The engineering value of `r` in the current state, as its variant.
fn value_of(r: &Register, shared: &Shared) -> Variant {
    let snap = shared.plant.snapshot();
    let eng = match r.source {
        Source::Measure(f) => f(snap),
        Source::Setpoint(id) => match id {
            super::model::SetpointId::OutletTemp => snap.sp.outlet_temp,
            super::model::SetpointId::FeedRate => snap.sp.feed_rate,
            super::model::SetpointId::TopPressure => snap.sp.top_pressure,
            super::model::SetpointId::RefluxRatio => snap.sp.reflux_ratio,
        },
        Source::Command(Command::Run) => f64::from(u8::from(snap.run_cmd)),
        Source::Command(Command::FaultReset) => 0.0,
        Source::Text(t) => return Variant::from(t),
    };
    match (data_type(r), r.data_type) {
        (DataTypeId::Boolean, DataType::Bit(b)) => Variant::Boolean((eng as u64) >> b & 1 == 1),
        (DataTypeId::Boolean, _) => Variant::Boolean(eng != 0.0),
        (DataTypeId::UInt32, _) => Variant::UInt32(eng.round().clamp(0.0, u32::MAX as f64) as u32),
        (DataTypeId::Int32, _) => {
            Variant::Int32(eng.round().clamp(i32::MIN as f64, i32::MAX as f64) as i32)
        }
        (DataTypeId::UInt64, _) => Variant::UInt64(eng.round().max(0.0) as u64),
        (DataTypeId::Int64, _) => Variant::Int64(eng.round() as i64),
        _ => Variant::Double(eng),
    }
}

fn write(r: &'static Register, shared: &Mutex<Shared>, dv: &DataValue) -> StatusCode {
    let Some(v) = dv.value.as_ref() else {
        return StatusCode::BadTypeMismatch;
    };
    let num = match v {
        Variant::Boolean(b) => f64::from(u8::from(*b)),
        Variant::Double(x) => *x,
        Variant::Float(x) => f64::from(*x),
        Variant::Int32(x) => f64::from(*x),
        Variant::UInt32(x) => f64::from(*x),
        Variant::Int16(x) => f64::from(*x),
        Variant::UInt16(x) => f64::from(*x),
        Variant::Int64(x) => *x as f64,
        Variant::UInt64(x) => *x as f64,
        _ => return StatusCode::BadTypeMismatch,
    };
    let Ok(mut s) = shared.lock() else {
        return StatusCode::BadInternalError;
    };
    let status = match r.source {
        Source::Setpoint(id) => match s.plant.set(id, num) {
            Ok(()) => StatusCode::Good,
            Err(_) => StatusCode::BadOutOfRange,
        },
        Source::Command(Command::Run) => {
            s.plant.set_run(num != 0.0);
            StatusCode::Good
        }
        Source::Command(Command::FaultReset) => {
            if num != 0.0 {
                s.plant.reset_fault();
            }
            StatusCode::Good
        }
        _ => StatusCode::BadNotWritable,
    };
    if status.is_good() {
        s.refresh();
    }
    status
}

fn restrict_private_key(pki_dir: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    let private = pki_dir.join("private");
    let _ = std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700));
    if let Ok(entries) = std::fs::read_dir(&private) {
        for e in entries.flatten() {
            let _ = std::fs::set_permissions(e.path(), std::fs::Permissions::from_mode(0o600));
        }
    }
}

/// Serve until `cancel` fires. `pki_dir` holds the server's own certificate.
pub async fn serve(
    listener: tokio::net::TcpListener,
    shared: Arc<Mutex<Shared>>,
    pki_dir: &Path,
    cancel: CancellationToken,
) -> Result<(), String> {
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let (server, handle) = ServerBuilder::new_anonymous("APOS simulated plant")
        .application_uri("urn:apos:plant:simulator")
        .product_uri("urn:apos:plant")
        .host("127.0.0.1")
        .port(port)
        .pki_dir(pki_dir)
        .create_sample_keypair(true)
        .trust_client_certs(true)
        .token(cancel.clone())
        .with_node_manager(simple_node_manager(
            NamespaceMetadata {
                namespace_uri: NAMESPACE_URI.to_owned(),
                ..Default::default()
            },
            "plant",
        ))
        .build()?;
    // async-opcua writes the sample key with the umask's mode: keys are
    // 0600 in 0700 folders here as everywhere.
    restrict_private_key(pki_dir);
    let manager = handle
        .node_managers()
        .get_of_type::<SimpleNodeManager>()
        .ok_or("plant node manager missing")?;
    let ns = handle
        .get_namespace_index(NAMESPACE_URI)
        .ok_or("plant namespace missing")?;
    {
        let mut space = manager.address_space().write();
        let root = NodeId::new(ns, "Plant");
        space.add_folder(&root, "Plant", "Plant", &ObjectId::ObjectsFolder.into());
        let guard = shared.lock().map_err(|_| "plant state poisoned")?;
        let mut folders = std::collections::BTreeSet::new();
        for r in register_map() {
            let folder = folder_name(r.name);
            let folder_id = NodeId::new(ns, format!("Plant.{folder}"));
            if folders.insert(folder.clone()) {
                space.add_folder(&folder_id, folder.as_str(), folder.as_str(), &root);
            }
            let leaf = r.name.split('.').nth(1).unwrap_or(r.name);
            let var_id = NodeId::new(ns, r.name);
            let eu = eu_information(r.unit);
            if let Some(eu) = &eu {
                VariableBuilder::new(
                    &NodeId::new(ns, format!("{}.EngineeringUnits", r.name)),
                    "EngineeringUnits",
                    "EngineeringUnits",
                )
                .data_type(DataTypeId::EUInformation)
                .value(ExtensionObject::from_message(eu.clone()))
                .property_of(var_id.clone())
                .has_type_definition(VariableTypeId::PropertyType)
                .insert(&mut *space);
                if let Some((low, high)) = r.range() {
                    VariableBuilder::new(
                        &NodeId::new(ns, format!("{}.EURange", r.name)),
                        "EURange",
                        "EURange",
                    )
                    .data_type(DataTypeId::Range)
                    .value(ExtensionObject::from_message(Range { low, high }))
                    .property_of(var_id.clone())
                    .has_type_definition(VariableTypeId::PropertyType)
                    .insert(&mut *space);
                }
            }
            let mut b = VariableBuilder::new(&var_id, leaf, leaf)
                .data_type(data_type(r))
                .value(value_of(r, &guard))
                .description(r.description)
                .organized_by(folder_id);
            b = b.has_type_definition(if eu.is_some() {
                VariableTypeId::AnalogItemType
            } else {
                VariableTypeId::BaseDataVariableType
            });
            if r.writable && matches!(r.area, Area::Coil | Area::HoldingRegister) {
                b = b
                    .access_level(AccessLevel::CURRENT_READ | AccessLevel::CURRENT_WRITE)
                    .user_access_level(AccessLevel::CURRENT_READ | AccessLevel::CURRENT_WRITE);
            }
            b.insert(&mut *space);
        }
    }
    for r in register_map().iter().filter(|r| r.writable) {
        let sh = shared.clone();
        manager.inner().add_write_callback(
            NodeId::new(ns, r.name),
            move |dv: DataValue, _: &NumericRange| write(r, &sh, &dv),
        );
    }

    // Push the model's values into the address space at the plant's tick.
    let subs = handle.subscriptions().clone();
    let mgr = manager.clone();
    let sh = shared.clone();
    let tick_cancel = cancel.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(super::TICK);
        loop {
            tokio::select! {
                _ = tick_cancel.cancelled() => break,
                _ = tick.tick() => {
                    let values: Vec<(NodeId, DataValue)> = match sh.lock() {
                        Ok(g) => register_map()
                            .iter()
                            .map(|r| (NodeId::new(ns, r.name), DataValue::new_now(value_of(r, &g))))
                            .collect(),
                        Err(_) => break,
                    };
                    let _ = mgr.set_values(&subs, values.iter().map(|(id, dv)| (id, None, dv.clone())));
                }
            }
        }
    });
    server.run_with(listener).await
}
