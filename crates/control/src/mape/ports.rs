//! The port set of a PSID (RFC 7597 §5.1): which transport ports a CE sharing an IPv4 address
//! may use as sources.
//!
//! A port is cut into three fields, `A` (the `offset` high bits), the PSID (`psid_len` bits)
//! and `M` (the rest). A CE owns every port whose PSID field equals its PSID; with an offset,
//! the ports whose `A` is 0 (0..2^(16-offset), the system ports with offset 6) belong to no CE.

use std::ops::RangeInclusive;

/// The ports of one PSID: `2^offset - 1` ranges (one when the offset is 0) of
/// `2^(16 - offset - psid_len)` contiguous ports each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortSet {
    psid: u16,
    psid_len: u8,
    offset: u8,
}

/// Why a port set cannot exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortSetError {
    /// `offset + psid_len` exceeds the 16 bits of a port.
    TooWide { offset: u8, psid_len: u8 },
    /// The PSID has bits above `psid_len`.
    PsidTooLarge { psid: u16, psid_len: u8 },
}

impl std::fmt::Display for PortSetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TooWide { offset, psid_len } => write!(
                f,
                "PSID offset {offset} plus PSID length {psid_len} exceeds the 16 bits of a port"
            ),
            Self::PsidTooLarge { psid, psid_len } => {
                write!(f, "PSID {psid} does not fit in {psid_len} bits")
            }
        }
    }
}

impl std::error::Error for PortSetError {}

impl PortSet {
    /// The set of `psid`, `psid_len` bits long, behind `offset` bits of `A`.
    pub fn new(psid: u16, psid_len: u8, offset: u8) -> Result<Self, PortSetError> {
        if u16::from(offset) + u16::from(psid_len) > 16 {
            return Err(PortSetError::TooWide { offset, psid_len });
        }
        if psid_len < 16 && psid >> psid_len != 0 {
            return Err(PortSetError::PsidTooLarge { psid, psid_len });
        }
        Ok(Self {
            psid,
            psid_len,
            offset,
        })
    }

    pub fn psid(&self) -> u16 {
        self.psid
    }

    pub fn psid_len(&self) -> u8 {
        self.psid_len
    }

    pub fn offset(&self) -> u8 {
        self.offset
    }

    /// Bits of `M`: each range is `2^m` ports long.
    fn m(&self) -> u32 {
        16 - u32::from(self.offset) - u32::from(self.psid_len)
    }

    /// Ports per range.
    pub fn range_len(&self) -> u32 {
        1 << self.m()
    }

    /// The values `A` takes: 1..2^offset, or only 0 without an offset.
    fn a_values(&self) -> RangeInclusive<u32> {
        if self.offset == 0 {
            0..=0
        } else {
            1..=(1u32 << self.offset) - 1
        }
    }

    /// Number of ranges.
    pub fn range_count(&self) -> u32 {
        let a = self.a_values();
        a.end() - a.start() + 1
    }

    /// Number of ports in the set.
    pub fn len(&self) -> u32 {
        self.range_count() * self.range_len()
    }

    /// Never true: every PSID owns at least one port. Here because `len` is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The ranges, lowest first.
    pub fn ranges(&self) -> impl Iterator<Item = RangeInclusive<u16>> + '_ {
        let m = self.m();
        let a_shift = 16 - u32::from(self.offset);
        let len = self.range_len();
        self.a_values().map(move |a| {
            // A with no offset bits is 0; `a << 16` would not fit a u16 but is never shifted in.
            let high = if self.offset == 0 { 0 } else { a << a_shift };
            let first = high | (u32::from(self.psid) << m);
            (first as u16)..=((first + len - 1) as u16)
        })
    }

    /// Whether `port` belongs to the set.
    pub fn contains(&self, port: u16) -> bool {
        psid_of(port, self.psid_len, self.offset) == Some(self.psid)
    }
}

/// The PSID a port belongs to under `psid_len` and `offset`, or `None` for ports whose `A` is 0
/// when there is an offset (they belong to no CE). `offset + psid_len` must not exceed 16.
pub fn psid_of(port: u16, psid_len: u8, offset: u8) -> Option<u16> {
    let (offset, psid_len) = (u32::from(offset), u32::from(psid_len));
    if offset + psid_len > 16 {
        return None;
    }
    let port = u32::from(port);
    if offset > 0 && port >> (16 - offset) == 0 {
        return None;
    }
    let m = 16 - offset - psid_len;
    let mask = (1u32 << psid_len) - 1;
    Some(((port >> m) & mask) as u16)
}
