//! Head encoding and decoding: `raet` (text lines) and `json` heads exactly
//! as the reference `TxHead.pack` / `RxHead.parse` (spec §2).
//!
//! Field selection: `ri pl hl fg` always, in that order, then each of
//! `vn pk hk se de si ti tk dt oi sn sc ml bk ck fk fl` whose value differs
//! from the default, in that order. `pl` is 4 hex digits (raet) or a string of
//! 7 hex digits (json), `hl` 2 hex digits, `fg` 2 lowercase hex digits, other
//! integers lowercase hex (raet) or JSON numbers (json).

use super::body::push_py_float;
use super::{
    BodyKind, CoatKind, Flags, FootKind, Head, HeadKind, PacketError, PacketKind, TransactionKind,
    MAX_HEAD_SIZE,
};

const RAET_PREFIX: &[u8] = b"ri RAET\n";
const RAET_END: &[u8] = b"\n\n";
const JSON_PREFIX: &[u8] = b"{\"ri\":\"RAET\",";
const JSON_END: &[u8] = b"\r\n\r\n";
const HEX: &[u8; 16] = b"0123456789abcdef";

/// Head bytes the reference reserves for `sn`/`sc`/`ml` when it segments a
/// message, by head kind (TxTray.packetize).
pub(crate) fn segment_extra(hk: HeadKind) -> usize {
    match hk {
        HeadKind::Raet => 27,
        HeadKind::Json => 36,
        HeadKind::Binary => 0,
    }
}

/// A head field value as found on the wire.
#[derive(Clone, Copy)]
enum Raw<'a> {
    /// raet head text: interpreted as the field's format demands (hex, float, string).
    Text(&'a str),
    /// json integer.
    Int(u64),
    /// json non-integer number.
    Float(f64),
    /// json string.
    Str(&'a str),
}

fn parse_hex(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 16 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(s, 16).ok()
}

impl<'a> Raw<'a> {
    fn int<T: TryFrom<u64>>(self, key: &'static str) -> Result<T, PacketError> {
        let v = match self {
            Raw::Text(s) => parse_hex(s),
            Raw::Int(v) => Some(v),
            Raw::Float(_) | Raw::Str(_) => None,
        };
        v.and_then(|v| T::try_from(v).ok())
            .ok_or(PacketError::BadHeadField { key })
    }

    fn float(self, key: &'static str) -> Result<f64, PacketError> {
        let v = match self {
            Raw::Text(s) => s.parse::<f64>().ok(),
            Raw::Int(v) => Some(v as f64),
            Raw::Float(f) => Some(f),
            Raw::Str(_) => None,
        };
        v.filter(|f| f.is_finite())
            .ok_or(PacketError::BadHeadField { key })
    }

    fn string(self, key: &'static str) -> Result<&'a str, PacketError> {
        match self {
            Raw::Text(s) | Raw::Str(s) => Ok(s),
            Raw::Int(_) | Raw::Float(_) => Err(PacketError::BadHeadField { key }),
        }
    }

    fn kind<K>(self, key: &'static str, from: fn(u64) -> Option<K>) -> Result<K, PacketError> {
        let code: u64 = self.int(key)?;
        from(code).ok_or(PacketError::UnknownKind { key, code })
    }
}

/// Stores one received field into `head`.
fn apply(head: &mut Head, key: &str, raw: Raw<'_>) -> Result<(), PacketError> {
    match key {
        "ri" => {
            if raw.string("ri")? != "RAET" {
                return Err(PacketError::BadHeadField { key: "ri" });
            }
        }
        "vn" => head.vn = raw.int("vn")?,
        "pk" => head.pk = raw.kind("pk", PacketKind::from_code)?,
        "pl" => head.pl = raw.int("pl")?,
        "hk" => head.hk = raw.kind("hk", HeadKind::from_code)?,
        "hl" => head.hl = raw.int("hl")?,
        "se" => head.se = raw.int("se")?,
        "de" => head.de = raw.int("de")?,
        "si" => head.si = raw.int("si")?,
        "ti" => head.ti = raw.int("ti")?,
        "tk" => head.tk = raw.kind("tk", TransactionKind::from_code)?,
        "dt" => head.dt = raw.float("dt")?,
        "oi" => head.oi = raw.int("oi")?,
        "sn" => head.sn = raw.int("sn")?,
        "sc" => head.sc = raw.int("sc")?,
        "ml" => head.ml = raw.int("ml")?,
        "bk" => head.bk = raw.kind("bk", BodyKind::from_code)?,
        "ck" => head.ck = raw.kind("ck", CoatKind::from_code)?,
        "fk" => head.fk = raw.kind("fk", FootKind::from_code)?,
        "fl" => head.fl = raw.int("fl")?,
        "fg" => {
            let s = raw.string("fg")?;
            let v = (s.len() <= 2).then(|| parse_hex(s)).flatten();
            head.fg = Flags(
                v.and_then(|v| u8::try_from(v).ok())
                    .ok_or(PacketError::BadHeadField { key: "fg" })?,
            );
        }
        _ => return Err(PacketError::UnknownField(key.chars().take(32).collect())),
    }
    Ok(())
}

/// Position of `needle` in the first `MAX_HEAD_SIZE` bytes of `datagram`,
/// such that the whole terminator lies within them.
fn find_end(datagram: &[u8], needle: &[u8]) -> Result<usize, PacketError> {
    let window = datagram.get(..MAX_HEAD_SIZE).unwrap_or(datagram);
    match window.windows(needle.len()).position(|w| w == needle) {
        Some(at) => Ok(at),
        None if datagram.len() > MAX_HEAD_SIZE => Err(PacketError::HeadTooLong),
        None => Err(PacketError::NoHeadEnd),
    }
}

fn parse_raet(front: &[u8], head: &mut Head) -> Result<(), PacketError> {
    for line in front.split(|&b| b == b'\n') {
        let sp = line
            .iter()
            .position(|&b| b == b' ')
            .ok_or(PacketError::BadHeadLine)?;
        let (key, val) = (line.get(..sp), line.get(sp + 1..));
        let (Some(key), Some(val)) = (key, val) else {
            return Err(PacketError::BadHeadLine);
        };
        if val.contains(&b' ') {
            return Err(PacketError::BadHeadLine);
        }
        let key = std::str::from_utf8(key).map_err(|_| PacketError::BadHeadLine)?;
        let val = std::str::from_utf8(val).map_err(|_| PacketError::BadHeadLine)?;
        apply(head, key, Raw::Text(val))?;
    }
    Ok(())
}

fn parse_json(front: &[u8], head: &mut Head) -> Result<(), PacketError> {
    if !front.is_ascii() {
        return Err(PacketError::BadJsonHead("not ASCII".into()));
    }
    let map: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(front).map_err(|e| PacketError::BadJsonHead(e.to_string()))?;
    for (key, value) in &map {
        let raw = match (key.as_str(), value) {
            // pl and hl travel as hex strings in a json head.
            ("pl" | "hl", serde_json::Value::String(s)) => Raw::Text(s),
            ("pl", _) => return Err(PacketError::BadHeadField { key: "pl" }),
            ("hl", _) => return Err(PacketError::BadHeadField { key: "hl" }),
            (_, serde_json::Value::String(s)) => Raw::Str(s),
            (_, serde_json::Value::Number(n)) => match n.as_u64() {
                Some(v) => Raw::Int(v),
                None => Raw::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            (_, _) => return Err(PacketError::BadJsonHead(format!("field {key:?}"))),
        };
        apply(head, key, raw)?;
    }
    Ok(())
}

impl Head {
    /// Auto-detects raet/json head; checks vn, hl, pl against the datagram.
    /// Sets hk, hl, pl. Never panics.
    pub fn parse(datagram: &[u8]) -> Result<Self, PacketError> {
        if datagram.is_empty() {
            return Err(PacketError::TooShort);
        }
        let mut head = Self::default();
        let (kind, hl) = if datagram.starts_with(RAET_PREFIX) {
            let end = find_end(datagram, RAET_END)?;
            parse_raet(datagram.get(..end).unwrap_or_default(), &mut head)?;
            (HeadKind::Raet, end + RAET_END.len())
        } else if datagram.starts_with(JSON_PREFIX) {
            let end = find_end(datagram, JSON_END)?;
            parse_json(datagram.get(..end).unwrap_or_default(), &mut head)?;
            (HeadKind::Json, end + JSON_END.len())
        } else {
            return Err(PacketError::NotRaet);
        };
        if head.hk != kind {
            return Err(PacketError::HeadKindMismatch {
                stated: head.hk.code(),
                actual: kind.code(),
            });
        }
        if head.hl != hl {
            return Err(PacketError::LengthMismatch {
                field: "hl",
                stated: head.hl,
                actual: hl,
            });
        }
        if head.pl != datagram.len() {
            return Err(PacketError::LengthMismatch {
                field: "pl",
                stated: head.pl,
                actual: datagram.len(),
            });
        }
        if head.vn != 0 {
            return Err(PacketError::BadVersion(head.vn));
        }
        Ok(head)
    }

    /// Length of this head once encoded (independent of `pl`).
    pub fn encoded_len(&self) -> Result<usize, PacketError> {
        let mut scratch = Vec::with_capacity(MAX_HEAD_SIZE);
        self.encode_into(0, &mut scratch)
    }

    /// Appends the head, encoded in `self.hk`, to `out` with `hl` = its own
    /// length and `pl` = hl + `coat_len` + `self.fl` (`pl` truncated to its
    /// 4 (raet) or 7 (json) hex digits, as the reference does). The stored
    /// `pl`/`hl` of `self` are ignored. Returns hl.
    pub fn encode_into(&self, coat_len: usize, out: &mut Vec<u8>) -> Result<usize, PacketError> {
        let start = out.len();
        let (pl_at, pl_digits, hl_at) = match self.hk {
            HeadKind::Raet => self.encode_raet(out),
            HeadKind::Json => self.encode_json(out),
            HeadKind::Binary => return Err(PacketError::BinaryHead),
        };
        let hl = out.len() - start;
        if hl > MAX_HEAD_SIZE {
            out.truncate(start);
            return Err(PacketError::HeadTooLong);
        }
        let pl = hl
            .checked_add(coat_len)
            .and_then(|n| n.checked_add(self.fl))
            .ok_or(PacketError::MessageTooLarge { len: coat_len })?;
        patch_hex(out, pl_at, pl_digits, pl as u64);
        patch_hex(out, hl_at, 2, hl as u64);
        Ok(hl)
    }

    /// The optional fields in wire order, with whether each differs from its default.
    fn optional_fields(&self) -> [(&'static str, Value, bool); 17] {
        use Value::{Float, Int};
        [
            ("vn", Int(self.vn.into()), self.vn != 0),
            (
                "pk",
                Int(self.pk.code().into()),
                self.pk != PacketKind::Message,
            ),
            ("hk", Int(self.hk.code().into()), self.hk != HeadKind::Raet),
            ("se", Int(self.se.into()), self.se != 0),
            ("de", Int(self.de.into()), self.de != 0),
            ("si", Int(self.si.into()), self.si != 0),
            ("ti", Int(self.ti.into()), self.ti != 0),
            (
                "tk",
                Int(self.tk.code().into()),
                self.tk != TransactionKind::Message,
            ),
            ("dt", Float(self.dt), self.dt != 0.0),
            ("oi", Int(self.oi.into()), self.oi != 0),
            ("sn", Int(self.sn.into()), self.sn != 0),
            ("sc", Int(self.sc.into()), self.sc != 1),
            ("ml", Int(self.ml.into()), self.ml != 0),
            ("bk", Int(self.bk.code().into()), self.bk != BodyKind::Nada),
            ("ck", Int(self.ck.code().into()), self.ck != CoatKind::Nada),
            ("fk", Int(self.fk.code().into()), self.fk != FootKind::Nada),
            ("fl", Int(self.fl as u64), self.fl != 0),
        ]
    }

    /// Writes a raet head with zero `pl`/`hl` placeholders; returns their offsets.
    fn encode_raet(&self, out: &mut Vec<u8>) -> (usize, usize, usize) {
        out.extend_from_slice(b"ri RAET\npl ");
        let pl_at = out.len();
        out.extend_from_slice(b"0000\nhl ");
        let hl_at = out.len();
        out.extend_from_slice(b"00\nfg ");
        push_hex_fixed(out, self.fg.0.into(), 2);
        out.push(b'\n');
        for (key, value, present) in self.optional_fields() {
            if present {
                out.extend_from_slice(key.as_bytes());
                out.push(b' ');
                match value {
                    Value::Int(v) => push_hex(out, v),
                    // Python '{:f}': fixed point, six decimals.
                    Value::Float(f) => out.extend_from_slice(format!("{f:.6}").as_bytes()),
                }
                out.push(b'\n');
            }
        }
        out.push(b'\n');
        (pl_at, 4, hl_at)
    }

    /// Writes a json head (`json.dumps(kit, separators=(',',':'))` + `\r\n\r\n`)
    /// with zero `pl`/`hl` placeholders; returns their offsets.
    fn encode_json(&self, out: &mut Vec<u8>) -> (usize, usize, usize) {
        out.extend_from_slice(b"{\"ri\":\"RAET\",\"pl\":\"");
        let pl_at = out.len();
        out.extend_from_slice(b"0000000\",\"hl\":\"");
        let hl_at = out.len();
        out.extend_from_slice(b"00\",\"fg\":\"");
        push_hex_fixed(out, self.fg.0.into(), 2);
        out.push(b'"');
        for (key, value, present) in self.optional_fields() {
            if present {
                out.extend_from_slice(b",\"");
                out.extend_from_slice(key.as_bytes());
                out.extend_from_slice(b"\":");
                match value {
                    Value::Int(v) => push_decimal(out, v),
                    Value::Float(f) => push_py_float(out, f),
                }
            }
        }
        out.push(b'}');
        out.extend_from_slice(JSON_END);
        (pl_at, 7, hl_at)
    }
}

/// A head field value to encode.
#[derive(Clone, Copy)]
enum Value {
    Int(u64),
    Float(f64),
}

fn push_hex(out: &mut Vec<u8>, v: u64) {
    let digits = (64 - v.leading_zeros() as usize).div_ceil(4);
    push_hex_fixed(out, v, digits.max(1));
}

/// The last `digits` hex digits of `v`, zero padded.
fn push_hex_fixed(out: &mut Vec<u8>, v: u64, digits: usize) {
    for i in (0..digits).rev() {
        let nibble = (v.checked_shr(4 * i as u32).unwrap_or(0) & 0xf) as usize;
        out.push(HEX[nibble]);
    }
}

fn patch_hex(out: &mut [u8], at: usize, digits: usize, v: u64) {
    let mut buf = Vec::with_capacity(digits);
    push_hex_fixed(&mut buf, v, digits);
    if let Some(slot) = out.get_mut(at..at + digits) {
        slot.copy_from_slice(&buf);
    }
}

fn push_decimal(out: &mut Vec<u8>, v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut v = v;
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(head: &Head, coat_len: usize) -> Vec<u8> {
        let mut out = Vec::new();
        head.encode_into(coat_len, &mut out).unwrap();
        out
    }

    #[test]
    fn join_request_head_matches_the_spec_example() {
        let head = Head {
            pk: PacketKind::Request,
            se: 2,
            ti: 1,
            tk: TransactionKind::Join,
            bk: BodyKind::Json,
            ..Head::default()
        };
        let bytes = encode(&head, 255 - 54);
        assert_eq!(
            bytes,
            b"ri RAET\npl 00ff\nhl 36\nfg 00\npk 4\nse 2\nti 1\ntk 1\nbk 1\n\n".to_vec()
        );
    }

    #[test]
    fn json_head_matches_the_spec_example() {
        let head = Head {
            hk: HeadKind::Json,
            se: 2,
            de: 2,
            si: 2,
            ti: 8,
            bk: BodyKind::Json,
            ck: CoatKind::Nacl,
            fk: FootKind::Nacl,
            fl: 64,
            fg: Flags(Flags::WF),
            ..Head::default()
        };
        let bytes = encode(&head, 249 - 116 - 64);
        assert_eq!(
            bytes,
            b"{\"ri\":\"RAET\",\"pl\":\"00000f9\",\"hl\":\"74\",\"fg\":\"04\",\"hk\":1,\"se\":2,\"de\":2,\"si\":2,\"ti\":8,\"bk\":1,\"ck\":1,\"fk\":1,\"fl\":64}\r\n\r\n".to_vec()
        );
    }

    #[test]
    fn pl_is_truncated_to_its_digits() {
        let head = Head::default();
        let bytes = encode(&head, 0x1_0000);
        assert!(bytes.starts_with(b"ri RAET\npl 001d\nhl 1d\n"));
        let json = Head {
            hk: HeadKind::Json,
            ..Head::default()
        };
        let hl = json.encoded_len().unwrap();
        let bytes = encode(&json, 0x1000_0000 - hl + 5);
        assert!(bytes.starts_with(b"{\"ri\":\"RAET\",\"pl\":\"0000005\""));
    }

    #[test]
    fn head_too_long_is_refused() {
        let head = Head {
            dt: 1e250,
            ..Head::default()
        };
        assert_eq!(head.encoded_len(), Err(PacketError::HeadTooLong));
    }

    #[test]
    fn parse_checks() {
        let ok = b"ri RAET\npl 0036\nhl 36\nfg 00\npk 1\nse 2\nti 1\ntk 1\nbk 1\n\n";
        let head = Head::parse(ok).unwrap();
        assert_eq!(
            (head.pk, head.se, head.ti, head.hl, head.pl),
            (PacketKind::Ack, 2, 1, 54, 54)
        );
        let cases: &[(&[u8], PacketError)] = &[
            (b"", PacketError::TooShort),
            (b"hello", PacketError::NotRaet),
            (b"ri RAET\npl 0010\n", PacketError::NoHeadEnd),
            (
                b"ri RAET\npl 0014\nhl 17\n\n",
                PacketError::LengthMismatch {
                    field: "pl",
                    stated: 20,
                    actual: 23,
                },
            ),
            (
                b"ri RAET\npl 0017\nhl 16\n\n",
                PacketError::LengthMismatch {
                    field: "hl",
                    stated: 22,
                    actual: 23,
                },
            ),
            (b"ri RAET\nzz 1\n\n", PacketError::UnknownField("zz".into())),
            (b"ri RAET\nse 1 2\n\n", PacketError::BadHeadLine),
            (b"ri RAET\nse\n\n", PacketError::BadHeadLine),
            (
                b"ri RAET\nse -1\n\n",
                PacketError::BadHeadField { key: "se" },
            ),
            (
                b"ri RAET\nse 100000000\n\n",
                PacketError::BadHeadField { key: "se" },
            ),
            (
                b"ri RAET\npk 10\n\n",
                PacketError::UnknownKind {
                    key: "pk",
                    code: 16,
                },
            ),
            (
                b"ri RAET\nfg 100\n\n",
                PacketError::BadHeadField { key: "fg" },
            ),
            (
                b"ri RAET\nhk 1\n\n",
                PacketError::HeadKindMismatch {
                    stated: 1,
                    actual: 0,
                },
            ),
            (
                b"ri RAET\npl 001c\nhl 1c\nvn 1\n\n",
                PacketError::BadVersion(1),
            ),
            (
                b"{\"ri\":\"RAET\",\"pl\":7}\r\n\r\n",
                PacketError::BadHeadField { key: "pl" },
            ),
            (
                b"{\"ri\":\"RAET\",\"se\":true}\r\n\r\n",
                PacketError::BadJsonHead("field \"se\"".into()),
            ),
            (
                b"{\"ri\":\"RAET\",\"se\":-1}\r\n\r\n",
                PacketError::BadHeadField { key: "se" },
            ),
            (
                b"{\"ri\":\"RAET\",\"qq\":1}\r\n\r\n",
                PacketError::UnknownField("qq".into()),
            ),
            (
                b"{\"ri\":\"RAET\",\"hk\":1}\r\n\r\n",
                PacketError::LengthMismatch {
                    field: "hl",
                    stated: 0,
                    actual: 24,
                },
            ),
        ];
        for (input, want) in cases {
            assert_eq!(
                Head::parse(input).as_ref(),
                Err(want),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
        // Python's int(v, 16) also takes upper-case digits and leading zeros.
        let upper = b"ri RAET\npl 001D\nhl 1D\nse 0A\n\n";
        assert_eq!(Head::parse(upper).map(|h| h.se), Ok(10));
        // A json head must say hk 1.
        assert_eq!(
            Head::parse(b"{\"ri\":\"RAET\",\"se\":1}\r\n\r\n"),
            Err(PacketError::HeadKindMismatch {
                stated: 0,
                actual: 1
            })
        );
        let mut long = b"ri RAET\n".to_vec();
        long.resize(300, b'a');
        assert_eq!(Head::parse(&long), Err(PacketError::HeadTooLong));
    }
}
