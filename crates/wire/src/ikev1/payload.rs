//! Owned representations of ISAKMP payload bodies (RFC 2408 §3.4-§3.16, RFC 2407 §4.6,
//! RFC 3947 §3).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{Error, Result, payload_type as pt};
use crate::ike::generic::{AttributeValue, emit_attribute, set_payload_len};

/// Identification types of the IPsec DOI (RFC 2407 §4.6.2.1).
pub mod id_type {
    pub const IPV4_ADDR: u8 = 1;
    pub const FQDN: u8 = 2;
    pub const USER_FQDN: u8 = 3;
    pub const IPV4_ADDR_SUBNET: u8 = 4;
    pub const IPV6_ADDR: u8 = 5;
    pub const IPV6_ADDR_SUBNET: u8 = 6;
    pub const IPV4_ADDR_RANGE: u8 = 7;
    pub const IPV6_ADDR_RANGE: u8 = 8;
    pub const KEY_ID: u8 = 11;
}

/// SA attribute classes and values: phase 1 (RFC 2409 Appendix A) and phase 2 (RFC 2407
/// §4.5, RFC 3947 §5, RFC 4868 §2.4).
pub mod attr {
    pub const ENCRYPTION: u16 = 1;
    pub const HASH: u16 = 2;
    pub const AUTH_METHOD: u16 = 3;
    pub const GROUP: u16 = 4;
    pub const LIFE_TYPE: u16 = 11;
    pub const LIFE_DURATION: u16 = 12;
    pub const KEY_LENGTH: u16 = 14;

    pub const ENC_3DES_CBC: u16 = 5;
    pub const ENC_AES_CBC: u16 = 7;
    pub const HASH_SHA1: u16 = 2;
    pub const HASH_SHA2_256: u16 = 4;
    pub const AUTH_PSK: u16 = 1;
    pub const LIFE_SECONDS: u16 = 1;
    pub const LIFE_KILOBYTES: u16 = 2;

    pub const SA_LIFE_TYPE: u16 = 1;
    pub const SA_LIFE_DURATION: u16 = 2;
    pub const SA_GROUP: u16 = 3;
    pub const ENCAPSULATION: u16 = 4;
    pub const SA_AUTH: u16 = 5;
    pub const SA_KEY_LENGTH: u16 = 6;

    pub const ENCAP_TUNNEL: u16 = 1;
    pub const ENCAP_TRANSPORT: u16 = 2;
    pub const ENCAP_UDP_TUNNEL: u16 = 3;
    /// The draft value some peers still send for UDP-encapsulated tunnel mode.
    pub const ENCAP_UDP_TUNNEL_DRAFT: u16 = 61443;
    pub const AUTH_HMAC_SHA1: u16 = 2;
    pub const AUTH_HMAC_SHA2_256: u16 = 5;

    /// ESP transform IDs (RFC 2407 §4.4.4).
    pub const ESP_3DES: u8 = 3;
    pub const ESP_AES_CBC: u8 = 12;
    /// The ISAKMP transform ID of phase 1 (RFC 2409 Appendix A).
    pub const KEY_IKE: u8 = 1;
}

/// A payload of a message, by type. Types v6gate does not interpret are kept as `Other`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    Sa(Sa),
    Ke(Vec<u8>),
    Id(Id),
    Hash(Vec<u8>),
    Nonce(Vec<u8>),
    Notify(Notify),
    Delete(Delete),
    Vendor(Vec<u8>),
    NatD(Vec<u8>),
    NatOa(NatOa),
    Other { kind: u8, data: Vec<u8> },
}

/// An SA payload (RFC 2408 §3.4) in the IPsec DOI: its proposals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sa {
    pub doi: u32,
    pub situation: u32,
    pub proposals: Vec<Proposal>,
}

/// A proposal payload (§3.5). Transforms of one proposal are alternatives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposal {
    pub number: u8,
    pub protocol: u8,
    pub spi: Vec<u8>,
    pub transforms: Vec<Transform>,
}

/// A transform payload (§3.6) and its SA attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transform {
    pub number: u8,
    pub id: u8,
    pub attributes: Vec<Attribute>,
}

/// A data attribute (§3.3): basic (AF set, a 16-bit value) or variable length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attribute {
    Basic { kind: u16, value: u16 },
    Variable { kind: u16, value: Vec<u8> },
}

/// An identification payload (§3.8, RFC 2407 §4.6.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Id {
    pub id_type: u8,
    pub protocol: u8,
    pub port: u16,
    pub data: Vec<u8>,
}

/// A notification payload (§3.14).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notify {
    pub doi: u32,
    pub protocol: u8,
    pub notify_type: u16,
    pub spi: Vec<u8>,
    pub data: Vec<u8>,
}

/// A delete payload (§3.15): SPIs of one protocol, all of the same size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delete {
    pub doi: u32,
    pub protocol: u8,
    pub spi_size: u8,
    pub spis: Vec<Vec<u8>>,
}

/// A NAT original address payload (RFC 3947 §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NatOa {
    pub addr: IpAddr,
}

impl Attribute {
    pub const fn kind(&self) -> u16 {
        match self {
            Self::Basic { kind, .. } | Self::Variable { kind, .. } => *kind,
        }
    }

    /// The value as an integer: a basic value, or a variable one of at most 8 bytes (life
    /// durations beyond 65535 come that way).
    pub fn value(&self) -> Option<u64> {
        match self {
            Self::Basic { value, .. } => Some(u64::from(*value)),
            Self::Variable { value, .. } if value.len() <= 8 => {
                Some(value.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
            }
            Self::Variable { .. } => None,
        }
    }

    /// The shortest encoding of `value`: basic when it fits in 16 bits, else 4 or 8 bytes.
    pub fn integer(kind: u16, value: u64) -> Self {
        if let Ok(v) = u16::try_from(value) {
            Self::Basic { kind, value: v }
        } else if let Ok(v) = u32::try_from(value) {
            Self::Variable {
                kind,
                value: v.to_be_bytes().to_vec(),
            }
        } else {
            Self::Variable {
                kind,
                value: value.to_be_bytes().to_vec(),
            }
        }
    }

    fn emit(&self, out: &mut Vec<u8>) {
        match self {
            Self::Basic { kind, value } => {
                emit_attribute(*kind, AttributeValue::Short(*value), out)
            }
            Self::Variable { kind, value } => {
                emit_attribute(*kind, AttributeValue::Long(value), out);
            }
        }
    }
}

impl Transform {
    /// The value of the first attribute of class `kind`.
    pub fn attribute(&self, kind: u16) -> Option<u64> {
        self.attributes
            .iter()
            .find(|a| a.kind() == kind)
            .and_then(Attribute::value)
    }
}

impl Payload {
    pub const fn kind(&self) -> u8 {
        match self {
            Self::Sa(_) => pt::SA,
            Self::Ke(_) => pt::KE,
            Self::Id(_) => pt::ID,
            Self::Hash(_) => pt::HASH,
            Self::Nonce(_) => pt::NONCE,
            Self::Notify(_) => pt::NOTIFY,
            Self::Delete(_) => pt::DELETE,
            Self::Vendor(_) => pt::VENDOR,
            Self::NatD(_) => pt::NAT_D,
            Self::NatOa(_) => pt::NAT_OA,
            Self::Other { kind, .. } => *kind,
        }
    }

    /// Parses the body (after the generic header) of a payload of type `kind`.
    pub fn parse(kind: u8, body: &[u8]) -> Result<Self> {
        let mut r = Reader::new(kind, body);
        Ok(match kind {
            pt::SA => Self::Sa(parse_sa(&mut r)?),
            pt::KE => Self::Ke(body.to_vec()),
            pt::HASH => Self::Hash(body.to_vec()),
            pt::NONCE => Self::Nonce(body.to_vec()),
            pt::VENDOR => Self::Vendor(body.to_vec()),
            pt::NAT_D => Self::NatD(body.to_vec()),
            pt::ID => {
                let id_type = r.u8()?;
                let protocol = r.u8()?;
                let port = r.u16()?;
                Self::Id(Id {
                    id_type,
                    protocol,
                    port,
                    data: r.rest().to_vec(),
                })
            }
            pt::NOTIFY => {
                let doi = r.u32()?;
                let protocol = r.u8()?;
                let spi_size = r.u8()?;
                let notify_type = r.u16()?;
                let spi = r.take(usize::from(spi_size))?.to_vec();
                Self::Notify(Notify {
                    doi,
                    protocol,
                    notify_type,
                    spi,
                    data: r.rest().to_vec(),
                })
            }
            pt::DELETE => {
                let doi = r.u32()?;
                let protocol = r.u8()?;
                let spi_size = r.u8()?;
                let count = r.u16()?;
                if spi_size == 0 || usize::from(spi_size) * usize::from(count) != r.len() {
                    return Err(Error::BadPayload(kind));
                }
                let spis = (0..count)
                    .map(|_| r.take(usize::from(spi_size)).map(<[u8]>::to_vec))
                    .collect::<Result<_>>()?;
                Self::Delete(Delete {
                    doi,
                    protocol,
                    spi_size,
                    spis,
                })
            }
            pt::NAT_OA => {
                let id_type = r.u8()?;
                r.take(3)?;
                let rest = r.rest();
                let addr = match id_type {
                    id_type::IPV4_ADDR => <[u8; 4]>::try_from(rest)
                        .map(|a| IpAddr::V4(Ipv4Addr::from(a)))
                        .map_err(|_| Error::BadPayload(kind))?,
                    id_type::IPV6_ADDR => <[u8; 16]>::try_from(rest)
                        .map(|a| IpAddr::V6(Ipv6Addr::from(a)))
                        .map_err(|_| Error::BadPayload(kind))?,
                    _ => return Err(Error::BadPayload(kind)),
                };
                Self::NatOa(NatOa { addr })
            }
            pt::PROPOSAL | pt::TRANSFORM => return Err(Error::Misplaced(kind)),
            _ => Self::Other {
                kind,
                data: body.to_vec(),
            },
        })
    }

    /// Appends the body (without the generic header).
    pub fn emit_body(&self, out: &mut Vec<u8>) {
        match self {
            Self::Sa(sa) => emit_sa(sa, out),
            Self::Ke(d)
            | Self::Hash(d)
            | Self::Nonce(d)
            | Self::Vendor(d)
            | Self::NatD(d)
            | Self::Other { data: d, .. } => out.extend_from_slice(d),
            Self::Id(id) => {
                out.push(id.id_type);
                out.push(id.protocol);
                out.extend_from_slice(&id.port.to_be_bytes());
                out.extend_from_slice(&id.data);
            }
            Self::Notify(n) => {
                out.extend_from_slice(&n.doi.to_be_bytes());
                out.push(n.protocol);
                out.push(u8::try_from(n.spi.len()).unwrap_or(0));
                out.extend_from_slice(&n.notify_type.to_be_bytes());
                if n.spi.len() <= usize::from(u8::MAX) {
                    out.extend_from_slice(&n.spi);
                }
                out.extend_from_slice(&n.data);
            }
            Self::Delete(d) => {
                out.extend_from_slice(&d.doi.to_be_bytes());
                out.push(d.protocol);
                out.push(d.spi_size);
                let count = u16::try_from(d.spis.len()).unwrap_or(u16::MAX);
                out.extend_from_slice(&count.to_be_bytes());
                for spi in d.spis.iter().take(usize::from(count)) {
                    out.extend_from_slice(spi);
                }
            }
            Self::NatOa(oa) => match oa.addr {
                IpAddr::V4(a) => {
                    out.extend_from_slice(&[id_type::IPV4_ADDR, 0, 0, 0]);
                    out.extend_from_slice(&a.octets());
                }
                IpAddr::V6(a) => {
                    out.extend_from_slice(&[id_type::IPV6_ADDR, 0, 0, 0]);
                    out.extend_from_slice(&a.octets());
                }
            },
        }
    }

    /// The body alone, as the hashes that cover "the body of a payload" take it.
    pub fn body(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.emit_body(&mut out);
        out
    }
}

/// The most proposals, transforms per proposal and attributes per transform one SA payload
/// may hold; real peers send a handful of each.
const MAX_ITEMS: usize = 64;

fn parse_sa(r: &mut Reader<'_>) -> Result<Sa> {
    let doi = r.u32()?;
    let situation = r.u32()?;
    let mut proposals = Vec::new();
    // RFC 2408 §3.4: with the IPsec DOI the proposals follow the situation directly.
    let mut next = if r.is_empty() { pt::NONE } else { pt::PROPOSAL };
    while next != pt::NONE {
        if next != pt::PROPOSAL || proposals.len() == MAX_ITEMS {
            return Err(Error::BadPayload(pt::SA));
        }
        let (n, body) = r.sub_payload()?;
        next = n;
        proposals.push(parse_proposal(body)?);
    }
    Ok(Sa {
        doi,
        situation,
        proposals,
    })
}

fn parse_proposal(body: &[u8]) -> Result<Proposal> {
    let mut r = Reader::new(pt::PROPOSAL, body);
    let number = r.u8()?;
    let protocol = r.u8()?;
    let spi_size = r.u8()?;
    let count = r.u8()?;
    let spi = r.take(usize::from(spi_size))?.to_vec();
    let mut transforms = Vec::new();
    let mut next = if count == 0 { pt::NONE } else { pt::TRANSFORM };
    while next != pt::NONE {
        if next != pt::TRANSFORM || transforms.len() == MAX_ITEMS {
            return Err(Error::BadPayload(pt::PROPOSAL));
        }
        let (n, body) = r.sub_payload()?;
        next = n;
        transforms.push(parse_transform(body)?);
    }
    if transforms.len() != usize::from(count) || !r.is_empty() {
        return Err(Error::BadPayload(pt::PROPOSAL));
    }
    Ok(Proposal {
        number,
        protocol,
        spi,
        transforms,
    })
}

fn parse_transform(body: &[u8]) -> Result<Transform> {
    let mut r = Reader::new(pt::TRANSFORM, body);
    let number = r.u8()?;
    let id = r.u8()?;
    r.take(2)?;
    let mut attributes = Vec::new();
    while !r.is_empty() {
        if attributes.len() == MAX_ITEMS {
            return Err(Error::BadPayload(pt::TRANSFORM));
        }
        attributes.push(match r.attribute()? {
            (kind, AttributeValue::Short(value)) => Attribute::Basic { kind, value },
            (kind, AttributeValue::Long(value)) => Attribute::Variable {
                kind,
                value: value.to_vec(),
            },
        });
    }
    Ok(Transform {
        number,
        id,
        attributes,
    })
}

fn emit_sa(sa: &Sa, out: &mut Vec<u8>) {
    out.extend_from_slice(&sa.doi.to_be_bytes());
    out.extend_from_slice(&sa.situation.to_be_bytes());
    for (i, p) in sa.proposals.iter().enumerate() {
        let next = if i + 1 < sa.proposals.len() {
            pt::PROPOSAL
        } else {
            pt::NONE
        };
        let start = out.len();
        out.extend_from_slice(&[next, 0, 0, 0]);
        out.push(p.number);
        out.push(p.protocol);
        out.push(u8::try_from(p.spi.len()).unwrap_or(0));
        out.push(u8::try_from(p.transforms.len()).unwrap_or(0));
        if p.spi.len() <= usize::from(u8::MAX) {
            out.extend_from_slice(&p.spi);
        }
        for (j, t) in p.transforms.iter().enumerate() {
            let next = if j + 1 < p.transforms.len() {
                pt::TRANSFORM
            } else {
                pt::NONE
            };
            let tstart = out.len();
            out.extend_from_slice(&[next, 0, 0, 0, t.number, t.id, 0, 0]);
            for a in &t.attributes {
                a.emit(out);
            }
            set_payload_len(out, tstart);
        }
        set_payload_len(out, start);
    }
}

/// Bounds-checked reader for payload bodies, failing with [`Error::BadPayload`].
type Reader<'a> = crate::ike::generic::Reader<'a, Error>;
