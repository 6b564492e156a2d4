//! The ISP's own IPv4 over IPv6: MAP-E CE (RFC 7597) and DS-Lite B4 (RFC 6333) tunnels.
//!
//! Both are RFC 2473 IPv4-in-IPv6 tunnels whose ends come from the ISP rather than from the
//! config: a MAP-E CE's local end is the MAP address computed from the delegated prefix of
//! `device_prefix` and its remote end the rule's BR; a B4's local end is the WAN address (or
//! `local`) and its remote end the AFTR. [`lower`] turns one, with those facts of the host,
//! into the plain ipip6 [`Tunnel`](crate::Tunnel) the dataplane already runs, so neither is a
//! dataplane of its own.

mod check;
mod lower;
mod plan;
#[cfg(test)]
mod tests;

use std::net::{Ipv4Addr, Ipv6Addr};

use dataplane::MssClamp;

use crate::dataplane_choice::Dataplane;

use crate::mape::{Rule, RuleSet};

pub(crate) use check::{across, check, foreign_keys, is_softwire_mode};
pub use lower::{Facts, LowerError, Lowered, lower};
pub use plan::{DeviceAddress, SoftwirePlan, softwire_plan};

/// The B4's own address on the softwire (RFC 6333 §5.7: 192.0.0.2 of the 192.0.0.0/29 that
/// IANA reserved for DS-Lite; the AFTR is 192.0.0.1).
pub const B4_ADDRESS: Ipv4Addr = Ipv4Addr::new(192, 0, 0, 2);
/// Prefix length of [`B4_ADDRESS`] on the tunnel device.
pub const B4_PREFIX_LEN: u8 = 29;

/// One `mode = "map-e"` or `mode = "ds-lite"` `[[tunnel]]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Softwire {
    pub name: String,
    /// TUN device, `v6g-<name>` unless configured.
    pub device: String,
    pub kind: SoftwireKind,
    /// Route 0.0.0.0/0 into the tunnel. Off unless asked: a watch (S4) may own that route.
    pub default_route: bool,
    pub mss_clamp: MssClamp,
    /// Who moves the softwire's packets, as for any ipip6 tunnel.
    pub dataplane: Dataplane,
    pub enabled: bool,
}

/// What kind of softwire, with what only it has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SoftwireKind {
    MapE(MapE),
    DsLite(DsLite),
}

impl SoftwireKind {
    /// The `mode` spelling.
    pub fn mode(&self) -> &'static str {
        match self {
            Self::MapE(_) => "map-e",
            Self::DsLite(_) => "ds-lite",
        }
    }
}

/// A MAP-E CE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapE {
    /// The device whose delegated (or RA) prefix the rule maps; followed when it changes.
    pub device_prefix: String,
    pub rule: MapRule,
}

/// Where a MAP-E CE's rule comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapRule {
    /// A built-in set: the rule covering the prefix is picked when the prefix is known.
    Builtin(&'static RuleSet),
    Explicit(Rule),
}

/// A DS-Lite B4.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DsLite {
    pub aftr: Aftr,
    /// `None` = the WAN address the host would use to reach the AFTR.
    pub local: Option<Ipv6Addr>,
}

/// The AFTR, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Aftr {
    Address(Ipv6Addr),
    /// Resolved (AAAA) and re-resolved like any named peer.
    Name(String),
}
