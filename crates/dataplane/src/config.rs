//! What a tunnel is: its paths, what it carries and how it frames it.

use core::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use crate::HealthConfig;
use crate::mode::Mode;

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

/// Names one path of a tunnel: its position in [`TunnelConfig::paths`].
///
/// Positions follow the configuration, so a reload that reorders or removes
/// paths changes them; names are what stays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct PathId(pub u8);

impl PathId {
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for PathId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "path#{}", self.0)
    }
}

/// How a path is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Probe {
    /// The peer is v6gate: keepalives it answers on the same path, which checks
    /// both directions of exactly this path.
    #[default]
    Keepalive,
    /// The peer is a foreign router (YAMAHA RTX, NEC IX): an ICMP echo to
    /// `target`, an inner address the peer answers for, sent through the path.
    /// The answer may come back on any path, since the peer routes it, so this
    /// checks the way out on this path and some way back.
    Icmp {
        target: IpAddr,
        /// Inner source; without one, `icmp_source_v4` / `icmp_source_v6`.
        source: Option<IpAddr>,
    },
    /// Not checked: the path counts as up.
    None,
}

impl Probe {
    /// The spelling used in the config file.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Keepalive => "keepalive",
            Self::Icmp { .. } => "icmp",
            Self::None => "none",
        }
    }
}

/// One outer path of a tunnel.
///
/// Its family is the family of its addresses: IPv6 paths speak RFC 2473 (as
/// Linux ip6tnl), IPv4 paths RFC 2003 for inner IPv4 and RFC 4213 (protocol 41)
/// for inner IPv6 (as Linux ipip and sit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathConfig {
    pub name: String,
    pub local: IpAddr,
    pub remote: IpAddr,
    /// Traffic takes the cheapest path that is up; ties go to the first listed.
    pub cost: u32,
    pub probe: Probe,
}

/// Bytes an outer IPv4 header adds: v6gate sends no IPv4 options.
pub const IPV4_OVERHEAD: usize = wire::ipv4::HEADER_LEN;

impl PathConfig {
    /// A path of cost 0 probed with keepalives.
    pub fn new(
        name: impl Into<String>,
        local: impl Into<IpAddr>,
        remote: impl Into<IpAddr>,
    ) -> Self {
        Self {
            name: name.into(),
            local: local.into(),
            remote: remote.into(),
            cost: 0,
            probe: Probe::Keepalive,
        }
    }

    pub fn is_ipv4(&self) -> bool {
        self.local.is_ipv4()
    }

    /// Bytes in front of the inner packet on this path.
    pub fn overhead(&self, encap_limit: EncapLimit) -> usize {
        if self.is_ipv4() {
            IPV4_OVERHEAD
        } else {
            wire::ipv6::HEADER_LEN + encap_limit.overhead()
        }
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
    /// At least one, at most [`MAX_PATHS`]; received packets are accepted on
    /// every path, sent ones take the active path.
    pub paths: Vec<PathConfig>,
    /// The Tunnel Encapsulation Limit option, on IPv6 paths only.
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
    /// Probing of the paths, and how soon traffic may fail back: `hold_down`
    /// is the least time between a switch and a failback to a cheaper path.
    /// The paths' own trackers have no hold-down, so that a backup that
    /// recovered is usable at once when the active path fails.
    pub health: HealthConfig,
    /// Each path has a TUN device of its own (for a routing daemon running
    /// OSPF over each, S4): packets are sent with
    /// [`handle_inner_on_path`](crate::Dataplane::handle_inner_on_path),
    /// received ones go to [`Destination::TunPath`](crate::Destination::TunPath),
    /// and `routes` no longer filters what is sent, since the routing daemon
    /// owns the routes.
    pub device_per_path: bool,
}

/// Paths a tunnel may have: more than any site has uplinks, and few enough
/// that the probes of all of them stay negligible.
pub const MAX_PATHS: usize = 64;

/// Linux ip6tnl's default hop limit (`DEFAULT_TNL_HOP_LIMIT`).
pub const DEFAULT_HOP_LIMIT: u8 = 64;

/// The smallest MTU an IPv4 link may have (RFC 791): a 60-byte header plus one
/// 8-byte fragment.
pub const MIN_IPV4_MTU: u16 = 68;

/// The smallest MTU an IPv6 link may have (RFC 8200 §5).
pub const MIN_IPV6_MTU: u16 = 1280;

impl TunnelConfig {
    /// A tunnel with ip6tnl's defaults and an inner MTU for a 1500-byte underlay,
    /// over one IPv6 path named "default" that is not probed, so that it sends
    /// nothing but traffic, like ip6tnl; routes and allowed sources are left
    /// empty.
    pub fn new(name: impl Into<String>, mode: Mode, local: Ipv6Addr, remote: Ipv6Addr) -> Self {
        let path = PathConfig {
            probe: Probe::None,
            ..PathConfig::new("default", local, remote)
        };
        Self {
            name: name.into(),
            mode,
            paths: vec![path],
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
            health: HealthConfig::default(),
            device_per_path: false,
        }
    }

    pub fn path(&self, id: PathId) -> Option<&PathConfig> {
        self.paths.get(id.index())
    }

    /// The paths with their ids.
    pub fn path_ids(&self) -> impl Iterator<Item = (PathId, &PathConfig)> {
        // Validation bounds the count to MAX_PATHS, so the index fits.
        self.paths
            .iter()
            .enumerate()
            .map(|(i, p)| (PathId(i as u8), p))
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

    /// The largest inner MTU: the outer IPv6 payload length and the IPv4 total
    /// length are 16-bit fields.
    pub fn max_mtu(&self) -> u16 {
        let ipv4_max = u16::MAX - IPV4_OVERHEAD as u16;
        // The option's overhead is 0 or 8, so this never underflows.
        let ipv6_max = u16::MAX - self.encap_limit.overhead() as u16;
        self.paths
            .iter()
            .map(|p| if p.is_ipv4() { ipv4_max } else { ipv6_max })
            .min()
            .unwrap_or(ipv6_max)
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.paths.is_empty() {
            return Err(ConfigError::NoPaths);
        }
        if self.paths.len() > MAX_PATHS {
            return Err(ConfigError::TooManyPaths {
                count: self.paths.len(),
            });
        }
        for (i, path) in self.paths.iter().enumerate() {
            self.validate_path(path)?;
            for earlier in &self.paths[..i] {
                if earlier.name == path.name {
                    return Err(ConfigError::DuplicatePathName {
                        name: path.name.clone(),
                    });
                }
                if (earlier.local, earlier.remote) == (path.local, path.remote) {
                    return Err(ConfigError::RepeatedEndpoints {
                        path: path.name.clone(),
                        earlier: earlier.name.clone(),
                    });
                }
            }
        }
        if let Some(problem) = self.health.problem() {
            return Err(ConfigError::BadHealth { problem });
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

    fn validate_path(&self, path: &PathConfig) -> Result<(), ConfigError> {
        let bad = |which, addr| ConfigError::BadEndpoint {
            path: path.name.clone(),
            which,
            addr,
        };
        if path.local.is_ipv4() != path.remote.is_ipv4() {
            return Err(ConfigError::PathFamilyMismatch {
                path: path.name.clone(),
                local: path.local,
                remote: path.remote,
            });
        }
        for (which, addr) in [("local", path.local), ("remote", path.remote)] {
            if !is_unicast(addr) {
                return Err(bad(which, addr));
            }
        }
        if path.local == path.remote {
            return Err(ConfigError::LocalIsRemote {
                path: path.name.clone(),
                addr: path.local,
            });
        }
        if let Probe::Icmp { target, source } = path.probe {
            let problem = if !is_unicast(target) {
                Some("the target is not a unicast address")
            } else if !self.carries_family_of(target) {
                Some("the tunnel does not carry the target's family")
            } else if source.is_some_and(|s| s.is_ipv4() != target.is_ipv4()) {
                Some("source and target are of different families")
            } else if source.is_some_and(|s| !is_unicast(s)) {
                Some("the source is not a unicast address")
            } else if source.is_none() && self.icmp_source_for(target).is_none() {
                Some("no source: give the probe one or set icmp_source_v4/icmp_source_v6")
            } else {
                None
            };
            if let Some(problem) = problem {
                return Err(ConfigError::BadProbe {
                    path: path.name.clone(),
                    problem,
                });
            }
        }
        Ok(())
    }

    fn carries_family_of(&self, addr: IpAddr) -> bool {
        if addr.is_ipv4() {
            self.carries_ipv4()
        } else {
            self.carries_ipv6()
        }
    }

    /// The tunnel's ICMP source of `addr`'s family.
    pub(crate) fn icmp_source_for(&self, addr: IpAddr) -> Option<IpAddr> {
        match addr {
            IpAddr::V4(_) => self.icmp_source_v4.map(IpAddr::V4),
            IpAddr::V6(_) => self.icmp_source_v6.map(IpAddr::V6),
        }
    }
}

/// Whether `addr` can be one end of a path or an ICMP probe.
fn is_unicast(addr: IpAddr) -> bool {
    let broadcast = matches!(addr, IpAddr::V4(v4) if v4.is_broadcast());
    !(addr.is_unspecified() || addr.is_multicast() || addr.is_loopback() || broadcast)
}

/// Why [`Dataplane::add_tunnel`](crate::Dataplane::add_tunnel) refused a tunnel.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// A path of another tunnel already has these endpoints: received packets
    /// could not be told apart.
    DuplicateEndpoints {
        existing: TunnelId,
        local: IpAddr,
        remote: IpAddr,
    },
    /// Two paths of the tunnel have the same endpoints.
    RepeatedEndpoints {
        path: String,
        earlier: String,
    },
    NoPaths,
    TooManyPaths {
        count: usize,
    },
    DuplicatePathName {
        name: String,
    },
    /// One end IPv4, the other IPv6.
    PathFamilyMismatch {
        path: String,
        local: IpAddr,
        remote: IpAddr,
    },
    BadEndpoint {
        path: String,
        which: &'static str,
        addr: IpAddr,
    },
    LocalIsRemote {
        path: String,
        addr: IpAddr,
    },
    BadProbe {
        path: String,
        problem: &'static str,
    },
    BadHealth {
        problem: &'static str,
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
                "{existing} already has a path between local {local} and remote {remote}"
            ),
            Self::RepeatedEndpoints { path, earlier } => write!(
                f,
                "paths {earlier:?} and {path:?} have the same local and remote addresses"
            ),
            Self::NoPaths => f.write_str("a tunnel needs at least one path"),
            Self::TooManyPaths { count } => {
                write!(f, "{count} paths, at most {MAX_PATHS} are supported")
            }
            Self::DuplicatePathName { name } => write!(f, "two paths are named {name:?}"),
            Self::PathFamilyMismatch {
                path,
                local,
                remote,
            } => write!(
                f,
                "path {path:?}: local {local} and remote {remote} are of different families"
            ),
            Self::BadEndpoint { path, which, addr } => write!(
                f,
                "path {path:?}: {which} address {addr} cannot be a tunnel endpoint (unspecified, multicast, broadcast or loopback)"
            ),
            Self::LocalIsRemote { path, addr } => {
                write!(f, "path {path:?}: local and remote are both {addr}")
            }
            Self::BadProbe { path, problem } => write!(f, "path {path:?}: ICMP probe: {problem}"),
            Self::BadHealth { problem } => write!(f, "health: {problem}"),
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
        c.paths[0].remote = Ipv6Addr::UNSPECIFIED.into();
        assert!(matches!(
            c.validate(),
            Err(ConfigError::BadEndpoint {
                which: "remote",
                ..
            })
        ));
        let mut c = config(Mode::Ipip6);
        c.paths[0].local = "ff02::1".parse().unwrap();
        assert!(matches!(
            c.validate(),
            Err(ConfigError::BadEndpoint { which: "local", .. })
        ));
        let mut c = config(Mode::Ipip6);
        c.paths[0].remote = c.paths[0].local;
        assert!(matches!(
            c.validate(),
            Err(ConfigError::LocalIsRemote { .. })
        ));
        for v4 in ["255.255.255.255", "0.0.0.0", "127.0.0.1", "224.0.0.5"] {
            let mut c = config(Mode::Ipip6);
            c.paths[0] = PathConfig::new(
                "v4",
                v4.parse::<Ipv4Addr>().unwrap(),
                Ipv4Addr::new(198, 18, 0, 2),
            );
            assert!(
                matches!(
                    c.validate(),
                    Err(ConfigError::BadEndpoint { which: "local", .. })
                ),
                "{v4}"
            );
        }
    }

    #[test]
    fn paths_are_checked_one_by_one_and_against_each_other() {
        let v4 = |name: &str, local: [u8; 4], remote: [u8; 4]| {
            PathConfig::new(name, Ipv4Addr::from(local), Ipv4Addr::from(remote))
        };
        let mut c = config(Mode::Ipip6);
        c.paths.clear();
        assert_eq!(c.validate(), Err(ConfigError::NoPaths));

        let mut c = config(Mode::Ipip6);
        c.paths = (0..=MAX_PATHS as u8)
            .map(|i| v4(&format!("p{i}"), [198, 18, i, 1], [198, 18, i, 2]))
            .collect();
        assert_eq!(
            c.validate(),
            Err(ConfigError::TooManyPaths {
                count: MAX_PATHS + 1
            })
        );
        c.paths.pop();
        assert_eq!(c.validate(), Ok(()));

        let mut c = config(Mode::Ipip6);
        c.paths
            .push(v4("default", [198, 18, 0, 1], [198, 18, 0, 2]));
        assert_eq!(
            c.validate(),
            Err(ConfigError::DuplicatePathName {
                name: "default".into()
            })
        );
        c.paths[1].name = "pppoe".into();
        assert_eq!(c.validate(), Ok(()));
        c.paths.push(v4("again", [198, 18, 0, 1], [198, 18, 0, 2]));
        assert_eq!(
            c.validate(),
            Err(ConfigError::RepeatedEndpoints {
                path: "again".into(),
                earlier: "pppoe".into()
            })
        );

        let mut c = config(Mode::Ipip6);
        c.paths[0].remote = Ipv4Addr::new(198, 18, 0, 2).into();
        let err = c.validate().unwrap_err();
        assert!(matches!(err, ConfigError::PathFamilyMismatch { .. }));
        assert_eq!(
            err.to_string(),
            "path \"default\": local 2001:db8::1 and remote 198.18.0.2 are of different families"
        );
    }

    #[test]
    fn an_ipv4_path_lowers_the_largest_mtu() {
        let mut c = config(Mode::Ipip6);
        assert_eq!(c.max_mtu(), 65535);
        c.paths.push(PathConfig::new(
            "pppoe",
            Ipv4Addr::new(198, 18, 0, 1),
            Ipv4Addr::new(198, 18, 0, 2),
        ));
        assert_eq!(c.max_mtu(), 65515);
        c.mtu = 65516;
        assert!(matches!(
            c.validate(),
            Err(ConfigError::MtuOutOfRange { max: 65515, .. })
        ));
        // The option only exists on IPv6 paths.
        c.encap_limit = EncapLimit::Limit(4);
        assert_eq!(c.max_mtu(), 65515);
        assert_eq!(c.paths[1].overhead(c.encap_limit), 20);
        assert_eq!(c.paths[0].overhead(c.encap_limit), 48);
    }

    #[test]
    fn health_settings_are_checked() {
        let mut c = config(Mode::Ipip6);
        c.health.down_after = 0;
        let err = c.validate().unwrap_err();
        assert_eq!(err.to_string(), "health: down_after is zero");
    }

    #[test]
    fn the_single_path_form_sends_nothing_but_traffic() {
        let c = config(Mode::Ipip6);
        assert_eq!(c.paths.len(), 1);
        assert_eq!(c.paths[0].name, "default");
        assert_eq!(c.paths[0].probe, Probe::None);
        assert_eq!(c.path(PathId(0)), Some(&c.paths[0]));
        assert_eq!(c.path(PathId(1)), None);
        assert!(!c.device_per_path);
        assert_eq!(PathId(3).to_string(), "path#3");
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
