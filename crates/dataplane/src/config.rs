//! What a tunnel is: its endpoints, what it carries and how it frames it.

use core::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// Names one tunnel inside a [`Dataplane`](crate::Dataplane).
///
/// Ids are handed out in increasing order and never reused by the same
/// `Dataplane`, so a shell holding a stale id after a reload cannot feed packets
/// into the tunnel that replaced it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TunnelId(pub u32);

impl fmt::Display for TunnelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tunnel#{}", self.0)
    }
}

/// Which inner address families the tunnel carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Mode {
    /// IPv4 in IPv6 (Linux `ip6tnl mode ipip6`, YAMAHA `tunnel encapsulation ipip`).
    #[default]
    Ipip6,
    /// IPv6 in IPv6 (Linux `ip6tnl mode ip6ip6`).
    Ip6ip6,
    /// Both (Linux `ip6tnl mode any`).
    Any,
}

impl Mode {
    pub const fn carries_ipv4(self) -> bool {
        matches!(self, Self::Ipip6 | Self::Any)
    }

    pub const fn carries_ipv6(self) -> bool {
        matches!(self, Self::Ip6ip6 | Self::Any)
    }
}

/// The RFC 2473 §5.1 Tunnel Encapsulation Limit option on transmitted packets.
///
/// The default is to send none: YAMAHA RTX1200 and Cisco treat the option as
/// malformed and drop the packet, which is the trap of scenario S1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum EncapLimit {
    #[default]
    None,
    Limit(u8),
}

impl EncapLimit {
    /// Bytes the option adds between the outer IPv6 header and the inner packet.
    pub const fn overhead(self) -> usize {
        match self {
            Self::None => 0,
            Self::Limit(_) => wire::ipv6_ext::ENCAP_LIMIT_HEADER_LEN,
        }
    }
}

/// The outer traffic class.
///
/// In both cases the outer ECN field is the inner one (RFC 6040 §4.1, normal
/// mode, as Linux ip6tnl does), so that congestion marks set on the underlay
/// can be carried back inside at the far end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TrafficClass {
    /// This DSCP (the upper six bits; the ECN bits of the value are ignored).
    Fixed(u8),
    /// Copy the inner IPv4 TOS / IPv6 traffic class.
    Inherit,
}

impl Default for TrafficClass {
    fn default() -> Self {
        Self::Fixed(0)
    }
}

/// TCP MSS clamping on SYN segments crossing the tunnel, in both directions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum MssClamp {
    Off,
    /// The current effective tunnel MTU less the IPv4+TCP (40) or IPv6+TCP (60)
    /// headers, like YAMAHA `ip tunnel tcp mss limit auto`; follows path MTU changes.
    #[default]
    Auto,
    /// This MSS for both families.
    Fixed(u16),
}

/// One tunnel as the core sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelConfig {
    pub name: String,
    pub mode: Mode,
    pub local: Ipv6Addr,
    pub remote: Ipv6Addr,
    pub encap_limit: EncapLimit,
    /// The inner MTU: the largest inner packet sent without fragmenting or
    /// answering with an ICMP error.
    pub mtu: u16,
    pub hop_limit: u8,
    pub traffic_class: TrafficClass,
    /// Inner destinations that may enter the tunnel.
    pub routes: Vec<IpNet>,
    /// Inner sources that may leave the tunnel towards us; empty means none.
    pub allowed_sources: Vec<IpNet>,
    /// Per-family switches on top of `mode` (scenario S0's "refuse inner IPv6").
    pub allow_ipv4: bool,
    pub allow_ipv6: bool,
    pub mss_clamp: MssClamp,
    /// Source of the ICMP errors this tunnel generates towards inner senders;
    /// without one, oversized packets are dropped silently.
    pub icmp_source_v4: Option<Ipv4Addr>,
    pub icmp_source_v6: Option<Ipv6Addr>,
}

/// Linux ip6tnl's default hop limit (`DEFAULT_TNL_HOP_LIMIT`).
pub const DEFAULT_HOP_LIMIT: u8 = 64;

/// The smallest MTU an IPv4 link may have (RFC 791): a 60-byte header plus one
/// 8-byte fragment.
pub const MIN_IPV4_MTU: u16 = 68;

/// The smallest MTU an IPv6 link may have (RFC 8200 §5).
pub const MIN_IPV6_MTU: u16 = 1280;

impl TunnelConfig {
    /// A tunnel with ip6tnl's defaults and an inner MTU for a 1500-byte underlay;
    /// routes and allowed sources are left empty.
    pub fn new(name: impl Into<String>, mode: Mode, local: Ipv6Addr, remote: Ipv6Addr) -> Self {
        Self {
            name: name.into(),
            mode,
            local,
            remote,
            encap_limit: EncapLimit::None,
            mtu: 1460,
            hop_limit: DEFAULT_HOP_LIMIT,
            traffic_class: TrafficClass::default(),
            routes: Vec::new(),
            allowed_sources: Vec::new(),
            allow_ipv4: true,
            allow_ipv6: true,
            mss_clamp: MssClamp::default(),
            icmp_source_v4: None,
            icmp_source_v6: None,
        }
    }

    pub fn carries_ipv4(&self) -> bool {
        self.allow_ipv4 && self.mode.carries_ipv4()
    }

    pub fn carries_ipv6(&self) -> bool {
        self.allow_ipv6 && self.mode.carries_ipv6()
    }

    /// The smallest inner MTU this tunnel may run with.
    pub fn min_mtu(&self) -> u16 {
        if self.carries_ipv6() {
            MIN_IPV6_MTU
        } else {
            MIN_IPV4_MTU
        }
    }

    /// The largest inner MTU: the outer payload length is a 16-bit field.
    pub fn max_mtu(&self) -> u16 {
        // The overhead is 0 or 8, so this never underflows.
        u16::MAX - self.encap_limit.overhead() as u16
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        for (which, addr) in [("local", self.local), ("remote", self.remote)] {
            if addr.is_unspecified() || addr.is_multicast() || addr.is_loopback() {
                return Err(ConfigError::BadEndpoint { which, addr });
            }
        }
        if self.local == self.remote {
            return Err(ConfigError::LocalIsRemote { addr: self.local });
        }
        let (min, max) = (self.min_mtu(), self.max_mtu());
        if self.mtu < min || self.mtu > max {
            return Err(ConfigError::MtuOutOfRange {
                mtu: self.mtu,
                min,
                max,
            });
        }
        if self.hop_limit == 0 {
            return Err(ConfigError::ZeroHopLimit);
        }
        if !self.carries_ipv4() && !self.carries_ipv6() {
            return Err(ConfigError::NoFamily);
        }
        Ok(())
    }
}

/// Why [`Dataplane::add_tunnel`](crate::Dataplane::add_tunnel) refused a tunnel.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// Another tunnel already has these endpoints: received packets could not
    /// be told apart.
    DuplicateEndpoints {
        existing: TunnelId,
        local: Ipv6Addr,
        remote: Ipv6Addr,
    },
    BadEndpoint {
        which: &'static str,
        addr: Ipv6Addr,
    },
    LocalIsRemote {
        addr: Ipv6Addr,
    },
    MtuOutOfRange {
        mtu: u16,
        min: u16,
        max: u16,
    },
    ZeroHopLimit,
    /// The mode and the per-family switches leave nothing to carry.
    NoFamily,
    /// No ids left; only reachable after four billion additions.
    IdsExhausted,
    NoSuchTunnel {
        id: TunnelId,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DuplicateEndpoints {
                existing,
                local,
                remote,
            } => write!(
                f,
                "{existing} already runs between local {local} and remote {remote}"
            ),
            Self::BadEndpoint { which, addr } => write!(
                f,
                "{which} address {addr} cannot be a tunnel endpoint (unspecified, multicast or loopback)"
            ),
            Self::LocalIsRemote { addr } => {
                write!(f, "local and remote are both {addr}")
            }
            Self::MtuOutOfRange { mtu, min, max } => {
                write!(f, "mtu {mtu} is outside {min}..={max} for this mode")
            }
            Self::ZeroHopLimit => f.write_str("hop limit 0 would never leave this host"),
            Self::NoFamily => f.write_str("mode and allow_ipv4/allow_ipv6 leave no inner family"),
            Self::IdsExhausted => f.write_str("no tunnel ids left"),
            Self::NoSuchTunnel { id } => write!(f, "{id} does not exist"),
        }
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(mode: Mode) -> TunnelConfig {
        TunnelConfig::new(
            "t",
            mode,
            "2001:db8::1".parse().unwrap(),
            "2001:db8::2".parse().unwrap(),
        )
    }

    #[test]
    fn defaults_match_ip6tnl_without_the_option() {
        let c = config(Mode::Ipip6);
        assert_eq!(c.encap_limit, EncapLimit::None);
        assert_eq!(c.hop_limit, 64);
        assert_eq!(c.traffic_class, TrafficClass::Fixed(0));
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn mtu_bounds_follow_the_mode() {
        let mut c = config(Mode::Ipip6);
        c.mtu = 68;
        assert_eq!(c.validate(), Ok(()));
        c.mtu = 67;
        assert_eq!(
            c.validate(),
            Err(ConfigError::MtuOutOfRange {
                mtu: 67,
                min: 68,
                max: 65535
            })
        );
        let mut c = config(Mode::Any);
        c.mtu = 1279;
        assert!(matches!(
            c.validate(),
            Err(ConfigError::MtuOutOfRange { min: 1280, .. })
        ));
        c.encap_limit = EncapLimit::Limit(4);
        c.mtu = 65535;
        assert!(matches!(
            c.validate(),
            Err(ConfigError::MtuOutOfRange { max: 65527, .. })
        ));
    }

    #[test]
    fn rejects_endpoints_that_cannot_be_tunnel_ends() {
        let mut c = config(Mode::Ipip6);
        c.remote = Ipv6Addr::UNSPECIFIED;
        assert!(matches!(
            c.validate(),
            Err(ConfigError::BadEndpoint {
                which: "remote",
                ..
            })
        ));
        let mut c = config(Mode::Ipip6);
        c.local = "ff02::1".parse().unwrap();
        assert!(matches!(
            c.validate(),
            Err(ConfigError::BadEndpoint { which: "local", .. })
        ));
        let mut c = config(Mode::Ipip6);
        c.remote = c.local;
        assert!(matches!(
            c.validate(),
            Err(ConfigError::LocalIsRemote { .. })
        ));
    }

    #[test]
    fn rejects_a_tunnel_that_carries_nothing() {
        let mut c = config(Mode::Ipip6);
        c.allow_ipv4 = false;
        assert_eq!(c.validate(), Err(ConfigError::NoFamily));
        let mut c = config(Mode::Any);
        c.allow_ipv6 = false;
        assert!(c.carries_ipv4());
        assert!(!c.carries_ipv6());
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn rejects_zero_hop_limit() {
        let mut c = config(Mode::Ipip6);
        c.hop_limit = 0;
        assert_eq!(c.validate(), Err(ConfigError::ZeroHopLimit));
    }

    #[test]
    fn errors_display_their_values() {
        let e = ConfigError::MtuOutOfRange {
            mtu: 10,
            min: 68,
            max: 65535,
        };
        assert_eq!(e.to_string(), "mtu 10 is outside 68..=65535 for this mode");
        assert_eq!(TunnelId(3).to_string(), "tunnel#3");
    }
}
