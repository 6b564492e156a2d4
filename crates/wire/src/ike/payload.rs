//! Owned representations of IKEv2 payload bodies (RFC 7296 §3.3-§3.13).

use core::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::generic::{AttributeValue, emit_attribute, set_payload_len};
use super::{Error, RawPayload, Reader, Result, payload_type as pt, transform};

/// Identification types (RFC 7296 §3.5).
pub mod id_type {
    pub const IPV4_ADDR: u8 = 1;
    pub const FQDN: u8 = 2;
    pub const RFC822_ADDR: u8 = 3;
    pub const IPV6_ADDR: u8 = 5;
    pub const DER_ASN1_DN: u8 = 9;
    pub const KEY_ID: u8 = 11;
}

/// Traffic selector types (RFC 7296 §3.13.1).
pub mod ts_type {
    pub const IPV4_ADDR_RANGE: u8 = 7;
    pub const IPV6_ADDR_RANGE: u8 = 8;
}

/// A payload of a message, by type. Payload types this crate recognises but does not interpret
/// (CERT, CP, EAP, SKF) are kept as [`Payload::Other`]; unknown non-critical ones are dropped
/// during parsing, as §2.5 requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    Sa(Vec<Proposal>),
    Ke(Ke),
    IdI(Id),
    IdR(Id),
    Auth { method: u8, data: Vec<u8> },
    Nonce(Vec<u8>),
    Notify(Notify),
    Delete(Delete),
    Vendor(Vec<u8>),
    TsI(Vec<TrafficSelector>),
    TsR(Vec<TrafficSelector>),
    CertReq { encoding: u8, data: Vec<u8> },
    Other { kind: u8, data: Vec<u8> },
}

/// One proposal of an SA payload (§3.3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposal {
    /// Proposal number: 1 for the first, incremented by one for each further proposal.
    pub number: u8,
    pub protocol: u8,
    /// Empty for IKE in IKE_SA_INIT, 8 bytes for IKE SA rekeying, 4 bytes for ESP/AH.
    pub spi: Vec<u8>,
    pub transforms: Vec<Transform>,
}

/// One transform of a proposal (§3.3.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transform {
    pub kind: u8,
    pub id: u16,
    pub attributes: Vec<Attribute>,
}

/// A transform attribute (§3.3.5): TV (two-byte value) or TLV format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attribute {
    Tv { kind: u16, value: u16 },
    Tlv { kind: u16, value: Vec<u8> },
}

impl Transform {
    pub fn new(kind: u8, id: u16) -> Self {
        Self {
            kind,
            id,
            attributes: Vec::new(),
        }
    }

    pub fn with_key_length(kind: u8, id: u16, bits: u16) -> Self {
        Self {
            kind,
            id,
            attributes: vec![Attribute::Tv {
                kind: transform::ATTR_KEY_LENGTH,
                value: bits,
            }],
        }
    }

    /// The Key Length attribute in bits, if present.
    pub fn key_length(&self) -> Option<u16> {
        self.attributes.iter().find_map(|a| match a {
            Attribute::Tv { kind, value } if *kind == transform::ATTR_KEY_LENGTH => Some(*value),
            _ => None,
        })
    }
}

/// A Key Exchange payload (§3.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ke {
    pub group: u16,
    pub data: Vec<u8>,
}

/// An Identification payload body (§3.5), used for both IDi and IDr.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Id {
    pub id_type: u8,
    pub data: Vec<u8>,
}

impl Id {
    /// The bytes the AUTH payload signs over: type, three reserved octets, data (§2.15).
    pub fn body(&self) -> Vec<u8> {
        let mut v = vec![self.id_type, 0, 0, 0];
        v.extend_from_slice(&self.data);
        v
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.id_type, self.data.len()) {
            (id_type::IPV4_ADDR, 4) => {
                let a: [u8; 4] = self.data[..].try_into().map_err(|_| fmt::Error)?;
                write!(f, "{}", Ipv4Addr::from(a))
            }
            (id_type::IPV6_ADDR, 16) => {
                let a: [u8; 16] = self.data[..].try_into().map_err(|_| fmt::Error)?;
                write!(f, "{}", Ipv6Addr::from(a))
            }
            (id_type::FQDN, _) => write!(f, "fqdn:{}", String::from_utf8_lossy(&self.data)),
            (id_type::RFC822_ADDR, _) => {
                write!(f, "email:{}", String::from_utf8_lossy(&self.data))
            }
            (id_type::KEY_ID, _) => {
                f.write_str("keyid:")?;
                for b in &self.data {
                    write!(f, "{b:02x}")?;
                }
                Ok(())
            }
            (t, n) => write!(f, "id(type {t}, {n} bytes)"),
        }
    }
}

/// A Notify payload (§3.10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notify {
    /// 0 when no SPI is given, else the protocol the SPI belongs to.
    pub protocol: u8,
    pub spi: Vec<u8>,
    pub notify_type: u16,
    pub data: Vec<u8>,
}

impl Notify {
    /// A notify without protocol or SPI.
    pub fn new(notify_type: u16, data: Vec<u8>) -> Self {
        Self {
            protocol: 0,
            spi: Vec::new(),
            notify_type,
            data,
        }
    }
}

/// A Delete payload (§3.11). IKE SA deletes carry no SPI; ESP/AH ones carry 4-byte SPIs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delete {
    pub protocol: u8,
    pub spis: Vec<u32>,
}

/// One traffic selector (§3.13.1): an address range, a protocol and a port range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TrafficSelector {
    /// 0 means any protocol.
    pub ip_protocol: u8,
    pub start_port: u16,
    pub end_port: u16,
    pub start_addr: IpAddr,
    /// Same family as `start_addr` (checked by the parser; emit trusts the caller).
    pub end_addr: IpAddr,
}

impl TrafficSelector {
    /// All addresses, protocols and ports of one family.
    pub fn any(v6: bool) -> Self {
        if v6 {
            Self::range(
                Ipv6Addr::UNSPECIFIED.into(),
                Ipv6Addr::from(u128::MAX).into(),
            )
        } else {
            Self::range(Ipv4Addr::UNSPECIFIED.into(), Ipv4Addr::BROADCAST.into())
        }
    }

    /// An address range with any protocol and port.
    pub fn range(start_addr: IpAddr, end_addr: IpAddr) -> Self {
        Self {
            ip_protocol: 0,
            start_port: 0,
            end_port: u16::MAX,
            start_addr,
            end_addr,
        }
    }

    pub fn is_v6(&self) -> bool {
        self.start_addr.is_ipv6()
    }
}

impl fmt::Display for TrafficSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.start_addr, self.end_addr)?;
        if self.ip_protocol != 0 || self.start_port != 0 || self.end_port != u16::MAX {
            write!(
                f,
                "[{}/{}-{}]",
                self.ip_protocol, self.start_port, self.end_port
            )?;
        }
        Ok(())
    }
}

fn is_known(kind: u8) -> bool {
    (pt::SA..=pt::EAP).contains(&kind) || kind == pt::SKF
}

impl Payload {
    /// The payload type number.
    pub fn kind(&self) -> u8 {
        match self {
            Self::Sa(_) => pt::SA,
            Self::Ke(_) => pt::KE,
            Self::IdI(_) => pt::IDI,
            Self::IdR(_) => pt::IDR,
            Self::Auth { .. } => pt::AUTH,
            Self::Nonce(_) => pt::NONCE,
            Self::Notify(_) => pt::NOTIFY,
            Self::Delete(_) => pt::DELETE,
            Self::Vendor(_) => pt::VENDOR,
            Self::TsI(_) => pt::TSI,
            Self::TsR(_) => pt::TSR,
            Self::CertReq { .. } => pt::CERTREQ,
            Self::Other { kind, .. } => *kind,
        }
    }

    /// Interprets one raw payload. `Ok(None)` for an unknown non-critical payload, which the
    /// caller skips (§2.5); an unknown critical one is an error naming its type.
    pub fn parse(raw: RawPayload<'_>) -> Result<Option<Self>> {
        let mut r = Reader::new(raw.kind, raw.body);
        let p = match raw.kind {
            pt::SA => Self::Sa(parse_proposals(&mut r)?),
            pt::KE => {
                let group = r.u16()?;
                r.take(2)?;
                Self::Ke(Ke {
                    group,
                    data: r.rest().to_vec(),
                })
            }
            pt::IDI | pt::IDR => {
                let id_type = r.u8()?;
                r.take(3)?;
                let id = Id {
                    id_type,
                    data: r.rest().to_vec(),
                };
                if raw.kind == pt::IDI {
                    Self::IdI(id)
                } else {
                    Self::IdR(id)
                }
            }
            pt::AUTH => {
                let method = r.u8()?;
                r.take(3)?;
                Self::Auth {
                    method,
                    data: r.rest().to_vec(),
                }
            }
            pt::NONCE => {
                // §3.9: a nonce is 16..=256 octets.
                if !(16..=256).contains(&raw.body.len()) {
                    return Err(r.bad());
                }
                Self::Nonce(raw.body.to_vec())
            }
            pt::NOTIFY => {
                let protocol = r.u8()?;
                let spi_size = r.u8()?;
                let notify_type = r.u16()?;
                let spi = r.take(usize::from(spi_size))?.to_vec();
                Self::Notify(Notify {
                    protocol,
                    spi,
                    notify_type,
                    data: r.rest().to_vec(),
                })
            }
            pt::DELETE => {
                let protocol = r.u8()?;
                let spi_size = r.u8()?;
                let count = r.u16()?;
                let mut spis = Vec::new();
                match (spi_size, count) {
                    (0, 0) => {}
                    (4, n) => {
                        for _ in 0..n {
                            let b = r.take(4)?;
                            spis.push(u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                        }
                    }
                    _ => return Err(r.bad()),
                }
                if !r.is_empty() {
                    return Err(r.bad());
                }
                Self::Delete(Delete { protocol, spis })
            }
            pt::VENDOR => Self::Vendor(raw.body.to_vec()),
            pt::TSI | pt::TSR => {
                let ts = parse_selectors(&mut r)?;
                if raw.kind == pt::TSI {
                    Self::TsI(ts)
                } else {
                    Self::TsR(ts)
                }
            }
            pt::CERTREQ => {
                let encoding = r.u8()?;
                Self::CertReq {
                    encoding,
                    data: r.rest().to_vec(),
                }
            }
            k if is_known(k) && k != pt::SK => Self::Other {
                kind: k,
                data: raw.body.to_vec(),
            },
            k if raw.critical => return Err(Error::UnsupportedCritical(k)),
            _ => return Ok(None),
        };
        Ok(Some(p))
    }

    /// Appends the payload body (everything after the generic header).
    pub fn emit_body(&self, out: &mut Vec<u8>) {
        match self {
            Self::Sa(proposals) => emit_proposals(proposals, out),
            Self::Ke(ke) => {
                out.extend_from_slice(&ke.group.to_be_bytes());
                out.extend_from_slice(&[0, 0]);
                out.extend_from_slice(&ke.data);
            }
            Self::IdI(id) | Self::IdR(id) => out.extend_from_slice(&id.body()),
            Self::Auth { method, data } => {
                out.extend_from_slice(&[*method, 0, 0, 0]);
                out.extend_from_slice(data);
            }
            Self::Nonce(n) => out.extend_from_slice(n),
            Self::Notify(n) => {
                out.push(n.protocol);
                out.push(u8::try_from(n.spi.len()).unwrap_or(u8::MAX));
                out.extend_from_slice(&n.notify_type.to_be_bytes());
                out.extend_from_slice(&n.spi);
                out.extend_from_slice(&n.data);
            }
            Self::Delete(d) => {
                out.push(d.protocol);
                out.push(if d.spis.is_empty() { 0 } else { 4 });
                let n = u16::try_from(d.spis.len()).unwrap_or(u16::MAX);
                out.extend_from_slice(&n.to_be_bytes());
                for spi in d.spis.iter().take(usize::from(n)) {
                    out.extend_from_slice(&spi.to_be_bytes());
                }
            }
            Self::Vendor(v) => out.extend_from_slice(v),
            Self::TsI(ts) | Self::TsR(ts) => emit_selectors(ts, out),
            Self::CertReq { encoding, data } => {
                out.push(*encoding);
                out.extend_from_slice(data);
            }
            Self::Other { data, .. } => out.extend_from_slice(data),
        }
    }
}

fn parse_proposals(r: &mut Reader<'_>) -> Result<Vec<Proposal>> {
    let mut out = Vec::new();
    loop {
        // A body too short for its fixed fields fails when they are read.
        let (last_or_more, body) = r.sub_payload()?;
        let mut p = Reader::new(pt::SA, body);
        let number = p.u8()?;
        let protocol = p.u8()?;
        let spi_size = p.u8()?;
        let count = p.u8()?;
        let spi = p.take(usize::from(spi_size))?.to_vec();
        let mut transforms = Vec::with_capacity(usize::from(count));
        for i in 0..count {
            let (t_last, t_body) = p.sub_payload()?;
            // §3.3.2: 3 means more transforms follow, 0 marks the last one.
            let expect = if i + 1 == count { 0 } else { 3 };
            if t_last != expect {
                return Err(p.bad());
            }
            let mut t = Reader::new(pt::SA, t_body);
            let kind = t.u8()?;
            t.take(1)?;
            let id = t.u16()?;
            let mut attributes = Vec::new();
            while !t.is_empty() {
                attributes.push(match t.attribute()? {
                    (kind, AttributeValue::Short(value)) => Attribute::Tv { kind, value },
                    (kind, AttributeValue::Long(value)) => Attribute::Tlv {
                        kind,
                        value: value.to_vec(),
                    },
                });
            }
            transforms.push(Transform {
                kind,
                id,
                attributes,
            });
        }
        if !p.is_empty() {
            return Err(p.bad());
        }
        out.push(Proposal {
            number,
            protocol,
            spi,
            transforms,
        });
        match last_or_more {
            0 if r.is_empty() => return Ok(out),
            2 if !r.is_empty() => {}
            _ => return Err(r.bad()),
        }
    }
}

fn emit_proposals(proposals: &[Proposal], out: &mut Vec<u8>) {
    for (i, p) in proposals.iter().enumerate() {
        let start = out.len();
        let more = if i + 1 == proposals.len() { 0 } else { 2 };
        out.extend_from_slice(&[more, 0, 0, 0, p.number, p.protocol]);
        out.push(u8::try_from(p.spi.len()).unwrap_or(u8::MAX));
        out.push(u8::try_from(p.transforms.len()).unwrap_or(u8::MAX));
        out.extend_from_slice(&p.spi);
        for (j, t) in p.transforms.iter().enumerate() {
            let t_start = out.len();
            let more = if j + 1 == p.transforms.len() { 0 } else { 3 };
            out.extend_from_slice(&[more, 0, 0, 0, t.kind, 0]);
            out.extend_from_slice(&t.id.to_be_bytes());
            for a in &t.attributes {
                match a {
                    Attribute::Tv { kind, value } => {
                        emit_attribute(*kind, AttributeValue::Short(*value), out);
                    }
                    Attribute::Tlv { kind, value } => {
                        emit_attribute(*kind, AttributeValue::Long(value), out);
                    }
                }
            }
            set_payload_len(out, t_start);
        }
        set_payload_len(out, start);
    }
}

fn parse_selectors(r: &mut Reader<'_>) -> Result<Vec<TrafficSelector>> {
    let count = r.u8()?;
    r.take(3)?;
    let mut out = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        let ts_type = r.u8()?;
        let ip_protocol = r.u8()?;
        let len = usize::from(r.u16()?);
        let start_port = r.u16()?;
        let end_port = r.u16()?;
        let (start_addr, end_addr) = match (ts_type, len) {
            (ts_type::IPV4_ADDR_RANGE, 16) => {
                let a: [u8; 4] = r.take(4)?.try_into().map_err(|_| r.bad())?;
                let b: [u8; 4] = r.take(4)?.try_into().map_err(|_| r.bad())?;
                (IpAddr::from(a), IpAddr::from(b))
            }
            (ts_type::IPV6_ADDR_RANGE, 40) => {
                let a: [u8; 16] = r.take(16)?.try_into().map_err(|_| r.bad())?;
                let b: [u8; 16] = r.take(16)?.try_into().map_err(|_| r.bad())?;
                (IpAddr::from(a), IpAddr::from(b))
            }
            _ => return Err(r.bad()),
        };
        out.push(TrafficSelector {
            ip_protocol,
            start_port,
            end_port,
            start_addr,
            end_addr,
        });
    }
    if !r.is_empty() {
        return Err(r.bad());
    }
    Ok(out)
}

fn emit_selectors(selectors: &[TrafficSelector], out: &mut Vec<u8>) {
    let n = u8::try_from(selectors.len()).unwrap_or(u8::MAX);
    out.extend_from_slice(&[n, 0, 0, 0]);
    for ts in selectors.iter().take(usize::from(n)) {
        let (kind, len) = if ts.is_v6() {
            (ts_type::IPV6_ADDR_RANGE, 40u16)
        } else {
            (ts_type::IPV4_ADDR_RANGE, 16u16)
        };
        out.extend_from_slice(&[kind, ts.ip_protocol]);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&ts.start_port.to_be_bytes());
        out.extend_from_slice(&ts.end_port.to_be_bytes());
        for addr in [ts.start_addr, ts.end_addr] {
            match addr {
                IpAddr::V4(a) => out.extend_from_slice(&a.octets()),
                IpAddr::V6(a) => out.extend_from_slice(&a.octets()),
            }
        }
    }
}
