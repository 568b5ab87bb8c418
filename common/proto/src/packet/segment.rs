//! Segmentation of large messages exactly as the reference `TxTray`
//! (spec §10.1), and reassembly on the receiving side.
//!
//! A message whose single signed packet would exceed `MAX_PACKET_SIZE` is cut
//! into raw slices of its whole coat (`coat_all` = box || nonce, length `ml`).
//! The slice size is `segsize = 1024 - (headsize + extra + 64)`, where
//! `headsize` is the head length of the unsegmented packet and `extra` the
//! reference's fixed allowance for `sn`/`sc`/`ml` (27 raet, 36 json).

use super::head::segment_extra;
use super::{
    pack_to_sign, Flags, FootKind, Head, PacketError, MAX_HEAD_SIZE, MAX_MESSAGE_SIZE,
    MAX_PACKET_SIZE, SIGNATURE_SIZE,
};

/// Smallest slice the reference formula can produce (255-byte head, json
/// allowance, signature): bounds the segment count a receiver accepts.
pub(super) const MIN_SEGMENT_SIZE: usize = MAX_PACKET_SIZE - MAX_HEAD_SIZE - 36 - SIGNATURE_SIZE;

/// Cuts one message's coat into datagrams (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segmenter {
    ml: usize,
    count: u32,
    segsize: usize,
}

impl Segmenter {
    /// Plans the segmentation of a coat of `coat_all_len` bytes sent with the
    /// head `template` (hk, se, de, si, ti, tk, bk, ck and flags are used;
    /// sn, sc, ml, pl, hl, fk, fl are ignored: segments are always signed).
    pub fn new(template: &Head, coat_all_len: usize) -> Result<Self, PacketError> {
        if coat_all_len > MAX_MESSAGE_SIZE {
            return Err(PacketError::MessageTooLarge { len: coat_all_len });
        }
        let headsize = unsegmented(template, Flags(0)).encoded_len()?;
        // headsize <= MAX_HEAD_SIZE, so none of these sums can overflow.
        if headsize + coat_all_len + SIGNATURE_SIZE <= MAX_PACKET_SIZE {
            return Ok(Self {
                ml: coat_all_len,
                count: 1,
                segsize: coat_all_len,
            });
        }
        let hotel = headsize + segment_extra(template.hk) + SIGNATURE_SIZE;
        let segsize = MAX_PACKET_SIZE - hotel;
        let count = u32::try_from(coat_all_len.div_ceil(segsize))
            .map_err(|_| PacketError::MessageTooLarge { len: coat_all_len })?;
        Ok(Self {
            ml: coat_all_len,
            count,
            segsize,
        })
    }

    /// Plans `len` bytes in slices of `segsize` (the fast profile's datagrams, whose head
    /// has a fixed size): one segment when they fit in one.
    pub fn sized(segsize: usize, len: usize) -> Result<Self, PacketError> {
        let segsize = segsize.max(1);
        let count = u32::try_from(len.div_ceil(segsize).max(1))
            .ok()
            .filter(|_| len <= MAX_MESSAGE_SIZE)
            .ok_or(PacketError::MessageTooLarge { len })?;
        Ok(Self {
            ml: len,
            count,
            segsize: if count == 1 { len } else { segsize },
        })
    }

    /// The bytes of segment `sn` of `coat_all`.
    pub fn chunk<'c>(&self, coat_all: &'c [u8], sn: u32) -> Result<&'c [u8], PacketError> {
        if coat_all.len() != self.ml {
            return Err(PacketError::CoatLengthMismatch {
                expected: self.ml,
                actual: coat_all.len(),
            });
        }
        if sn >= self.count {
            return Err(PacketError::SegmentOutOfRange { sn, sc: self.count });
        }
        let start = (sn as usize).saturating_mul(self.segsize);
        let end = start.saturating_add(self.segsize).min(self.ml);
        coat_all
            .get(start..end)
            .ok_or(PacketError::SegmentOutOfRange { sn, sc: self.count })
    }

    /// Number of datagrams; 1 = unsegmented.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Bytes of coat per segment (all but the last are this long).
    pub fn segment_size(&self) -> usize {
        self.segsize
    }

    /// Datagram for segment `sn` with flags `fg` (caller sets wf/af; sf is set
    /// automatically when count > 1 and cleared otherwise), its foot zeroed for
    /// [`super::sign_foot`].
    pub fn pack_segment(
        &self,
        template: &Head,
        coat_all: &[u8],
        sn: u32,
        fg: Flags,
    ) -> Result<Vec<u8>, PacketError> {
        let chunk = self.chunk(coat_all, sn)?;
        if self.count == 1 {
            let mut fg = fg;
            fg.set(Flags::SF, false);
            return pack_to_sign(&unsegmented(template, fg), coat_all);
        }
        pack_to_sign(&self.segment_head(template, sn, fg), chunk)
    }

    /// The head of segment `sn` (`sn`, `sc`, `ml`, flags with `sf` when segmented).
    pub fn segment_head(&self, template: &Head, sn: u32, fg: Flags) -> Head {
        let mut head = template.clone();
        head.fg = fg;
        head.fg.set(Flags::SF, self.count > 1);
        if self.count > 1 {
            head.sn = sn;
            head.sc = self.count;
            // ml <= MAX_MESSAGE_SIZE < 2^32, checked in new() and sized().
            head.ml = self.ml as u32;
        }
        head
    }
}

/// The template as the single packet of an unsegmented message.
fn unsegmented(template: &Head, fg: Flags) -> Head {
    Head {
        sn: 0,
        sc: 1,
        ml: 0,
        fk: FootKind::Nacl,
        fl: SIGNATURE_SIZE,
        fg,
        ..template.clone()
    }
}

/// Receiving side: collects the segments of one message by sn, validates
/// sc/ml consistency. Memory stays bounded by `ml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reassembler {
    sc: u32,
    ml: u32,
    segments: Vec<Option<Vec<u8>>>,
    received: u32,
    bytes: usize,
    highest: Option<u32>,
}

impl Reassembler {
    /// For a message of `sc` segments and `ml` coat bytes. Refuses
    /// `ml > MAX_MESSAGE_SIZE`, `sc == 0`, and more segments than the
    /// reference formula can produce for `ml` bytes (at least
    /// [`MIN_SEGMENT_SIZE`] bytes per segment but the last). Note: the
    /// reference itself exceeds `MAX_SEGMENT_COUNT` for messages above ~56 MB,
    /// so that constant is not the bound here.
    pub fn new(sc: u32, ml: u32) -> Result<Self, PacketError> {
        let bad = PacketError::BadSegmentation { sc, ml };
        let ml_len = ml as usize;
        if sc == 0 || ml_len > MAX_MESSAGE_SIZE {
            return Err(bad);
        }
        if sc as usize > ml_len.div_ceil(MIN_SEGMENT_SIZE).max(1) {
            return Err(bad);
        }
        Ok(Self {
            sc,
            ml,
            segments: vec![None; sc as usize],
            received: 0,
            bytes: 0,
            highest: None,
        })
    }

    /// Segment count.
    pub fn sc(&self) -> u32 {
        self.sc
    }

    /// Message length (whole coat).
    pub fn ml(&self) -> u32 {
        self.ml
    }

    /// Stores segment `sn`. `Ok(true)` if new, `Ok(false)` for a duplicate.
    pub fn insert(&mut self, sn: u32, chunk: &[u8]) -> Result<bool, PacketError> {
        let slot = self
            .segments
            .get_mut(sn as usize)
            .ok_or(PacketError::SegmentOutOfRange { sn, sc: self.sc })?;
        if slot.is_some() {
            return Ok(false);
        }
        let bytes = self
            .bytes
            .checked_add(chunk.len())
            .filter(|&b| b <= self.ml as usize)
            .ok_or(PacketError::SegmentOverflow { ml: self.ml })?;
        *slot = Some(chunk.to_vec());
        self.bytes = bytes;
        self.received = self.received.saturating_add(1);
        self.highest = Some(self.highest.map_or(sn, |h| h.max(sn)));
        Ok(true)
    }

    /// Whether every segment has arrived.
    pub fn is_complete(&self) -> bool {
        self.received == self.sc
    }

    /// Highest segment number received.
    pub fn highest(&self) -> Option<u32> {
        self.highest
    }

    /// Missing sns below the highest received (for resend requests), ascending.
    pub fn missing(&self) -> Vec<u32> {
        self.missing_from(0)
    }

    /// Missing sns from `from` to below the highest received, ascending (a receiver that
    /// knows every segment below `from` arrived looks no further back).
    pub fn missing_from(&self, from: u32) -> Vec<u32> {
        let end = self.highest.unwrap_or(0) as usize;
        let start = (from as usize).min(end);
        self.segments[start..end.min(self.segments.len())]
            .iter()
            .enumerate()
            .filter(|(_, s)| s.is_none())
            .map(|(i, _)| (start + i) as u32)
            .collect()
    }

    /// The whole coat; checks that all segments are present and add up to `ml`.
    pub fn assemble(&self) -> Result<Vec<u8>, PacketError> {
        if !self.is_complete() {
            return Err(PacketError::Incomplete);
        }
        if self.bytes != self.ml as usize {
            return Err(PacketError::LengthMismatch {
                field: "ml",
                stated: self.ml as usize,
                actual: self.bytes,
            });
        }
        let mut out = Vec::with_capacity(self.bytes);
        for chunk in self.segments.iter().flatten() {
            out.extend_from_slice(chunk);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{parse, BodyKind, CoatKind, HeadKind};

    fn template(hk: HeadKind) -> Head {
        Head {
            hk,
            se: 2,
            de: 2,
            si: 2,
            ti: 3,
            bk: BodyKind::Json,
            ck: CoatKind::Nacl,
            ..Head::default()
        }
    }

    #[test]
    fn spec_example_sizes() {
        // 3 011-byte body -> ml 3 051 -> raet head 70 -> segsize 863.
        let seg = Segmenter::new(&template(HeadKind::Raet), 3051).unwrap();
        assert_eq!((seg.count(), seg.segment_size()), (4, 863));
        let coat = vec![7u8; 3051];
        let sizes: Vec<usize> = (0..4)
            .map(|sn| {
                seg.pack_segment(&template(HeadKind::Raet), &coat, sn, Flags(0))
                    .unwrap()
                    .len()
            })
            .collect();
        assert_eq!(sizes, [1009, 1014, 1014, 613]);
    }

    #[test]
    fn small_messages_are_one_packet() {
        let t = template(HeadKind::Json);
        let seg = Segmenter::new(&t, 100).unwrap();
        assert_eq!(seg.count(), 1);
        let bytes = seg
            .pack_segment(&t, &[1; 100], 0, Flags(Flags::WF | Flags::SF))
            .unwrap();
        let rx = parse(&bytes).unwrap();
        assert_eq!(
            (rx.head.sc, rx.head.fg, rx.coat.len()),
            (1, Flags(Flags::WF), 100)
        );
        assert_eq!(
            seg.pack_segment(&t, &[1; 100], 1, Flags(0)),
            Err(PacketError::SegmentOutOfRange { sn: 1, sc: 1 })
        );
        assert_eq!(
            seg.pack_segment(&t, &[1; 99], 0, Flags(0)),
            Err(PacketError::CoatLengthMismatch {
                expected: 100,
                actual: 99
            })
        );
    }

    #[test]
    fn reassembler_bounds_and_missing() {
        assert!(Reassembler::new(0, 10).is_err());
        assert!(Reassembler::new(3, 10).is_err());
        assert!(Reassembler::new(2, (MAX_MESSAGE_SIZE + 1) as u32).is_err());
        let mut r = Reassembler::new(3, 2000).unwrap();
        assert_eq!(r.insert(2, &[3; 500]), Ok(true));
        assert_eq!(r.missing(), vec![0, 1]);
        assert_eq!(r.insert(2, &[3; 500]), Ok(false));
        assert_eq!(
            r.insert(3, &[0]),
            Err(PacketError::SegmentOutOfRange { sn: 3, sc: 3 })
        );
        assert_eq!(r.assemble(), Err(PacketError::Incomplete));
        assert_eq!(r.insert(0, &[1; 1000]), Ok(true));
        assert_eq!(
            r.insert(1, &[2; 501]),
            Err(PacketError::SegmentOverflow { ml: 2000 })
        );
        assert_eq!(r.insert(1, &[2; 400]), Ok(true));
        assert!(r.is_complete());
        assert_eq!(r.highest(), Some(2));
        assert_eq!(
            r.assemble(),
            Err(PacketError::LengthMismatch {
                field: "ml",
                stated: 2000,
                actual: 1900
            })
        );
    }
}
