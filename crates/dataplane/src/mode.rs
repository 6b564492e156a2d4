//! What a tunnel carries inside its outer header: the config's `mode` and `inner_families`,
//! which the RFC 2473 core acts on and the ESP core shares (an ipsec tunnel carries the
//! families of its traffic selectors).

use core::fmt;

use ipnet::IpNet;

/// What a tunnel carries inside the outer header, and how.
///
/// Exhaustive on purpose: a new mode makes every place that must handle it fail to compile
/// instead of falling into a catch-all arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Mode {
    /// IPv4 in IPv6 (RFC 2473, next header 4): Linux ip6tnl `mode ipip6`, YAMAHA `ipip`.
    #[default]
    Ipip6,
    /// IPv6 in IPv6 (next header 41): Linux ip6tnl `mode ip6ip6`.
    Ip6ip6,
    /// Both, like ip6tnl `mode any`.
    Any,
    /// IKEv2-negotiated ESP in tunnel mode (RFC 4303), raw or in UDP 4500; carries the
    /// families its `local_subnets` and `routes` name.
    Ipsec,
}

impl Mode {
    pub const ALL: [Self; 4] = [Self::Ipip6, Self::Ip6ip6, Self::Any, Self::Ipsec];

    /// The spelling used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ipip6 => "ipip6",
            Self::Ip6ip6 => "ip6ip6",
            Self::Any => "any",
            Self::Ipsec => "ipsec",
        }
    }

    /// Inner families the mode can carry. For ipsec both: a tunnel's own are the families of
    /// its traffic selectors.
    pub fn families(self) -> InnerFamilies {
        match self {
            Self::Ipip6 => InnerFamilies::IPV4,
            Self::Ip6ip6 => InnerFamilies::IPV6,
            Self::Any | Self::Ipsec => InnerFamilies::BOTH,
        }
    }

    pub const fn carries_ipv4(self) -> bool {
        matches!(self, Self::Ipip6 | Self::Any | Self::Ipsec)
    }

    pub const fn carries_ipv6(self) -> bool {
        matches!(self, Self::Ip6ip6 | Self::Any | Self::Ipsec)
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Inner address families a tunnel lets through; the other family is dropped inside the tunnel
/// (the S0 "filter IPv6" switch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct InnerFamilies {
    pub ipv4: bool,
    pub ipv6: bool,
}

impl InnerFamilies {
    pub const IPV4: Self = Self {
        ipv4: true,
        ipv6: false,
    };
    pub const IPV6: Self = Self {
        ipv4: false,
        ipv6: true,
    };
    pub const BOTH: Self = Self {
        ipv4: true,
        ipv6: true,
    };

    /// Whether prefixes of `net`'s family may pass.
    pub fn allows(self, net: &IpNet) -> bool {
        match net {
            IpNet::V4(_) => self.ipv4,
            IpNet::V6(_) => self.ipv6,
        }
    }

    /// Whether every family in `self` is also in `other`.
    pub fn is_subset_of(self, other: Self) -> bool {
        (!self.ipv4 || other.ipv4) && (!self.ipv6 || other.ipv6)
    }
}

impl fmt::Display for InnerFamilies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.ipv4, self.ipv6) {
            (true, true) => f.write_str("ipv4, ipv6"),
            (true, false) => f.write_str("ipv4"),
            (false, true) => f.write_str("ipv6"),
            (false, false) => f.write_str("none"),
        }
    }
}
