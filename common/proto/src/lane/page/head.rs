//! The page head on the wire: [`PageHead`] (encoding) and [`Page`] (parsing a
//! datagram into its head and body bytes).

use super::{
    PackKind, DEFAULT_SID, HEAD_END, HEAD_START, MAX_PACKED_PAGE_SIZE, MAX_PAGE_SIZE, SID_LEN,
};
use crate::lane::LaneError;

/// A decoded page head. Field names follow the wire keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageHead {
    /// `vn`: version (only 0 exists; the reference never checks it).
    pub vn: u32,
    /// `pk`: pack kind of the book's body.
    pub pk: PackKind,
    /// `sn`: source yard name.
    pub sn: String,
    /// `dn`: destination yard name.
    pub dn: String,
    /// `si`: session id the sender keeps for the destination yard.
    pub si: String,
    /// `bi`: book id, a per-destination counter from 1.
    pub bi: u32,
    /// `pn`: page number, 0-based.
    pub pn: u32,
    /// `pc`: page count (1 = unpaginated).
    pub pc: u32,
}

impl Default for PageHead {
    /// The reference's `PAGE_DEFAULTS`: what a parsed head holds for a field
    /// it does not carry.
    fn default() -> Self {
        Self {
            vn: 0,
            pk: PackKind::Json,
            sn: String::new(),
            dn: String::new(),
            si: DEFAULT_SID.to_owned(),
            bi: 0,
            pn: 0,
            pc: 1,
        }
    }
}

impl PageHead {
    /// Whether this page is one of several (`pc > 1`), as the reference decides.
    pub fn paginated(&self) -> bool {
        self.pc > 1
    }

    /// Appends the encoded head (terminator included) to `out`.
    ///
    /// Errors if a name or the session id cannot be written in a head (empty
    /// or longer-than-18 `si`, a space, newline or non-Latin-1 character).
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), LaneError> {
        if self.si.is_empty() || self.si.chars().count() > SID_LEN {
            return Err(LaneError::BadField("si"));
        }
        out.extend_from_slice(HEAD_START);
        out.extend_from_slice(format!("vn {:x}\npk {:x}\n", self.vn, self.pk.code()).as_bytes());
        for (key, value) in [("sn", &self.sn), ("dn", &self.dn), ("si", &self.si)] {
            out.extend_from_slice(key.as_bytes());
            out.push(b' ');
            push_latin1(out, value).ok_or(LaneError::BadField(key))?;
            out.push(b'\n');
        }
        out.extend_from_slice(
            format!(
                "bi {:x}\npn {:04x}\npc {:04x}\n\n",
                self.bi, self.pn, self.pc
            )
            .as_bytes(),
        );
        Ok(())
    }

    /// The encoded head as a fresh vector.
    pub fn to_bytes(&self) -> Result<Vec<u8>, LaneError> {
        let mut out = Vec::with_capacity(96);
        self.encode(&mut out)?;
        Ok(out)
    }
}

/// Appends `s` as Latin-1 (the reference's `ns2b`); `None` if a character is
/// outside Latin-1 or is a space or newline (which would break the head).
fn push_latin1(out: &mut Vec<u8>, s: &str) -> Option<()> {
    for c in s.chars() {
        let byte = u8::try_from(u32::from(c)).ok()?;
        if byte == b' ' || byte == b'\n' {
            return None;
        }
        out.push(byte);
    }
    Some(())
}

/// A parsed page: its head and its body bytes (a chunk of the book's body
/// when paginated), borrowed from the datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<'a> {
    /// The decoded head.
    pub head: PageHead,
    /// The body bytes following the head terminator.
    pub body: &'a [u8],
}

impl<'a> Page<'a> {
    /// Parses one datagram as the reference's `RxHead.parse` does: it must
    /// start with `ri RAET\n` and contain `\n\n`; every head line is
    /// `key value` with a known key; absent fields take the reference
    /// defaults. Stricter than the reference where it would crash or guess:
    /// duplicate fields, non-hex numbers, an unknown pack kind and a page
    /// number outside the page count are errors. A page is at most
    /// [`MAX_PAGE_SIZE`] bytes, or [`MAX_PACKED_PAGE_SIZE`] with pack kind msgpack
    /// (opaque bytes between this implementation's yards).
    pub fn parse(datagram: &'a [u8]) -> Result<Self, LaneError> {
        if datagram.is_empty() {
            return Err(LaneError::Empty);
        }
        if datagram.len() > MAX_PACKED_PAGE_SIZE {
            return Err(LaneError::PageTooLarge(datagram.len()));
        }
        if !datagram.starts_with(HEAD_START) {
            return Err(LaneError::NotRaet);
        }
        let end = datagram
            .windows(HEAD_END.len())
            .position(|w| w == HEAD_END)
            .ok_or(LaneError::NotRaet)?;
        let (front, rest) = datagram.split_at(end);
        let body = rest.get(HEAD_END.len()..).ok_or(LaneError::NotRaet)?;

        let mut head = PageHead::default();
        let mut seen = [false; FIELDS.len()];
        for line in front.split(|&b| b == b'\n') {
            let mut parts = line.split(|&b| b == b' ');
            let (Some(key), Some(value), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err(LaneError::BadLine);
            };
            let index = FIELDS
                .iter()
                .position(|f| f.as_bytes() == key)
                .ok_or_else(|| LaneError::UnknownField(latin1(key)))?;
            let name = FIELDS.get(index).copied().unwrap_or("?");
            match seen.get_mut(index) {
                Some(flag) if !*flag => *flag = true,
                _ => return Err(LaneError::DuplicateField(name)),
            }
            match name {
                "ri" => {
                    if value != b"RAET" {
                        return Err(LaneError::NotRaet);
                    }
                }
                "vn" => head.vn = parse_hex(value, name)?,
                "pk" => head.pk = PackKind::from_code(parse_hex(value, name)?)?,
                "sn" => head.sn = latin1(value),
                "dn" => head.dn = latin1(value),
                "si" => head.si = latin1(value),
                "bi" => head.bi = parse_hex(value, name)?,
                "pn" => head.pn = parse_hex(value, name)?,
                _ => head.pc = parse_hex(value, name)?,
            }
        }
        if head.paginated() && head.pn >= head.pc {
            return Err(LaneError::BadPageNumber {
                pn: head.pn,
                pc: head.pc,
            });
        }
        if datagram.len() > MAX_PAGE_SIZE && head.pk != PackKind::Msgpack {
            return Err(LaneError::PageTooLarge(datagram.len()));
        }
        Ok(Page { head, body })
    }
}

/// The head keys, in wire order.
const FIELDS: [&str; 9] = ["ri", "vn", "pk", "sn", "dn", "si", "bi", "pn", "pc"];

/// Decodes Latin-1 bytes (never fails, as the reference's head decoding).
fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

/// Parses 1 to 8 hex digits into a u32.
fn parse_hex(value: &[u8], field: &'static str) -> Result<u32, LaneError> {
    let text = std::str::from_utf8(value).map_err(|_| LaneError::BadField(field))?;
    if text.is_empty() || text.len() > 8 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(LaneError::BadField(field));
    }
    u32::from_str_radix(text, 16).map_err(|_| LaneError::BadField(field))
}
