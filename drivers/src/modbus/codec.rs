//! Register words ⇄ typed values, for every [`DataType`] and [`WordOrder`].
//!
//! Conventions (the Modbus application protocol's, and what PLC manuals call
//! them):
//! - `ABCD`: big-endian words in big-endian order — the standard.
//! - `CDAB`: words swapped (low word first), bytes within a word big-endian.
//!   Common on Schneider/Siemens/AB "little-endian word" settings.
//! - `BADC`: bytes swapped within each word, words in order.
//! - `DCBA`: fully little-endian.
//!
//! For 64-bit values the word swap reverses all four words (so `CDAB` of a
//! 64-bit value is `GH EF CD AB`), which is how devices that "swap words"
//! actually lay out doubles.
//!
//! Strings hold two ASCII characters per register, high byte first (`BADC`
//! and `DCBA`, the byte-swapping orders: low byte first; registers are never
//! reordered); trailing NULs and spaces are trimmed. Bit N of a register
//! counts from the LSB.

use firmware_config::{DataType, WordOrder};

use crate::sample::Value;

/// Why a value cannot be decoded or encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("expected {expected} register(s), got {got}")]
    Length { expected: usize, got: usize },
    #[error("string is not valid UTF-8")]
    Utf8,
    #[error("value {value} does not fit in {ty}")]
    Range { value: String, ty: &'static str },
    #[error("cannot write a {value} to a {ty} tag")]
    Type {
        value: &'static str,
        ty: &'static str,
    },
}

/// Reorder raw words as read from the device into big-endian `ABCD` order
/// (and back: the permutation is its own inverse).
pub fn to_big_endian(words: &[u16], order: WordOrder) -> Vec<u16> {
    let mut w: Vec<u16> = words.to_vec();
    if order.swaps_words() {
        w.reverse();
    }
    if order.swaps_bytes() {
        for x in &mut w {
            *x = x.swap_bytes();
        }
    }
    w
}

fn be_bytes<const N: usize>(words: &[u16], order: WordOrder) -> Result<[u8; N], CodecError> {
    if words.len() * 2 != N {
        return Err(CodecError::Length {
            expected: N / 2,
            got: words.len(),
        });
    }
    let mut out = [0u8; N];
    for (i, w) in to_big_endian(words, order).iter().enumerate() {
        out[2 * i..2 * i + 2].copy_from_slice(&w.to_be_bytes());
    }
    Ok(out)
}

/// Decode the raw value of a register tag (before scale and offset).
/// `words` must be exactly `data_type.width()` registers.
pub fn decode(words: &[u16], data_type: DataType, order: WordOrder) -> Result<Value, CodecError> {
    let one = || -> Result<u16, CodecError> {
        match words {
            [w] => Ok(*w),
            _ => Err(CodecError::Length {
                expected: 1,
                got: words.len(),
            }),
        }
    };
    Ok(match data_type {
        DataType::Bool => Value::Bool(one()? != 0),
        DataType::Bit(n) => Value::Bool(one()? >> (n & 15) & 1 == 1),
        DataType::U16 => Value::U64(u64::from(one()?)),
        DataType::I16 => Value::I64(i64::from(one()? as i16)),
        DataType::U32 => Value::U64(u64::from(u32::from_be_bytes(be_bytes(words, order)?))),
        DataType::I32 => Value::I64(i64::from(i32::from_be_bytes(be_bytes(words, order)?))),
        DataType::F32 => Value::F64(f64::from(f32::from_be_bytes(be_bytes(words, order)?))),
        DataType::U64 => Value::U64(u64::from_be_bytes(be_bytes(words, order)?)),
        DataType::I64 => Value::I64(i64::from_be_bytes(be_bytes(words, order)?)),
        DataType::F64 => Value::F64(f64::from_be_bytes(be_bytes(words, order)?)),
        DataType::String { len } => {
            let expected = usize::from(len.div_ceil(2));
            if words.len() != expected {
                return Err(CodecError::Length {
                    expected,
                    got: words.len(),
                });
            }
            let mut bytes: Vec<u8> = words
                .iter()
                .flat_map(|w| string_word_bytes(*w, order))
                .collect();
            bytes.truncate(usize::from(len));
            let s = std::str::from_utf8(&bytes).map_err(|_| CodecError::Utf8)?;
            Value::String(s.trim_end_matches(['\0', ' ']).to_owned())
        }
    })
}

/// Apply a tag's linear scaling: `raw * scale + offset`. Identity scaling
/// keeps integers exact; anything else yields `F64`.
pub fn scale(raw: Value, scale: f64, offset: f64) -> Value {
    if scale == 1.0 && offset == 0.0 {
        return raw;
    }
    match raw.as_f64() {
        Some(v) if !matches!(raw, Value::Bool(_)) => Value::F64(v * scale + offset),
        _ => raw,
    }
}

/// Undo [`scale`] for a write: engineering value → raw value.
pub fn unscale(eng: f64, scale: f64, offset: f64) -> f64 {
    if scale == 0.0 {
        eng
    } else {
        (eng - offset) / scale
    }
}

fn from_be<const N: usize>(bytes: [u8; N], order: WordOrder) -> Vec<u16> {
    let words: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect();
    to_big_endian(&words, order)
}

fn integer(value: &Value, ty: DataType) -> Result<i128, CodecError> {
    match value {
        Value::Bool(b) => Ok(i128::from(*b)),
        Value::I64(v) => Ok(i128::from(*v)),
        Value::U64(v) => Ok(i128::from(*v)),
        Value::F64(v) if v.is_finite() => Ok(v.round() as i128),
        Value::F64(_) => Err(CodecError::Range {
            value: value.to_string(),
            ty: ty.name(),
        }),
        Value::String(_) => Err(CodecError::Type {
            value: "string",
            ty: ty.name(),
        }),
    }
}

fn fit<T: TryFrom<i128>>(v: i128, ty: DataType) -> Result<T, CodecError> {
    T::try_from(v).map_err(|_| CodecError::Range {
        value: v.to_string(),
        ty: ty.name(),
    })
}

/// Encode a raw value (after [`unscale`]) into registers. `Bit(n)` and
/// `Bool` in a register are not encodable on their own (a bit write needs a
/// read-modify-write, which is not atomic on Modbus) and are rejected.
pub fn encode(
    value: &Value,
    data_type: DataType,
    order: WordOrder,
) -> Result<Vec<u16>, CodecError> {
    let ty = data_type;
    Ok(match data_type {
        DataType::Bool | DataType::Bit(_) => {
            return Err(CodecError::Type {
                value: "bit",
                ty: "register bit (not atomic over Modbus; write the whole register)",
            });
        }
        DataType::U16 => vec![fit::<u16>(integer(value, ty)?, ty)?],
        DataType::I16 => vec![fit::<i16>(integer(value, ty)?, ty)? as u16],
        DataType::U32 => from_be(fit::<u32>(integer(value, ty)?, ty)?.to_be_bytes(), order),
        DataType::I32 => from_be(fit::<i32>(integer(value, ty)?, ty)?.to_be_bytes(), order),
        DataType::U64 => from_be(fit::<u64>(integer(value, ty)?, ty)?.to_be_bytes(), order),
        DataType::I64 => from_be(fit::<i64>(integer(value, ty)?, ty)?.to_be_bytes(), order),
        DataType::F32 | DataType::F64 => {
            let v = value.as_f64().ok_or(CodecError::Type {
                value: "string",
                ty: ty.name(),
            })?;
            if data_type == DataType::F32 {
                from_be((v as f32).to_be_bytes(), order)
            } else {
                from_be(v.to_be_bytes(), order)
            }
        }
        DataType::String { len } => {
            let Value::String(s) = value else {
                return Err(CodecError::Type {
                    value: "number",
                    ty: "string",
                });
            };
            if s.len() > usize::from(len) {
                return Err(CodecError::Range {
                    value: format!("{} bytes", s.len()),
                    ty: "string of this length",
                });
            }
            let mut bytes = s.as_bytes().to_vec();
            bytes.resize(usize::from(len.div_ceil(2)) * 2, 0);
            bytes
                .chunks_exact(2)
                .map(|c| string_word_bytes(u16::from_be_bytes([c[0], c[1]]), order))
                .map(u16::from_be_bytes)
                .collect()
        }
    })
}

/// The two characters a string register holds, in reading order. Only the
/// byte order within a register applies to strings (a byte swap is its own
/// inverse, so this also encodes).
fn string_word_bytes(w: u16, order: WordOrder) -> [u8; 2] {
    if order.swaps_bytes() {
        w.to_le_bytes()
    } else {
        w.to_be_bytes()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use WordOrder::*;

    const ORDERS: [WordOrder; 4] = [Abcd, Cdab, Badc, Dcba];

    #[test]
    fn f32_known_vectors_in_all_orders() {
        // 123.456f32 = 0x42F6E979.
        let cases = [
            (Abcd, [0x42F6, 0xE979]),
            (Cdab, [0xE979, 0x42F6]),
            (Badc, [0xF642, 0x79E9]),
            (Dcba, [0x79E9, 0xF642]),
        ];
        for (order, words) in cases {
            let Value::F64(v) = decode(&words, DataType::F32, order).unwrap() else {
                panic!()
            };
            assert_eq!(v as f32, 123.456f32, "{order:?}");
            assert_eq!(
                encode(&Value::F64(123.456), DataType::F32, order).unwrap(),
                words,
                "{order:?}"
            );
        }
    }

    #[test]
    fn integer_known_vectors() {
        // 0x12345678 = 305419896.
        assert_eq!(
            decode(&[0x1234, 0x5678], DataType::U32, Abcd).unwrap(),
            Value::U64(0x1234_5678)
        );
        assert_eq!(
            decode(&[0x5678, 0x1234], DataType::U32, Cdab).unwrap(),
            Value::U64(0x1234_5678)
        );
        assert_eq!(
            decode(&[0x3412, 0x7856], DataType::U32, Badc).unwrap(),
            Value::U64(0x1234_5678)
        );
        assert_eq!(
            decode(&[0x7856, 0x3412], DataType::U32, Dcba).unwrap(),
            Value::U64(0x1234_5678)
        );
        // -2 as i32 = 0xFFFFFFFE.
        assert_eq!(
            decode(&[0xFFFF, 0xFFFE], DataType::I32, Abcd).unwrap(),
            Value::I64(-2)
        );
        assert_eq!(
            decode(&[0xFFFE, 0xFFFF], DataType::I32, Cdab).unwrap(),
            Value::I64(-2)
        );
        // 0x0102030405060708.
        let be = [0x0102, 0x0304, 0x0506, 0x0708];
        assert_eq!(
            decode(&be, DataType::U64, Abcd).unwrap(),
            Value::U64(0x0102_0304_0506_0708)
        );
        assert_eq!(
            decode(&[0x0708, 0x0506, 0x0304, 0x0102], DataType::U64, Cdab).unwrap(),
            Value::U64(0x0102_0304_0506_0708)
        );
        assert_eq!(
            decode(&[0x0201, 0x0403, 0x0605, 0x0807], DataType::U64, Badc).unwrap(),
            Value::U64(0x0102_0304_0506_0708)
        );
        assert_eq!(
            decode(&[0x0807, 0x0605, 0x0403, 0x0201], DataType::U64, Dcba).unwrap(),
            Value::U64(0x0102_0304_0506_0708)
        );
        assert_eq!(
            decode(&[0xFFFF; 4], DataType::I64, Abcd).unwrap(),
            Value::I64(-1)
        );
        assert_eq!(
            decode(&[0xFFFF; 4], DataType::U64, Abcd).unwrap(),
            Value::U64(u64::MAX)
        );
        assert_eq!(
            decode(&[0x8000], DataType::I16, Abcd).unwrap(),
            Value::I64(-32768)
        );
        assert_eq!(
            decode(&[0x8000], DataType::U16, Abcd).unwrap(),
            Value::U64(32768)
        );
    }

    #[test]
    fn f64_known_vector() {
        // 1.0 = 0x3FF0000000000000.
        assert_eq!(
            decode(&[0x3FF0, 0, 0, 0], DataType::F64, Abcd).unwrap(),
            Value::F64(1.0)
        );
        assert_eq!(
            decode(&[0, 0, 0, 0x3FF0], DataType::F64, Cdab).unwrap(),
            Value::F64(1.0)
        );
        assert_eq!(
            decode(&[0xF03F, 0, 0, 0], DataType::F64, Badc).unwrap(),
            Value::F64(1.0)
        );
        assert_eq!(
            decode(&[0, 0, 0, 0xF03F], DataType::F64, Dcba).unwrap(),
            Value::F64(1.0)
        );
    }

    #[test]
    fn bits_bools_and_strings() {
        assert_eq!(
            decode(&[0b100], DataType::Bit(2), Abcd).unwrap(),
            Value::Bool(true)
        );
        assert_eq!(
            decode(&[0b100], DataType::Bit(1), Abcd).unwrap(),
            Value::Bool(false)
        );
        assert_eq!(
            decode(&[0x8000], DataType::Bit(15), Abcd).unwrap(),
            Value::Bool(true)
        );
        assert_eq!(
            decode(&[7], DataType::Bool, Abcd).unwrap(),
            Value::Bool(true)
        );
        // "CDU-1" in 3 registers, NUL padded.
        let w = [0x4344, 0x552D, 0x3100];
        assert_eq!(
            decode(&w, DataType::String { len: 6 }, Abcd).unwrap(),
            Value::String("CDU-1".into())
        );
        assert_eq!(
            decode(&w, DataType::String { len: 5 }, Abcd).unwrap(),
            Value::String("CDU-1".into())
        );
        assert_eq!(
            encode(
                &Value::String("CDU-1".into()),
                DataType::String { len: 6 },
                Abcd
            )
            .unwrap(),
            w
        );
        assert_eq!(
            decode(&[0xFFFE], DataType::String { len: 2 }, Abcd),
            Err(CodecError::Utf8)
        );
    }

    #[test]
    fn strings_follow_the_byte_order_but_never_swap_registers() {
        // "CDU-1": high byte first for ABCD/CDAB, low byte first for BADC/DCBA.
        let be = [0x4344, 0x552D, 0x3100];
        let le = [0x4443, 0x2D55, 0x0031];
        let ty = DataType::String { len: 6 };
        for (order, words) in [(Abcd, be), (Cdab, be), (Badc, le), (Dcba, le)] {
            assert_eq!(
                decode(&words, ty, order).unwrap(),
                Value::String("CDU-1".into()),
                "{order:?}"
            );
            assert_eq!(
                encode(&Value::String("CDU-1".into()), ty, order).unwrap(),
                words,
                "{order:?}"
            );
        }
        // An odd length ignores the unused byte, wherever it sits.
        assert_eq!(
            decode(&[0x4241, 0x4443, 0x2145], DataType::String { len: 5 }, Badc).unwrap(),
            Value::String("ABCDE".into())
        );
    }

    #[test]
    fn wrong_lengths_are_errors_not_panics() {
        assert!(matches!(
            decode(&[1], DataType::F32, Abcd),
            Err(CodecError::Length { .. })
        ));
        assert!(matches!(
            decode(&[], DataType::U16, Abcd),
            Err(CodecError::Length { .. })
        ));
        assert!(matches!(
            decode(&[1, 2, 3], DataType::F64, Abcd),
            Err(CodecError::Length { .. })
        ));
    }

    #[test]
    fn encode_then_decode_round_trips_every_type_and_order() {
        let cases: [(DataType, Value); 8] = [
            (DataType::U16, Value::U64(65535)),
            (DataType::I16, Value::I64(-1234)),
            (DataType::U32, Value::U64(4_000_000_000)),
            (DataType::I32, Value::I64(-2_000_000_000)),
            (DataType::U64, Value::U64(u64::MAX - 5)),
            (DataType::I64, Value::I64(i64::MIN + 7)),
            (DataType::F32, Value::F64(f64::from(-0.15625f32))),
            (DataType::F64, Value::F64(std::f64::consts::PI)),
        ];
        for order in ORDERS {
            for (ty, v) in &cases {
                let words = encode(v, *ty, order).unwrap();
                assert_eq!(words.len(), usize::from(ty.width()));
                assert_eq!(&decode(&words, *ty, order).unwrap(), v, "{ty:?} {order:?}");
            }
        }
    }

    #[test]
    fn encode_rejects_out_of_range_and_wrong_types() {
        assert!(matches!(
            encode(&Value::I64(70000), DataType::U16, Abcd),
            Err(CodecError::Range { .. })
        ));
        assert!(matches!(
            encode(&Value::I64(-1), DataType::U32, Abcd),
            Err(CodecError::Range { .. })
        ));
        assert!(matches!(
            encode(&Value::String("x".into()), DataType::F32, Abcd),
            Err(CodecError::Type { .. })
        ));
        assert!(matches!(
            encode(&Value::F64(f64::NAN), DataType::I16, Abcd),
            Err(CodecError::Range { .. })
        ));
        assert!(
            encode(
                &Value::String("toolong".into()),
                DataType::String { len: 4 },
                Abcd
            )
            .is_err()
        );
    }

    #[test]
    fn scaling() {
        assert_eq!(scale(Value::U64(1234), 0.1, 0.0), Value::F64(123.4));
        assert_eq!(scale(Value::I64(-5), 1.0, 0.0), Value::I64(-5));
        assert_eq!(scale(Value::Bool(true), 2.0, 1.0), Value::Bool(true));
        assert!((unscale(123.4, 0.1, 0.0) - 1234.0).abs() < 1e-9);
    }
}
