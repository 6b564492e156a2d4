//! MAP-E (RFC 7597) rule arithmetic for a CE: from the delegated IPv6 prefix and a mapping rule
//! to the shared IPv4 address, the PSID, the port set and the CE's MAP IPv6 address.
//!
//! Pure: no host state. The calculator command (`v6gate mape`), config validation and the
//! lowering of a `mode = "map-e"` tunnel to an RFC 2473 tunnel all use it.
//!
//! ```
//! use control::mape::{Layout, Rule};
//! // RFC 7597 Appendix A, Example 1.
//! let rule = Rule::new(
//!     "2001:db8::/40".parse()?,
//!     "192.0.2.0/24".parse()?,
//!     16,
//!     6,
//!     "2001:db8:ffff::1".parse()?,
//!     Layout::Rfc7597,
//! )?;
//! let map = rule.map("2001:db8:12:3400::/56".parse()?)?;
//! assert_eq!(map.ipv4.to_string(), "192.0.2.18");
//! assert_eq!(map.ports.psid(), 0x34);
//! assert_eq!(map.map_address.to_string(), "2001:db8:12:3400:0:c000:212:34");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod builtin;
mod ports;
#[cfg(test)]
mod tests;

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};

pub use builtin::{RuleSet, SetRule, builtin, builtin_names};
pub use ports::{PortSet, PortSetError, psid_of};

/// Longest EA-bits field RFC 7597 §5 allows.
pub const MAX_EA_BITS: u8 = 48;
/// PSID offset RFC 7597 §5.1 recommends, keeping the system ports 0-1023 out of every set.
pub const DEFAULT_PSID_OFFSET: u8 = 6;
/// Largest PSID offset (RFC 7598 §5.1, S46_PORTPARAMS: 0..15).
pub const MAX_PSID_OFFSET: u8 = 15;

/// Where the IPv4 address and PSID sit in the CE's interface identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Layout {
    /// RFC 7597 §6: 16 zero bits, the IPv4 address, the PSID right-aligned in 16 bits.
    #[default]
    Rfc7597,
    /// draft-ietf-softwire-map-03 §5.3, which the Japanese VNEs (v6plus, OCN, BIGLOBE) kept:
    /// 8 zero bits, the IPv4 address, the PSID right-aligned in 16 bits, 8 zero bits.
    Draft03,
}

impl Layout {
    pub const ALL: [Self; 2] = [Self::Rfc7597, Self::Draft03];

    /// The spelling in the config file and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rfc7597 => "rfc7597",
            Self::Draft03 => "draft03",
        }
    }

    /// The layout spelled `text`.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|l| l.as_str() == text)
    }

    /// The 64-bit interface identifier of a CE with `ipv4` and `psid`.
    fn interface_id(self, ipv4: Ipv4Addr, psid: u16) -> u64 {
        let v4 = u64::from(u32::from(ipv4));
        let psid = u64::from(psid);
        match self {
            Self::Rfc7597 => (v4 << 16) | psid,
            Self::Draft03 => (v4 << 24) | (psid << 8),
        }
    }
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A Basic Mapping Rule with the BR it tunnels to (RFC 7597 §5), checked for consistency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rule {
    ipv6_prefix: Ipv6Net,
    ipv4_prefix: Ipv4Net,
    ea_bits: u8,
    psid_offset: u8,
    br: Ipv6Addr,
    layout: Layout,
}

/// The rule parameter a [`RuleError`] is about, so that a command line can name its flag and a
/// config file its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleField {
    Ipv6Prefix,
    Ipv4Prefix,
    EaBits,
    PsidOffset,
    Br,
}

impl RuleField {
    /// The key in a config's explicit `rule` table.
    pub fn key(self) -> &'static str {
        match self {
            Self::Ipv6Prefix => "ipv6_prefix",
            Self::Ipv4Prefix => "ipv4_prefix",
            Self::EaBits => "ea_bits",
            Self::PsidOffset => "psid_offset",
            Self::Br => "br",
        }
    }
}

/// Why a set of parameters is not a usable rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleError {
    /// The prefix has bits set past its length.
    HostBits { field: RuleField, canonical: String },
    /// More than 48 EA bits (RFC 7597 §5).
    TooManyEaBits(u8),
    /// The rule prefix and the EA bits do not fit in the 64 bits of an IPv6 prefix.
    PastSlash64 { ipv6_len: u8, ea_bits: u8 },
    /// Fewer EA bits than the IPv4 suffix needs: the CE would get an IPv4 prefix, which a CE
    /// running NAPT has no use for.
    TooFewEaBits { ea_bits: u8, suffix: u8 },
    /// PSID offset over 15 (RFC 7598 §5.1).
    OffsetTooLarge(u8),
    /// PSID offset plus PSID length exceed 16 bits.
    PortsTooNarrow { psid_offset: u8, psid_len: u8 },
    /// The BR is not a unicast address.
    BadBr(Ipv6Addr),
}

impl RuleError {
    /// The parameter to change.
    pub fn field(&self) -> RuleField {
        match self {
            Self::HostBits { field, .. } => *field,
            Self::TooManyEaBits(_) | Self::TooFewEaBits { .. } => RuleField::EaBits,
            Self::PastSlash64 { .. } => RuleField::EaBits,
            Self::OffsetTooLarge(_) | Self::PortsTooNarrow { .. } => RuleField::PsidOffset,
            Self::BadBr(_) => RuleField::Br,
        }
    }
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::HostBits { canonical, .. } => {
                write!(f, "has bits set past its length; the prefix is {canonical}")
            }
            Self::TooManyEaBits(n) => {
                write!(f, "{n} EA bits; RFC 7597 allows at most {MAX_EA_BITS}")
            }
            Self::PastSlash64 { ipv6_len, ea_bits } => write!(
                f,
                "a /{ipv6_len} rule prefix plus {ea_bits} EA bits is /{}, past the /64 a CE's \
                 prefix can be",
                u16::from(*ipv6_len) + u16::from(*ea_bits)
            ),
            Self::TooFewEaBits { ea_bits, suffix } => write!(
                f,
                "{ea_bits} EA bits cannot hold the {suffix}-bit IPv4 suffix the IPv4 prefix \
                 leaves; EA bits must be at least {suffix}"
            ),
            Self::OffsetTooLarge(n) => {
                write!(f, "PSID offset {n}; it is at most {MAX_PSID_OFFSET}")
            }
            Self::PortsTooNarrow {
                psid_offset,
                psid_len,
            } => write!(
                f,
                "PSID offset {psid_offset} plus the {psid_len}-bit PSID exceed the 16 bits of a \
                 port"
            ),
            Self::BadBr(addr) => write!(f, "{addr} is not a unicast address"),
        }
    }
}

impl std::error::Error for RuleError {}

/// Why a rule does not apply to an end-user prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MapError {
    /// The prefix is not inside the rule's IPv6 prefix.
    OutsideRule { prefix: Ipv6Net, rule: Ipv6Net },
    /// The prefix is shorter than the rule prefix plus the EA bits, so the EA bits are not all
    /// the CE's.
    TooShort { prefix: Ipv6Net, needed: u8 },
    /// Longer than /64: a MAP address is a /64 and an interface identifier.
    TooLong(Ipv6Net),
    /// None of a rule set's rules covers the prefix.
    NoRule { prefix: Ipv6Net, set: &'static str },
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OutsideRule { prefix, rule } => {
                write!(f, "{prefix} is not inside the rule's IPv6 prefix {rule}")
            }
            Self::TooShort { prefix, needed } => write!(
                f,
                "{prefix} is shorter than /{needed}, the rule prefix plus its EA bits"
            ),
            Self::TooLong(prefix) => write!(
                f,
                "{prefix} is longer than /64; give the delegated prefix (or the /64 of an \
                 RA-only line)"
            ),
            Self::NoRule { prefix, set } => write!(
                f,
                "no rule of the built-in set {set:?} covers {prefix}; give the rule explicitly"
            ),
        }
    }
}

impl std::error::Error for MapError {}

impl Rule {
    /// A rule with `ea_bits` EA bits under `ipv6_prefix` that map to addresses of
    /// `ipv4_prefix`, the PSID after `psid_offset` bits of each port, tunnelled to `br`.
    pub fn new(
        ipv6_prefix: Ipv6Net,
        ipv4_prefix: Ipv4Net,
        ea_bits: u8,
        psid_offset: u8,
        br: Ipv6Addr,
        layout: Layout,
    ) -> Result<Self, RuleError> {
        if ipv6_prefix.trunc() != ipv6_prefix {
            return Err(RuleError::HostBits {
                field: RuleField::Ipv6Prefix,
                canonical: ipv6_prefix.trunc().to_string(),
            });
        }
        if ipv4_prefix.trunc() != ipv4_prefix {
            return Err(RuleError::HostBits {
                field: RuleField::Ipv4Prefix,
                canonical: ipv4_prefix.trunc().to_string(),
            });
        }
        if ea_bits > MAX_EA_BITS {
            return Err(RuleError::TooManyEaBits(ea_bits));
        }
        if u16::from(ipv6_prefix.prefix_len()) + u16::from(ea_bits) > 64 {
            return Err(RuleError::PastSlash64 {
                ipv6_len: ipv6_prefix.prefix_len(),
                ea_bits,
            });
        }
        if psid_offset > MAX_PSID_OFFSET {
            return Err(RuleError::OffsetTooLarge(psid_offset));
        }
        let suffix = 32 - ipv4_prefix.prefix_len();
        if ea_bits < suffix {
            return Err(RuleError::TooFewEaBits { ea_bits, suffix });
        }
        let psid_len = ea_bits - suffix;
        if u16::from(psid_offset) + u16::from(psid_len) > 16 {
            return Err(RuleError::PortsTooNarrow {
                psid_offset,
                psid_len,
            });
        }
        if br.is_unspecified() || br.is_loopback() || br.is_multicast() {
            return Err(RuleError::BadBr(br));
        }
        Ok(Self {
            ipv6_prefix,
            ipv4_prefix,
            ea_bits,
            psid_offset,
            br,
            layout,
        })
    }

    pub fn ipv6_prefix(&self) -> Ipv6Net {
        self.ipv6_prefix
    }

    pub fn ipv4_prefix(&self) -> Ipv4Net {
        self.ipv4_prefix
    }

    pub fn ea_bits(&self) -> u8 {
        self.ea_bits
    }

    pub fn psid_offset(&self) -> u8 {
        self.psid_offset
    }

    /// PSID length: the EA bits left after the IPv4 suffix.
    pub fn psid_len(&self) -> u8 {
        self.ea_bits - (32 - self.ipv4_prefix.prefix_len())
    }

    pub fn br(&self) -> Ipv6Addr {
        self.br
    }

    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Whether `prefix` lies inside the rule's IPv6 prefix.
    pub fn covers(&self, prefix: &Ipv6Net) -> bool {
        self.ipv6_prefix.contains(prefix)
    }

    /// What the rule gives the CE delegated `prefix` (RFC 7597 §5.2 and §6): the EA bits are
    /// the `ea_bits` bits of `prefix` after the rule prefix; their first bits complete the IPv4
    /// address, the rest are the PSID.
    pub fn map(&self, prefix: Ipv6Net) -> Result<Mapping, MapError> {
        if !self.covers(&prefix) {
            return Err(MapError::OutsideRule {
                prefix,
                rule: self.ipv6_prefix,
            });
        }
        let needed = self.ipv6_prefix.prefix_len() + self.ea_bits;
        if prefix.prefix_len() < needed {
            return Err(MapError::TooShort { prefix, needed });
        }
        if prefix.prefix_len() > 64 {
            return Err(MapError::TooLong(prefix));
        }
        let bits = u128::from(prefix.network());
        let ea = if self.ea_bits == 0 {
            0
        } else {
            let shift = 128 - u32::from(needed);
            ((bits >> shift) & ((1u128 << self.ea_bits) - 1)) as u64
        };
        let psid_len = self.psid_len();
        let suffix = (ea >> psid_len) as u32;
        let psid = (ea & ((1u64 << psid_len) - 1)) as u16;
        let ipv4 = Ipv4Addr::from(u32::from(self.ipv4_prefix.network()) | suffix);
        // The end-user prefix, a zero subnet ID up to /64, then the interface identifier.
        let subnet = bits & !((1u128 << 64) - 1);
        let map_address = Ipv6Addr::from(subnet | u128::from(self.layout.interface_id(ipv4, psid)));
        let ports = PortSet::new(psid, psid_len, self.psid_offset)
            .expect("Rule::new checked offset + PSID length");
        Ok(Mapping {
            ipv4,
            ports,
            map_address,
            br: self.br,
        })
    }
}

/// What a rule gives one CE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Mapping {
    /// The IPv4 address the CE shares (with no sharing, the CE's own).
    pub ipv4: Ipv4Addr,
    /// The CE's PSID and the ports it may use as sources.
    pub ports: PortSet,
    /// The CE's MAP IPv6 address: the tunnel's local end.
    pub map_address: Ipv6Addr,
    /// The Border Relay: the tunnel's remote end.
    pub br: Ipv6Addr,
}
