//! OPC UA variants ⇄ our values.
//!
//! Scalars map to their natural [`Value`]; arrays of scalars are stored as
//! JSON text (`[1.5,2,3]`, nested by dimension for matrices), so a node
//! such as `NamespaceArray` keeps its content. Structures (extension
//! objects such as `ServerStatus`) have no representation here: they are
//! refused with their type named, never stored as Good without a value.

use opcua::types::{ByteString, Variant};

use crate::sample::Value;

/// Why a variant cannot be a tag value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unsupported(pub String);

/// OPC UA variant → our value.
pub fn variant_to_value(v: &Variant) -> Result<Value, Unsupported> {
    if let Variant::Array(a) = v {
        let items: Vec<serde_json::Value> = a
            .values
            .iter()
            .map(|x| scalar(x).map(json))
            .collect::<Result<_, _>>()
            .map_err(|e| Unsupported(format!("an array of {}", e.0)))?;
        let shaped = match a.dimensions.as_deref() {
            Some(dims) if dims.len() > 1 => nest(&items, dims),
            _ => serde_json::Value::Array(items),
        };
        return Ok(Value::String(shaped.to_string()));
    }
    scalar(v)
}

fn scalar(v: &Variant) -> Result<Value, Unsupported> {
    Ok(match v {
        Variant::Boolean(b) => Value::Bool(*b),
        Variant::SByte(x) => Value::I64(i64::from(*x)),
        Variant::Int16(x) => Value::I64(i64::from(*x)),
        Variant::Int32(x) => Value::I64(i64::from(*x)),
        Variant::Int64(x) => Value::I64(*x),
        Variant::Byte(x) => Value::U64(u64::from(*x)),
        Variant::UInt16(x) => Value::U64(u64::from(*x)),
        Variant::UInt32(x) => Value::U64(u64::from(*x)),
        Variant::UInt64(x) => Value::U64(*x),
        Variant::Float(x) => Value::F64(f64::from(*x)),
        Variant::Double(x) => Value::F64(*x),
        Variant::String(s) => Value::String(s.as_ref().to_owned()),
        Variant::LocalizedText(t) => Value::String(t.text.as_ref().to_owned()),
        Variant::DateTime(d) => Value::String(d.as_chrono().to_rfc3339()),
        Variant::Guid(g) => Value::String(g.to_string()),
        Variant::StatusCode(s) => Value::String(s.sub_code().name().to_owned()),
        Variant::NodeId(n) => Value::String(n.to_string()),
        Variant::QualifiedName(q) => Value::String(q.name.as_ref().to_owned()),
        Variant::ByteString(b) => Value::String(base64(b)),
        Variant::Empty => return Err(Unsupported("no value (an empty variant)".into())),
        Variant::ExtensionObject(o) => {
            return Err(Unsupported(format!(
                "a structure ({}), which cannot be stored as a tag value; read its fields as separate tags",
                o.type_name().unwrap_or("unknown type")
            )));
        }
        other => {
            return Err(Unsupported(format!(
                "a value of type {:?}",
                other.scalar_type_id()
            )));
        }
    })
}

fn base64(b: &ByteString) -> String {
    if b.is_null() {
        String::new()
    } else {
        b.as_base64()
    }
}

fn json(v: Value) -> serde_json::Value {
    match v {
        Value::Bool(b) => b.into(),
        Value::I64(x) => x.into(),
        Value::U64(x) => x.into(),
        // NaN and infinities have no JSON number: null.
        Value::F64(x) => {
            serde_json::Number::from_f64(x).map_or(serde_json::Value::Null, Into::into)
        }
        Value::String(s) => s.into(),
    }
}

/// A flat array in row-major order shaped by `dims` (highest rank first).
fn nest(items: &[serde_json::Value], dims: &[u32]) -> serde_json::Value {
    match dims.split_first() {
        None => serde_json::Value::Null,
        Some((_, [])) => serde_json::Value::Array(items.to_vec()),
        Some((&n, rest)) => {
            let inner: usize = rest.iter().map(|&d| d as usize).product::<usize>().max(1);
            serde_json::Value::Array(
                items
                    .chunks(inner)
                    .take(n as usize)
                    .map(|c| nest(c, rest))
                    .collect(),
            )
        }
    }
}

/// Our value → a variant of the same type as `like` (the node's current
/// value), so a write never changes a node's DataType.
pub fn coerce(value: &Value, like: &Variant) -> Result<Variant, String> {
    let f = value.as_f64();
    let int = |lo: f64, hi: f64| -> Result<i128, String> {
        let x = f.ok_or("a number is needed")?;
        if !x.is_finite() || x < lo || x > hi {
            return Err(format!("{x} does not fit the node's type"));
        }
        Ok(x.round() as i128)
    };
    Ok(match like {
        Variant::Boolean(_) => Variant::Boolean(match value {
            Value::Bool(b) => *b,
            _ => f.ok_or("a boolean is needed")? != 0.0,
        }),
        Variant::SByte(_) => Variant::SByte(int(-128.0, 127.0)? as i8),
        Variant::Byte(_) => Variant::Byte(int(0.0, 255.0)? as u8),
        Variant::Int16(_) => Variant::Int16(int(-32768.0, 32767.0)? as i16),
        Variant::UInt16(_) => Variant::UInt16(int(0.0, 65535.0)? as u16),
        Variant::Int32(_) => Variant::Int32(int(i32::MIN as f64, i32::MAX as f64)? as i32),
        Variant::UInt32(_) => Variant::UInt32(int(0.0, u32::MAX as f64)? as u32),
        Variant::Int64(_) => match value {
            Value::I64(v) => Variant::Int64(*v),
            _ => Variant::Int64(int(i64::MIN as f64, i64::MAX as f64)? as i64),
        },
        Variant::UInt64(_) => match value {
            Value::U64(v) => Variant::UInt64(*v),
            _ => Variant::UInt64(int(0.0, u64::MAX as f64)? as u64),
        },
        Variant::Float(_) => Variant::Float(f.ok_or("a number is needed")? as f32),
        Variant::Double(_) => Variant::Double(f.ok_or("a number is needed")?),
        Variant::String(_) => Variant::String(value.to_string().trim_matches('"').into()),
        other => {
            return Err(format!(
                "writing to a node of type {:?} is not supported",
                other.type_id()
            ));
        }
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use opcua::types::{Array, VariantScalarTypeId};

    #[test]
    fn variants_map_to_values() {
        assert_eq!(variant_to_value(&Variant::Int32(-5)), Ok(Value::I64(-5)));
        assert_eq!(
            variant_to_value(&Variant::UInt64(u64::MAX)),
            Ok(Value::U64(u64::MAX))
        );
        assert_eq!(variant_to_value(&Variant::Float(1.5)), Ok(Value::F64(1.5)));
        assert_eq!(
            variant_to_value(&Variant::Boolean(true)),
            Ok(Value::Bool(true))
        );
        assert_eq!(
            variant_to_value(&Variant::String("x".into())),
            Ok(Value::String("x".into()))
        );
        assert!(variant_to_value(&Variant::Empty).is_err());
    }

    #[test]
    fn arrays_become_json_text_and_matrices_nest() {
        let a = Array::new(
            VariantScalarTypeId::String,
            vec![
                Variant::from("http://opcfoundation.org/UA/"),
                Variant::from("urn:x"),
            ],
        )
        .unwrap();
        assert_eq!(
            variant_to_value(&Variant::Array(Box::new(a))),
            Ok(Value::String(
                r#"["http://opcfoundation.org/UA/","urn:x"]"#.into()
            ))
        );
        let m = Array::new_multi(
            VariantScalarTypeId::Double,
            (1..=6)
                .map(|i| Variant::Double(f64::from(i)))
                .collect::<Vec<_>>(),
            vec![2, 3],
        )
        .unwrap();
        assert_eq!(
            variant_to_value(&Variant::Array(Box::new(m))),
            Ok(Value::String("[[1.0,2.0,3.0],[4.0,5.0,6.0]]".into()))
        );
        let nan = Array::new(VariantScalarTypeId::Double, vec![Variant::Double(f64::NAN)]).unwrap();
        assert_eq!(
            variant_to_value(&Variant::Array(Box::new(nan))),
            Ok(Value::String("[null]".into()))
        );
    }

    #[test]
    fn structures_are_refused_with_their_type_named() {
        let status = opcua::types::ServerStatusDataType::default();
        let v = Variant::from(opcua::types::ExtensionObject::from_message(status));
        let e = variant_to_value(&v).unwrap_err();
        assert!(e.0.contains("structure"), "{e}");
        assert!(e.0.contains("ServerStatus"), "{e}");
    }

    #[test]
    fn writes_keep_the_node_type_and_refuse_what_does_not_fit() {
        assert!(matches!(
            coerce(&Value::F64(7.6), &Variant::Int16(0)),
            Ok(Variant::Int16(8))
        ));
        assert!(
            matches!(coerce(&Value::F64(2.5), &Variant::Float(0.0)), Ok(Variant::Float(x)) if x == 2.5)
        );
        assert!(matches!(
            coerce(&Value::I64(1), &Variant::Boolean(false)),
            Ok(Variant::Boolean(true))
        ));
        assert!(matches!(
            coerce(&Value::U64(u64::MAX), &Variant::UInt64(0)),
            Ok(Variant::UInt64(u64::MAX))
        ));
        assert!(coerce(&Value::F64(70_000.0), &Variant::Int16(0)).is_err());
        assert!(coerce(&Value::F64(-1.0), &Variant::Byte(0)).is_err());
        assert!(coerce(&Value::F64(f64::NAN), &Variant::Int32(0)).is_err());
        assert!(coerce(&Value::String("a".into()), &Variant::Double(0.0)).is_err());
    }
}
