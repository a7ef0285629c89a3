//! The plant PLC's register map and its encoding.
//!
//! Encoding follows the Modbus conventions the edge's decoders implement
//! (written independently here, so tests comparing the two catch mistakes in
//! either): `ABCD` big-endian, `CDAB` word-swapped, `BADC` byte-swapped,
//! `DCBA` both; 64-bit word swaps reverse all four words; strings are two
//! ASCII characters per register, high byte first, NUL padded.

use firmware_config::{Area, DataType, WordOrder};

use super::model::{SetpointId, Snapshot, UnitState};

/// Where a register's value comes from.
#[derive(Debug, Clone, Copy)]
pub enum Source {
    /// A measurement or status, read-only.
    Measure(fn(&Snapshot) -> f64),
    /// A setpoint: readable, and writable within its limits.
    Setpoint(SetpointId),
    /// A fixed string.
    Text(&'static str),
    /// A writable command coil.
    Command(Command),
}

/// Command coils.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// 1 = run, 0 = stop.
    Run,
    /// Writing 1 resets a fault (reads back 0).
    FaultReset,
}

/// One entry of the register map.
#[derive(Debug, Clone)]
pub struct Register {
    /// Tag name used by the demo's edge configuration.
    pub name: &'static str,
    pub area: Area,
    /// 0-based protocol address.
    pub address: u16,
    pub data_type: DataType,
    pub order: WordOrder,
    /// Engineering value = raw × scale.
    pub scale: f64,
    pub unit: &'static str,
    pub writable: bool,
    pub description: &'static str,
    pub source: Source,
}

impl Register {
    /// Allowed write range in engineering units, for setpoints.
    pub fn range(&self) -> Option<(f64, f64)> {
        match self.source {
            Source::Setpoint(id) => Some(id.limits()),
            _ => None,
        }
    }
}

use Area::*;
use DataType as T;
use WordOrder::*;

#[allow(clippy::too_many_arguments)] // a table row: positional reads best here
const fn reg(
    name: &'static str,
    area: Area,
    address: u16,
    data_type: DataType,
    order: WordOrder,
    scale: f64,
    unit: &'static str,
    description: &'static str,
    source: Source,
) -> Register {
    let writable = matches!(source, Source::Setpoint(_) | Source::Command(_));
    Register {
        name,
        area,
        address,
        data_type,
        order,
        scale,
        unit,
        writable,
        description,
        source,
    }
}

fn state_code(s: &Snapshot) -> f64 {
    f64::from(s.state as u16)
}

static MAP: &[Register] = &[
    // ---- input registers: measurements
    reg(
        "heater.outlet_temp",
        InputRegister,
        0,
        T::F32,
        Abcd,
        1.0,
        "°C",
        "Heater coil outlet temperature",
        Source::Measure(|s| s.outlet_temp),
    ),
    reg(
        "heater.inlet_temp",
        InputRegister,
        2,
        T::F32,
        Abcd,
        1.0,
        "°C",
        "Heater inlet (preheat train outlet) temperature",
        Source::Measure(|s| s.inlet_temp),
    ),
    reg(
        "heater.fuel_gas_flow",
        InputRegister,
        4,
        T::F32,
        Cdab,
        1.0,
        "kg/h",
        "Fuel gas mass flow",
        Source::Measure(|s| s.fuel_gas_flow),
    ),
    reg(
        "heater.duty",
        InputRegister,
        6,
        T::F32,
        Cdab,
        1.0,
        "MW",
        "Heater absorbed duty",
        Source::Measure(|s| s.duty_mw),
    ),
    reg(
        "heater.flue_gas_temp",
        InputRegister,
        8,
        T::I16,
        Abcd,
        0.1,
        "°C",
        "Flue gas temperature at the stack",
        Source::Measure(|s| s.flue_gas_temp),
    ),
    reg(
        "heater.excess_o2",
        InputRegister,
        9,
        T::U16,
        Abcd,
        0.01,
        "%",
        "Excess oxygen in flue gas",
        Source::Measure(|s| s.excess_o2),
    ),
    reg(
        "heater.efficiency",
        InputRegister,
        10,
        T::U16,
        Abcd,
        0.01,
        "%",
        "Heater thermal efficiency",
        Source::Measure(|s| s.efficiency * 100.0),
    ),
    reg(
        "column.top_pressure",
        InputRegister,
        11,
        T::U16,
        Abcd,
        0.001,
        "barg",
        "Column top pressure",
        Source::Measure(|s| s.top_pressure),
    ),
    reg(
        "column.top_temp",
        InputRegister,
        12,
        T::I16,
        Abcd,
        0.1,
        "°C",
        "Column top temperature",
        Source::Measure(|s| s.top_temp),
    ),
    reg(
        "column.bottom_temp",
        InputRegister,
        13,
        T::I16,
        Abcd,
        0.1,
        "°C",
        "Column bottom temperature",
        Source::Measure(|s| s.bottom_temp),
    ),
    reg(
        "column.feed_rate",
        InputRegister,
        14,
        T::F32,
        Badc,
        1.0,
        "m³/h",
        "Crude feed rate",
        Source::Measure(|s| s.feed_rate),
    ),
    reg(
        "product.naphtha_flow",
        InputRegister,
        16,
        T::F32,
        Dcba,
        1.0,
        "m³/h",
        "Naphtha product flow",
        Source::Measure(|s| s.naphtha_flow),
    ),
    reg(
        "product.kerosene_flow",
        InputRegister,
        18,
        T::F32,
        Dcba,
        1.0,
        "m³/h",
        "Kerosene product flow",
        Source::Measure(|s| s.kerosene_flow),
    ),
    reg(
        "product.diesel_flow",
        InputRegister,
        20,
        T::F32,
        Dcba,
        1.0,
        "m³/h",
        "Diesel product flow",
        Source::Measure(|s| s.diesel_flow),
    ),
    reg(
        "product.residue_flow",
        InputRegister,
        22,
        T::F32,
        Dcba,
        1.0,
        "m³/h",
        "Atmospheric residue flow",
        Source::Measure(|s| s.residue_flow),
    ),
    reg(
        "product.naphtha_t95",
        InputRegister,
        24,
        T::I16,
        Abcd,
        0.1,
        "°C",
        "Naphtha 95 % distillation point (analyser); spec ≤ 180 °C",
        Source::Measure(|s| s.naphtha_t95),
    ),
    reg(
        "utility.power",
        InputRegister,
        25,
        T::U16,
        Abcd,
        1.0,
        "kW",
        "Electric power of pumps and air coolers",
        Source::Measure(|s| s.power_kw),
    ),
    reg(
        "ambient.temp",
        InputRegister,
        26,
        T::I16,
        Abcd,
        0.1,
        "°C",
        "Ambient air temperature",
        Source::Measure(|s| s.ambient_temp),
    ),
    reg(
        "unit.energy_total",
        InputRegister,
        28,
        T::F64,
        Abcd,
        1.0,
        "MWh",
        "Energy used since start (fuel + power)",
        Source::Measure(|s| s.energy_mwh),
    ),
    reg(
        "unit.product_counter",
        InputRegister,
        32,
        T::U16,
        Abcd,
        1.0,
        "m³",
        "Light products counter; wraps at 65536",
        Source::Measure(|s| s.product_m3.floor().rem_euclid(65_536.0)),
    ),
    reg(
        "unit.offspec_counter",
        InputRegister,
        33,
        T::U16,
        Abcd,
        1.0,
        "m³",
        "Off-spec naphtha counter; wraps at 65536",
        Source::Measure(|s| s.offspec_m3.floor().rem_euclid(65_536.0)),
    ),
    reg(
        "unit.run_hours",
        InputRegister,
        34,
        T::U32,
        Cdab,
        0.01,
        "h",
        "Running hours",
        Source::Measure(|s| s.run_hours),
    ),
    reg(
        "unit.fuel_total",
        InputRegister,
        36,
        T::U64,
        Abcd,
        1.0,
        "kg",
        "Fuel gas burnt since start",
        Source::Measure(|s| s.fuel_kg.floor()),
    ),
    reg(
        "unit.trip_count",
        InputRegister,
        40,
        T::U16,
        Abcd,
        1.0,
        "",
        "Trips since start",
        Source::Measure(|s| f64::from(s.trips)),
    ),
    reg(
        "unit.fault_code",
        InputRegister,
        41,
        T::U16,
        Abcd,
        1.0,
        "",
        "Active fault: 0 none, 101 flame failure, 102 low feed flow, 201 high tube temperature",
        Source::Measure(|s| f64::from(s.fault_code)),
    ),
    reg(
        "unit.state",
        InputRegister,
        42,
        T::U16,
        Abcd,
        1.0,
        "",
        "0 stopped, 1 starting, 2 running, 3 fault",
        Source::Measure(state_code),
    ),
    reg(
        "unit.status_word",
        InputRegister,
        43,
        T::U16,
        Abcd,
        1.0,
        "",
        "Bits: 0 running, 1 fault, 2 high temp, 3 low O2, 4 off-spec, 5 run command",
        Source::Measure(|s| f64::from(s.status_word())),
    ),
    reg(
        "unit.running",
        InputRegister,
        43,
        T::Bit(0),
        Abcd,
        1.0,
        "",
        "Status word bit 0: running",
        Source::Measure(|s| f64::from(s.status_word())),
    ),
    reg(
        "unit.faulted",
        InputRegister,
        43,
        T::Bit(1),
        Abcd,
        1.0,
        "",
        "Status word bit 1: fault",
        Source::Measure(|s| f64::from(s.status_word())),
    ),
    reg(
        "heater.outlet_temp_dev",
        InputRegister,
        44,
        T::I32,
        Dcba,
        0.001,
        "°C",
        "Outlet temperature minus its setpoint",
        Source::Measure(|s| s.outlet_temp - s.sp.outlet_temp),
    ),
    // ---- holding registers: setpoints and identity
    reg(
        "heater.outlet_temp_sp",
        HoldingRegister,
        0,
        T::F32,
        Abcd,
        1.0,
        "°C",
        "Heater outlet temperature setpoint (330–385)",
        Source::Setpoint(SetpointId::OutletTemp),
    ),
    reg(
        "column.feed_rate_sp",
        HoldingRegister,
        2,
        T::F32,
        Cdab,
        1.0,
        "m³/h",
        "Crude feed rate setpoint (250–700)",
        Source::Setpoint(SetpointId::FeedRate),
    ),
    reg(
        "column.top_pressure_sp",
        HoldingRegister,
        4,
        T::U16,
        Abcd,
        0.001,
        "barg",
        "Column top pressure setpoint (0.8–2.5)",
        Source::Setpoint(SetpointId::TopPressure),
    ),
    reg(
        "column.reflux_ratio_sp",
        HoldingRegister,
        5,
        T::U16,
        Abcd,
        0.01,
        "",
        "Reflux ratio setpoint (1.0–4.0)",
        Source::Setpoint(SetpointId::RefluxRatio),
    ),
    reg(
        "unit.name",
        HoldingRegister,
        10,
        T::String { len: 8 },
        Abcd,
        1.0,
        "",
        "Unit identifier",
        Source::Text("CDU-1"),
    ),
    // ---- coils: commands
    reg(
        "unit.run_cmd",
        Coil,
        0,
        T::Bool,
        Abcd,
        1.0,
        "",
        "Run command: 1 run, 0 stop",
        Source::Command(Command::Run),
    ),
    reg(
        "unit.fault_reset",
        Coil,
        1,
        T::Bool,
        Abcd,
        1.0,
        "",
        "Write 1 to reset a fault",
        Source::Command(Command::FaultReset),
    ),
    // ---- discrete inputs: alarms
    reg(
        "alarm.heater_high_temp",
        DiscreteInput,
        0,
        T::Bool,
        Abcd,
        1.0,
        "",
        "Heater outlet above 390 °C",
        Source::Measure(|s| f64::from(u8::from(s.alarm_high_temp()))),
    ),
    reg(
        "alarm.low_o2",
        DiscreteInput,
        1,
        T::Bool,
        Abcd,
        1.0,
        "",
        "Excess O2 below 1.5 % while running",
        Source::Measure(|s| f64::from(u8::from(s.alarm_low_o2()))),
    ),
    reg(
        "alarm.offspec",
        DiscreteInput,
        2,
        T::Bool,
        Abcd,
        1.0,
        "",
        "Naphtha 95 % point above spec",
        Source::Measure(|s| f64::from(u8::from(s.offspec()))),
    ),
    reg(
        "alarm.unit_trip",
        DiscreteInput,
        3,
        T::Bool,
        Abcd,
        1.0,
        "",
        "Unit tripped (fault state)",
        Source::Measure(|s| f64::from(u8::from(s.state == UnitState::Fault))),
    ),
];

/// The plant's register map.
pub fn register_map() -> &'static [Register] {
    MAP
}

/// The register map as a Markdown table (kept in `docs/plant.md`; a test
/// fails with the new table when the two differ).
pub fn markdown_table() -> String {
    let mut out = String::from(
        "| tag | area | address | type | order | scale | unit | access | description |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in register_map() {
        let ty = match r.data_type {
            T::Bit(b) => format!("bit {b}"),
            T::String { len } => format!("string({len})"),
            t => t.name().to_owned(),
        };
        let order = if r.data_type.width() > 1 && !matches!(r.data_type, T::String { .. }) {
            r.order.as_str()
        } else {
            ""
        };
        let access = match r.range() {
            Some((lo, hi)) => format!("write {lo}–{hi}"),
            None if r.writable => "write".to_owned(),
            None => "read".to_owned(),
        };
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.name,
            r.area.as_str(),
            r.address,
            ty,
            order,
            r.scale,
            r.unit,
            access,
            r.description
        ));
    }
    out
}

fn words_from_be(bytes: &[u8], order: WordOrder) -> Vec<u16> {
    let mut w: Vec<u16> = bytes
        .chunks(2)
        .map(|c| u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)]))
        .collect();
    if matches!(order, Cdab | Dcba) {
        w.reverse();
    }
    if matches!(order, Badc | Dcba) {
        for x in &mut w {
            *x = x.swap_bytes();
        }
    }
    w
}

/// Encode an engineering value for `reg` (bits: any non-zero is 1).
pub fn encode(reg: &Register, eng: f64) -> Vec<u16> {
    let raw = eng / reg.scale;
    // Saturate like a PLC's REAL→INT conversion rather than wrap.
    match reg.data_type {
        T::Bool | T::Bit(_) => vec![u16::from(raw != 0.0)],
        T::U16 => vec![raw.round().clamp(0.0, 65_535.0) as u16],
        T::I16 => vec![raw.round().clamp(-32_768.0, 32_767.0) as i16 as u16],
        T::U32 => words_from_be(
            &(raw.round().clamp(0.0, u32::MAX as f64) as u32).to_be_bytes(),
            reg.order,
        ),
        T::I32 => words_from_be(
            &(raw.round().clamp(i32::MIN as f64, i32::MAX as f64) as i32).to_be_bytes(),
            reg.order,
        ),
        T::U64 => words_from_be(&(raw.round().max(0.0) as u64).to_be_bytes(), reg.order),
        T::I64 => words_from_be(&(raw.round() as i64).to_be_bytes(), reg.order),
        T::F32 => words_from_be(&(raw as f32).to_be_bytes(), reg.order),
        T::F64 => words_from_be(&raw.to_be_bytes(), reg.order),
        T::String { len } => encode_text("", len),
    }
}

/// Encode a string register.
pub fn encode_text(s: &str, len: u16) -> Vec<u16> {
    let mut b = s.as_bytes().to_vec();
    b.resize(usize::from(len.div_ceil(2)) * 2, 0);
    words_from_be(&b, Abcd)
}

/// Decode words written by a client into an engineering value for `reg`.
/// `None` if the words cannot be a value of its type.
pub fn decode(reg: &Register, words: &[u16]) -> Option<f64> {
    if words.len() != usize::from(reg.data_type.width()) {
        return None;
    }
    let be = words_from_be(
        &words
            .iter()
            .flat_map(|w| w.to_be_bytes())
            .collect::<Vec<_>>(),
        reg.order,
    );
    let bytes: Vec<u8> = be.iter().flat_map(|w| w.to_be_bytes()).collect();
    let raw = match reg.data_type {
        T::U16 => f64::from(words[0]),
        T::I16 => f64::from(words[0] as i16),
        T::U32 => f64::from(u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?)),
        T::I32 => f64::from(i32::from_be_bytes(bytes.get(..4)?.try_into().ok()?)),
        T::F32 => f64::from(f32::from_be_bytes(bytes.get(..4)?.try_into().ok()?)),
        T::F64 => f64::from_be_bytes(bytes.get(..8)?.try_into().ok()?),
        _ => return None,
    };
    raw.is_finite().then_some(raw * reg.scale)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn find(name: &str) -> &'static Register {
        register_map().iter().find(|r| r.name == name).unwrap()
    }

    #[test]
    fn known_f32_vectors() {
        let mut r = find("heater.outlet_temp").clone();
        for (order, words) in [
            (Abcd, [0x42F6, 0xE979]),
            (Cdab, [0xE979, 0x42F6]),
            (Badc, [0xF642, 0x79E9]),
            (Dcba, [0x79E9, 0xF642]),
        ] {
            r.order = order;
            assert_eq!(encode(&r, 123.456), words, "{order:?}");
            assert!((decode(&r, &words).unwrap() - 123.456).abs() < 1e-4);
        }
    }

    #[test]
    fn map_has_no_overlapping_words_except_bits_of_the_status_word() {
        let mut used = std::collections::HashMap::new();
        for r in register_map() {
            if matches!(r.data_type, T::Bit(_)) {
                continue;
            }
            for a in r.address..r.address + r.data_type.width() {
                if let Some(other) = used.insert((r.area, a), r.name) {
                    panic!("{} overlaps {other} at {a}", r.name);
                }
            }
        }
        let names: std::collections::HashSet<_> = register_map().iter().map(|r| r.name).collect();
        assert_eq!(names.len(), register_map().len(), "unique names");
    }

    #[test]
    fn scaled_integers_saturate_and_round() {
        let r = find("column.top_pressure");
        assert_eq!(encode(r, 1.5), vec![1500]);
        assert_eq!(encode(r, -1.0), vec![0]);
        assert_eq!(encode(find("ambient.temp"), -3.25), vec![(-33i16) as u16]);
        assert_eq!(encode_text("CDU-1", 8), vec![0x4344, 0x552D, 0x3100, 0]);
    }
}
