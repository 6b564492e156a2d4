//! From a softwire and what the host knows now to the RFC 2473 tunnel that carries it.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::{Aftr, B4_ADDRESS, B4_PREFIX_LEN, MapRule, Softwire, SoftwireKind};
use crate::mape::{MapError, Mapping, Rule};
use crate::model::{Mode, Tunnel};

/// What the host knows that the config does not.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Facts {
    /// MAP-E: the prefix delegated to (or advertised on) `device_prefix`.
    pub prefix: Option<Ipv6Net>,
    /// DS-Lite: the AFTR's address, when it is configured by name.
    pub aftr: Option<Ipv6Addr>,
    /// DS-Lite without `local`: the WAN address the host would use to reach the AFTR.
    pub wan_address: Option<Ipv6Addr>,
}

/// A softwire as the dataplane runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lowered {
    /// An ipip6 tunnel: local = MAP address or WAN address, remote = BR or AFTR, the CE's IPv4
    /// address (or the B4 address) on the device, 0.0.0.0/0 routed in when asked, any IPv4
    /// source accepted from the one remote.
    pub tunnel: Tunnel,
    /// MAP-E: the rule used and what it gives this CE (shared address, port set).
    pub map: Option<(Rule, Mapping)>,
    /// MAP-E: the MAP address, which must be an address of `device_prefix` (as a /128) for
    /// the host to accept the BR's packets to it.
    pub wan_address: Option<(String, Ipv6Addr)>,
}

/// Why a softwire cannot be lowered yet (or at all) with the facts at hand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LowerError {
    /// MAP-E: `device_prefix` has no global prefix yet.
    NoPrefix { device: String },
    /// MAP-E: the rule does not apply to the prefix.
    Map(MapError),
    /// DS-Lite: the AFTR's name is not resolved yet.
    AftrUnresolved(String),
    /// DS-Lite without `local`: no WAN address to send from.
    NoWanAddress,
}

impl fmt::Display for LowerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoPrefix { device } => write!(f, "{device} has no global IPv6 prefix yet"),
            Self::Map(e) => e.fmt(f),
            Self::AftrUnresolved(name) => write!(f, "the AFTR {name} is not resolved yet"),
            Self::NoWanAddress => f.write_str("no global IPv6 address to reach the AFTR from"),
        }
    }
}

impl std::error::Error for LowerError {}

/// The RFC 2473 tunnel that carries `sw` given `facts`. Pure: the daemon calls it at start and
/// again whenever a fact changes (re-delegation, a new AFTR address), and applies the
/// difference.
pub fn lower(sw: &Softwire, facts: &Facts) -> Result<Lowered, LowerError> {
    let (local, remote, address, map, wan_address) = match &sw.kind {
        SoftwireKind::MapE(mape) => {
            let prefix = facts.prefix.ok_or_else(|| LowerError::NoPrefix {
                device: mape.device_prefix.clone(),
            })?;
            let (rule, mapping) = match mape.rule {
                MapRule::Builtin(set) => set.map(prefix).map_err(LowerError::Map)?,
                MapRule::Explicit(rule) => (rule, rule.map(prefix).map_err(LowerError::Map)?),
            };
            (
                mapping.map_address,
                mapping.br,
                Ipv4Net::from(mapping.ipv4),
                Some((rule, mapping)),
                Some((mape.device_prefix.clone(), mapping.map_address)),
            )
        }
        SoftwireKind::DsLite(dslite) => {
            let remote = match &dslite.aftr {
                Aftr::Address(addr) => *addr,
                Aftr::Name(name) => facts
                    .aftr
                    .ok_or_else(|| LowerError::AftrUnresolved(name.clone()))?,
            };
            let local = dslite
                .local
                .or(facts.wan_address)
                .ok_or(LowerError::NoWanAddress)?;
            let b4 = Ipv4Net::new(B4_ADDRESS, B4_PREFIX_LEN).expect("/29 is a prefix length");
            (local, remote, b4, None, None)
        }
    };
    let mut tunnel = Tunnel::new(&sw.name, Mode::Ipip6, IpAddr::V6(local), IpAddr::V6(remote));
    tunnel.device.clone_from(&sw.device);
    tunnel.paths[0].device.clone_from(&sw.device);
    tunnel.addresses = vec![IpNet::V4(address)];
    let any = IpNet::V4(Ipv4Net::new(Ipv4Addr::UNSPECIFIED, 0).expect("/0 is a prefix length"));
    if sw.default_route {
        tunnel.routes = vec![any];
    }
    // Replies come from anywhere on the IPv4 internet; that they come from the BR or AFTR is
    // what the outer source check is for.
    tunnel.allowed_sources = vec![any];
    tunnel.mss_clamp = sw.mss_clamp;
    tunnel.dataplane = sw.dataplane;
    tunnel.enabled = sw.enabled;
    Ok(Lowered {
        tunnel,
        map,
        wan_address,
    })
}
