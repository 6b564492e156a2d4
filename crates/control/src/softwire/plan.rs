//! The host state of a softwire: its lowered tunnel's plan, plus the objects only a softwire
//! has (the MAP address on the WAN device).

use std::net::Ipv6Addr;

use ipnet::Ipv6Net;

use super::{Facts, LowerError, Softwire, lower};
use crate::mape::{Mapping, Rule};
use crate::model::{Gateway, Path};
use crate::plan::{TunnelPlan, tunnel_plan};

/// An address the host must have on a device of its own (not a tunnel's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceAddress {
    pub device: String,
    pub address: Ipv6Net,
}

/// What the daemon installs for one softwire, given the facts of the moment. When a fact
/// changes (re-delegation), the new plan replaces the old one in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SoftwirePlan {
    /// The RFC 2473 tunnel: devices, addresses, routes, the pinned BR or AFTR.
    pub tunnel: TunnelPlan,
    /// MAP-E: the MAP address as a /128 on `device_prefix`, which must exist before the
    /// tunnel sends from it.
    pub wan_address: Option<DeviceAddress>,
    /// MAP-E: the rule used and what it gives this CE (shared address, PSID, port set), for
    /// the port-restricted NAPT and for `status`.
    pub map: Option<(Rule, Mapping)>,
}

/// The plan of `sw` with `facts`; `underlay_mtu` as for [`crate::plan`].
pub fn softwire_plan(
    gateway: &Gateway,
    sw: &Softwire,
    facts: &Facts,
    underlay_mtu: impl Fn(&Path) -> u16,
) -> Result<SoftwirePlan, LowerError> {
    let lowered = lower(sw, facts)?;
    let host = |addr: Ipv6Addr| Ipv6Net::new(addr, 128).expect("/128 is a prefix length");
    Ok(SoftwirePlan {
        tunnel: tunnel_plan(gateway, &lowered.tunnel, underlay_mtu),
        wan_address: lowered.wan_address.map(|(device, addr)| DeviceAddress {
            device,
            address: host(addr),
        }),
        map: lowered.map,
    })
}
