//! The pure plan of host state the daemon installs for a config.
//!
//! A plan is plain data, equal for equal inputs, so the daemon can compare the plan it applied
//! with a new one and tests can check it without a host.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::model::{Config, Gateway, PIN_BYPASS_MARK, Path, Tunnel, WatchRoute};

pub use crate::sysctl::SysctlChange;

/// A route into a tunnel's device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RoutePlan {
    pub dst: IpNet,
    pub table: u32,
    pub metric: u32,
}

/// One TUN device of a tunnel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevicePlan {
    pub name: String,
    pub mtu: u16,
    pub addresses: Vec<IpNet>,
    /// Routes into this device. With `device_per_path` every path's device has the tunnel's
    /// routes at `route_metric + cost`, and the daemon withdraws those of a path that is down.
    pub routes: Vec<RoutePlan>,
    pub sysctls: Vec<SysctlChange>,
}

/// One underlay path of a tunnel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPlan {
    pub name: String,
    /// The device whose inner packets the path carries (a name in [`TunnelPlan::devices`]).
    pub device: String,
    /// Outer source address; must be an address of this host.
    pub local: IpAddr,
    /// The remote, to be pinned in the pin table (of its family) to the underlay it is reached
    /// through now.
    pub pinned_endpoint: IpAddr,
    pub cost: u32,
}

/// Host state of one enabled tunnel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelPlan {
    pub name: String,
    /// The tunnel's device, or with `device_per_path` one per path, in path order.
    pub devices: Vec<DevicePlan>,
    /// In path order.
    pub paths: Vec<PathPlan>,
}

impl TunnelPlan {
    /// The device called `name`, if the tunnel has it.
    pub fn device(&self, name: &str) -> Option<&DevicePlan> {
        self.devices.iter().find(|d| d.name == name)
    }
}

/// Host state of a whole config: what the daemon installs at start and removes at stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Gateway-wide sysctls (forwarding), only those the config asks for.
    pub sysctls: Vec<SysctlChange>,
    /// Table holding one host route per pinned endpoint.
    pub pin_table: u32,
    /// Priority of the rules (one per family) `not fwmark pin_mark lookup pin_table`.
    pub pin_rule_priority: u32,
    /// Mark on the daemon's own lookups and packets, which skip the pin rule.
    pub pin_mark: u32,
    /// Enabled tunnels, in config order.
    pub tunnels: Vec<TunnelPlan>,
    /// Watches, in config order.
    pub watches: Vec<WatchPlan>,
}

/// The route of one watch: installed while the watch is up, withdrawn while it is down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchPlan {
    pub name: String,
    pub route: WatchRoute,
}

impl Plan {
    /// The plan of the tunnel called `name`, if it is enabled.
    pub fn tunnel(&self, name: &str) -> Option<&TunnelPlan> {
        self.tunnels.iter().find(|t| t.name == name)
    }

    /// The plan of the watch called `name`.
    pub fn watch(&self, name: &str) -> Option<&WatchPlan> {
        self.watches.iter().find(|w| w.name == name)
    }
}

/// The host state for `config`. `underlay_mtu` is asked, only for paths with no `underlay_mtu`
/// of tunnels with no `mtu`, for the MTU of the device the path's remote is routed through.
pub fn plan(config: &Config, underlay_mtu: impl Fn(&Tunnel, &Path) -> u16) -> Plan {
    let gateway = &config.gateway;
    let mut sysctls = Vec::new();
    if let Some(on) = gateway.ipv4_forwarding {
        sysctls.push(SysctlChange::new("net/ipv4/ip_forward".into(), flag(on)));
    }
    if let Some(on) = gateway.ipv6_forwarding {
        sysctls.push(SysctlChange::new(
            "net/ipv6/conf/all/forwarding".into(),
            flag(on),
        ));
    }
    sysctls.extend(config.sysctls.iter().cloned());
    let tunnels = config
        .enabled_tunnels()
        .map(|t| tunnel_plan(gateway, t, |p| underlay_mtu(t, p)))
        .collect();
    Plan {
        sysctls,
        pin_table: gateway.pin_table,
        pin_rule_priority: gateway.pin_rule_priority,
        pin_mark: PIN_BYPASS_MARK,
        tunnels,
        watches: config
            .watches
            .iter()
            .map(|w| WatchPlan {
                name: w.name.clone(),
                route: w.route.clone(),
            })
            .collect(),
    }
}

/// The host state of one tunnel. `underlay_mtu` is asked for the MTU of the underlay a path's
/// remote is reached through, only when neither the tunnel's `mtu` nor the path's
/// `underlay_mtu` is configured.
pub fn tunnel_plan(
    gateway: &Gateway,
    t: &Tunnel,
    underlay_mtu: impl Fn(&Path) -> u16,
) -> TunnelPlan {
    let devices = if t.device_per_path {
        t.paths
            .iter()
            .map(|p| {
                let mtu = t.mtu.unwrap_or_else(|| {
                    t.path_mtu(p, p.underlay_mtu.unwrap_or_else(|| underlay_mtu(p)))
                });
                let mut addresses = t.addresses.clone();
                addresses.extend(&p.addresses);
                device_plan(t, &p.device, mtu, addresses, routes(gateway, t, p.cost))
            })
            .collect()
    } else {
        let mtu = t.effective_mtu(&underlay_mtu);
        vec![device_plan(
            t,
            &t.device,
            mtu,
            t.addresses.clone(),
            routes(gateway, t, 0),
        )]
    };
    TunnelPlan {
        name: t.name.clone(),
        devices,
        paths: t
            .paths
            .iter()
            .map(|p| PathPlan {
                name: p.name.clone(),
                device: p.device.clone(),
                local: p.local,
                pinned_endpoint: p.remote,
                cost: p.cost,
            })
            .collect(),
    }
}

/// Every route a tunnel installs, with the device it goes to; what [`tunnel_plan`] puts in its
/// devices, without asking for MTUs.
pub(crate) fn tunnel_routes<'t>(gateway: &Gateway, t: &'t Tunnel) -> Vec<(&'t str, RoutePlan)> {
    if t.device_per_path {
        t.paths
            .iter()
            .flat_map(|p| {
                routes(gateway, t, p.cost)
                    .into_iter()
                    .map(|r| (p.device.as_str(), r))
            })
            .collect()
    } else {
        routes(gateway, t, 0)
            .into_iter()
            .map(|r| (t.device.as_str(), r))
            .collect()
    }
}

fn routes(gateway: &Gateway, t: &Tunnel, cost: u32) -> Vec<RoutePlan> {
    t.routes
        .iter()
        .map(|&dst| RoutePlan {
            dst,
            table: t.route_table,
            metric: gateway.route_metric.saturating_add(cost),
        })
        .collect()
}

fn device_plan(
    t: &Tunnel,
    name: &str,
    mtu: u16,
    addresses: Vec<IpNet>,
    routes: Vec<RoutePlan>,
) -> DevicePlan {
    DevicePlan {
        name: name.to_owned(),
        mtu,
        addresses,
        routes,
        sysctls: device_sysctls(name, t),
    }
}

fn device_sysctls(dev: &str, t: &Tunnel) -> Vec<SysctlChange> {
    vec![
        // Loose, not off: the kernel uses the larger of `all` and the device's value, so 0
        // would still be strict on hosts with all/rp_filter=1, and strict drops the peer's
        // packets whenever the return route is not this device (default routes elsewhere).
        SysctlChange::new(format!("net/ipv4/conf/{dev}/rp_filter"), "2"),
        // Router advertisements through a tunnel are the S0 failure: an address and routes
        // learnt inside the tunnel that swallow the tunnel's own endpoint.
        SysctlChange::new(format!("net/ipv6/conf/{dev}/accept_ra"), "0"),
        // Set both ways so the device does not inherit conf/default from the host.
        SysctlChange::new(
            format!("net/ipv6/conf/{dev}/disable_ipv6"),
            flag(!t.inner_families.ipv6),
        ),
    ]
}

fn flag(on: bool) -> &'static str {
    if on { "1" } else { "0" }
}
