//! Packet bodies: JSON exactly as Python `json.dumps(body, separators=(',', ':'))`
//! (ensure_ascii, insertion order), msgpack through `rmp-serde`.
//!
//! An empty mapping is sent as zero bytes, and zero bytes decode to an empty
//! mapping (spec §3).

use std::io;

use serde::Serialize;
use serde_json::ser::{CharEscape, Formatter};
use serde_json::{Map, Value};

use super::{BodyKind, PacketError};

/// A body mapping (JSON object, keys in insertion order).
pub type BodyMap = Map<String, Value>;

/// Python `json.dumps(separators=(',',':'), ensure_ascii=True)`; empty map -> zero bytes.
pub fn encode_json(map: &BodyMap) -> Vec<u8> {
    if map.is_empty() {
        return Vec::new();
    }
    // Writing into a Vec cannot fail and a Map<String, Value> always serializes.
    to_json(map).unwrap_or_default()
}

/// `value` written as [`encode_json`] writes a mapping (Python's `json.dumps` with
/// `separators=(',',':')`, `ensure_ascii=True`), serialised straight from its type: a large
/// body need not be built as a [`Value`] tree first. An error when it does not serialise
/// (e.g. a map with keys that are not strings).
pub fn to_json<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = Vec::new();
    value.serialize(&mut serde_json::Serializer::with_formatter(
        &mut out,
        PyFormatter,
    ))?;
    Ok(out)
}

/// Zero bytes -> empty map; otherwise must be a UTF-8 JSON object.
pub fn decode_json(bytes: &[u8]) -> Result<BodyMap, PacketError> {
    if bytes.is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(PacketError::BadBody("not a JSON object".into())),
        Err(e) => Err(PacketError::BadBody(e.to_string())),
    }
}

/// msgpack (`msgpack.dumps` of the mapping); empty map -> zero bytes.
pub fn encode_msgpack(map: &BodyMap) -> Result<Vec<u8>, PacketError> {
    if map.is_empty() {
        return Ok(Vec::new());
    }
    rmp_serde::to_vec(map).map_err(|e| PacketError::BadBody(e.to_string()))
}

/// Zero bytes -> empty map; otherwise must be a msgpack map with string keys.
pub fn decode_msgpack(bytes: &[u8]) -> Result<BodyMap, PacketError> {
    if bytes.is_empty() {
        return Ok(Map::new());
    }
    rmp_serde::from_slice::<BodyMap>(bytes).map_err(|e| PacketError::BadBody(e.to_string()))
}

/// Encodes a mapping body of kind `bk` (json or msgpack).
pub fn encode(bk: BodyKind, map: &BodyMap) -> Result<Vec<u8>, PacketError> {
    match bk {
        BodyKind::Json => Ok(encode_json(map)),
        BodyKind::Msgpack => encode_msgpack(map),
        BodyKind::Nada | BodyKind::Raw | BodyKind::Unknown => Err(PacketError::UnsupportedBody),
    }
}

/// Decodes a mapping body of kind `bk` (json or msgpack; nada gives an empty map
/// whatever the bytes, like the reference).
pub fn decode(bk: BodyKind, bytes: &[u8]) -> Result<BodyMap, PacketError> {
    match bk {
        BodyKind::Json => decode_json(bytes),
        BodyKind::Msgpack => decode_msgpack(bytes),
        BodyKind::Nada => Ok(Map::new()),
        BodyKind::Raw | BodyKind::Unknown => Err(PacketError::UnsupportedBody),
    }
}

/// The length of the longest prefix of `bytes` that is printable ASCII (`' '..='~'`), found
/// a block of 64 at a time without an early exit (so the compiler vectorizes it: a large
/// string body is mostly such text).
fn printable_prefix(bytes: &[u8]) -> usize {
    const BLOCK: usize = 64;
    let blocks = bytes.chunks_exact(BLOCK);
    let mut plain = 0;
    for block in blocks {
        let printable = block
            .iter()
            .fold(true, |all, &b| all & (b' '..=b'~').contains(&b));
        if !printable {
            break;
        }
        plain += BLOCK;
    }
    let tail = bytes.get(plain..).unwrap_or_default();
    plain
        + tail
            .iter()
            .take_while(|b| (b' '..=b'~').contains(b))
            .count()
}

/// serde_json formatter reproducing Python's `json.dumps` with
/// `separators=(',', ':')` and `ensure_ascii=True`.
struct PyFormatter;

impl Formatter for PyFormatter {
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        // serde_json escapes `"`, `\` and C0 controls itself; everything else
        // outside printable ASCII (DEL and non-ASCII) becomes \uXXXX here.
        let plain = printable_prefix(fragment.as_bytes());
        writer.write_all(fragment.as_bytes().get(..plain).unwrap_or_default())?;
        let fragment = fragment.get(plain..).unwrap_or_default();
        let mut plain_from = 0;
        for (at, ch) in fragment.char_indices() {
            if (' '..='~').contains(&ch) {
                continue;
            }
            writer.write_all(fragment.as_bytes().get(plain_from..at).unwrap_or_default())?;
            let mut units = [0u16; 2];
            for unit in ch.encode_utf16(&mut units) {
                write_u_escape(writer, *unit)?;
            }
            plain_from = at + ch.len_utf8();
        }
        writer.write_all(fragment.as_bytes().get(plain_from..).unwrap_or_default())
    }

    fn write_char_escape<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        escape: CharEscape,
    ) -> io::Result<()> {
        let short: &[u8] = match escape {
            CharEscape::Quote => b"\\\"",
            CharEscape::ReverseSolidus => b"\\\\",
            CharEscape::Solidus => b"/",
            CharEscape::Backspace => b"\\b",
            CharEscape::FormFeed => b"\\f",
            CharEscape::LineFeed => b"\\n",
            CharEscape::CarriageReturn => b"\\r",
            CharEscape::Tab => b"\\t",
            CharEscape::AsciiControl(byte) => return write_u_escape(writer, byte.into()),
        };
        writer.write_all(short)
    }

    fn write_f64<W: ?Sized + io::Write>(&mut self, writer: &mut W, value: f64) -> io::Result<()> {
        let mut out = Vec::with_capacity(24);
        push_py_float(&mut out, value);
        writer.write_all(&out)
    }

    fn write_f32<W: ?Sized + io::Write>(&mut self, writer: &mut W, value: f32) -> io::Result<()> {
        self.write_f64(writer, value.into())
    }
}

fn write_u_escape<W: ?Sized + io::Write>(writer: &mut W, unit: u16) -> io::Result<()> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let nib = |shift: u16| HEX[usize::from((unit >> shift) & 0xf)];
    writer.write_all(&[b'\\', b'u', nib(12), nib(8), nib(4), nib(0)])
}

/// Appends Python's `repr(float)`: the shortest round-tripping digits
/// (closest to the value, ties to even: serde_json's ryu), in fixed notation
/// when the decimal point position is in -3..=16 (with a trailing `.0` for
/// integral values), else `d.ddde+XX`. Non-finite values as Python's json
/// module writes them (`NaN`, `Infinity`, `-Infinity`).
pub(crate) fn push_py_float(out: &mut Vec<u8>, value: f64) {
    let Some(number) = serde_json::Number::from_f64(value) else {
        out.extend_from_slice(match value {
            v if v > 0.0 => b"Infinity".as_slice(),
            v if v < 0.0 => b"-Infinity".as_slice(),
            _ => b"NaN".as_slice(),
        });
        return;
    };
    // ryu's layout varies ("1e16", "1.5e-7", "0.0001", "123.0"): reduce it to
    // significant digits and the decimal point position (value = 0.DIGITS x 10^decpt).
    let text = number.to_string();
    let (negative, text) = match text.strip_prefix('-') {
        Some(t) => (true, t),
        None => (false, text.as_str()),
    };
    let (mantissa, exp) = match text.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i32>().unwrap_or(0)),
        None => (text, 0),
    };
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all: Vec<u8> = int_part.bytes().chain(frac_part.bytes()).collect();
    let lead = all.iter().take_while(|&&d| d == b'0').count();
    let digits = all.get(lead..).unwrap_or_default();
    let trail = digits.iter().rev().take_while(|&&d| d == b'0').count();
    let digits = digits.get(..digits.len() - trail).unwrap_or_default();
    if negative {
        out.push(b'-');
    }
    if digits.is_empty() {
        out.extend_from_slice(b"0.0");
        return;
    }
    let decpt = int_part.len() as i32 - lead as i32 + exp;
    let zeros =
        |out: &mut Vec<u8>, n: i32| out.extend(std::iter::repeat_n(b'0', n.max(0) as usize));
    if decpt <= -4 || decpt > 16 {
        let (first, rest) = digits.split_at(1);
        out.extend_from_slice(first);
        if !rest.is_empty() {
            out.push(b'.');
            out.extend_from_slice(rest);
        }
        let e = decpt - 1;
        out.extend_from_slice(
            format!("e{}{:02}", if e < 0 { '-' } else { '+' }, e.unsigned_abs()).as_bytes(),
        );
    } else if decpt <= 0 {
        out.extend_from_slice(b"0.");
        zeros(out, -decpt);
        out.extend_from_slice(digits);
    } else if digits.len() as i32 <= decpt {
        out.extend_from_slice(digits);
        zeros(out, decpt - digits.len() as i32);
        out.extend_from_slice(b".0");
    } else {
        let (int, frac) = digits.split_at(decpt as usize);
        out.extend_from_slice(int);
        out.push(b'.');
        out.extend_from_slice(frac);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> BodyMap {
        match v {
            Value::Object(m) => m,
            _ => unreachable!("test maps only"),
        }
    }

    fn py(v: f64) -> String {
        let mut out = Vec::new();
        push_py_float(&mut out, v);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn floats_match_python_repr() {
        // Expected strings are Python 3 repr() outputs.
        let cases = [
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1.0, "1.0"),
            (1.5, "1.5"),
            (0.1, "0.1"),
            (100.0, "100.0"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (123456789012345680.0, "1.2345678901234568e+17"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.25e-7, "1.25e-07"),
            (-2.5e100, "-2.5e+100"),
            (5e-324, "5e-324"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (0.3333333333333333, "0.3333333333333333"),
            // Exactly ...037.3125: a tie between two 17-digit reprs; Python rounds to even.
            (f64::from_bits(0x42b4_8d39_e307_0550), "22596794124037.312"),
            (f64::NAN, "NaN"),
            (f64::NEG_INFINITY, "-Infinity"),
        ];
        for (v, want) in cases {
            assert_eq!(py(v), want, "{v:e}");
        }
    }

    #[test]
    fn json_matches_python_dumps() {
        // Python: json.dumps(d, separators=(',', ':'))
        let body = map(json!({
            "name": "alpha",
            "n": 5,
            "neg": -3,
            "f": 2.5,
            "list": [1, true, null, "x"],
            "esc": "q\"b\\s/\n\r\t\u{8}\u{c}\u{1}\u{7f}",
            "uni": "é€😀",
            "nested": {"z": 1, "a": {}},
        }));
        let want = r#"{"name":"alpha","n":5,"neg":-3,"f":2.5,"list":[1,true,null,"x"],"esc":"q\"b\\s/\n\r\t\b\f\u0001\u007f","uni":"\u00e9\u20ac\ud83d\ude00","nested":{"z":1,"a":{}}}"#;
        assert_eq!(String::from_utf8(encode_json(&body)).unwrap(), want);
        assert_eq!(decode_json(want.as_bytes()), Ok(body));
    }

    /// Long strings are scanned a block at a time: a character to escape anywhere in a
    /// block, at its edges or in the tail after the last whole block, is still escaped.
    #[test]
    fn long_strings_escape_what_python_escapes() {
        for at in [0, 1, 63, 64, 65, 127, 128, 200] {
            for (ch, escaped) in [
                ('\u{7f}', r"\u007f"),
                ('é', r"\u00e9"),
                ('😀', r"\ud83d\ude00"),
            ] {
                let text: String = (0..201).map(|i| if i == at { ch } else { 'x' }).collect();
                let want = format!(
                    r#"{{"s":"{}{escaped}{}"}}"#,
                    "x".repeat(at),
                    "x".repeat(200 - at)
                );
                let body = map(json!({ "s": text }));
                assert_eq!(
                    String::from_utf8(encode_json(&body)).unwrap(),
                    want,
                    "at {at}"
                );
            }
        }
        assert_eq!(printable_prefix(&[b'x'; 130]), 130);
        assert_eq!(printable_prefix(b""), 0);
    }

    #[test]
    fn a_typed_value_is_written_as_its_json_tree_would_be() {
        #[derive(Serialize)]
        struct Row<'a> {
            id: &'a str,
            seen: Option<f64>,
            n: u64,
            tags: std::collections::BTreeMap<&'a str, bool>,
        }
        let row = Row {
            id: "m\u{e9}\"1",
            seen: Some(1_765_130_000.125),
            n: 7,
            tags: [("b", true), ("a", false)].into(),
        };
        let tree = map(serde_json::to_value(&row).unwrap());
        assert_eq!(to_json(&row).unwrap(), encode_json(&tree));
        let mut bad = std::collections::BTreeMap::new();
        bad.insert(vec![1u8], 1u8);
        assert!(to_json(&bad).is_err(), "keys that are not strings");
    }

    #[test]
    fn empty_bodies_are_zero_bytes() {
        assert!(encode_json(&Map::new()).is_empty());
        assert_eq!(decode_json(b""), Ok(Map::new()));
        assert_eq!(encode_msgpack(&Map::new()), Ok(Vec::new()));
        assert_eq!(decode_msgpack(b""), Ok(Map::new()));
    }

    #[test]
    fn non_objects_are_refused() {
        assert!(matches!(decode_json(b"[1]"), Err(PacketError::BadBody(_))));
        assert!(matches!(decode_json(b"{"), Err(PacketError::BadBody(_))));
        assert!(matches!(decode_json(b"\xff"), Err(PacketError::BadBody(_))));
        assert!(matches!(
            decode_msgpack(b"\x01"),
            Err(PacketError::BadBody(_))
        ));
        assert_eq!(
            decode(BodyKind::Raw, b"x"),
            Err(PacketError::UnsupportedBody)
        );
    }

    #[test]
    fn msgpack_round_trips() {
        let body = map(json!({"a": 1, "b": "two", "c": [1.5, null]}));
        let bytes = encode(BodyKind::Msgpack, &body).unwrap();
        assert_eq!(decode(BodyKind::Msgpack, &bytes), Ok(body));
    }
}
