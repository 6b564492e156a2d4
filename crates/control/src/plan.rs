//! The pure plan of host state the daemon installs for a config.
//!
//! A plan is plain data, equal for equal inputs, so the daemon can compare the plan it applied
//! with a new one and tests can check it without a host.

use std::net::Ipv6Addr;

use ipnet::IpNet;

use crate::model::{Config, Gateway, PIN_BYPASS_MARK, Tunnel, WatchRoute};

/// One sysctl to set. The daemon records the old value and restores it at stop.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SysctlChange {
    /// Path below `/proc/sys` with `/` separators (`net/ipv4/conf/v6g-home/rp_filter`): device
    /// names may hold dots, which the dotted `sysctl` spelling would split.
    pub key: String,
    pub value: String,
}

impl SysctlChange {
    fn new(key: String, value: &str) -> Self {
        Self {
            key,
            value: value.to_owned(),
        }
    }
}

/// A route into a tunnel's device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RoutePlan {
    pub dst: IpNet,
    pub table: u32,
    pub metric: u32,
}

/// Host state of one enabled tunnel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelPlan {
    pub name: String,
    pub device: String,
    pub mtu: u16,
    pub addresses: Vec<IpNet>,
    pub routes: Vec<RoutePlan>,
    /// The remote, to be pinned in the pin table to the underlay it is reached through now.
    pub pinned_endpoint: Ipv6Addr,
    pub device_sysctls: Vec<SysctlChange>,
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

/// The host state for `config`. `underlay_mtu` is asked, only for tunnels with neither `mtu`
/// nor `underlay_mtu` configured, for the MTU of the device the remote is routed through.
pub fn plan(config: &Config, underlay_mtu: impl Fn(&Tunnel) -> u16) -> Plan {
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
    let tunnels = config
        .enabled_tunnels()
        .map(|t| {
            let underlay = t.underlay_mtu.unwrap_or_else(|| match t.mtu {
                // The configured MTU wins; the underlay is not needed, so not asked for.
                Some(_) => 0,
                None => underlay_mtu(t),
            });
            tunnel_plan(gateway, t, underlay)
        })
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

/// The host state of one tunnel, given the MTU of the underlay its remote is reached through
/// (ignored when the tunnel sets `mtu` or `underlay_mtu`).
pub fn tunnel_plan(gateway: &Gateway, t: &Tunnel, underlay_mtu: u16) -> TunnelPlan {
    let mtu = match (t.mtu, t.underlay_mtu) {
        (Some(mtu), _) => mtu,
        (None, Some(underlay)) => t.effective_mtu(underlay),
        (None, None) => t.effective_mtu(underlay_mtu),
    };
    TunnelPlan {
        name: t.name.clone(),
        device: t.device.clone(),
        mtu,
        addresses: t.addresses.clone(),
        routes: t
            .routes
            .iter()
            .map(|&dst| RoutePlan {
                dst,
                table: t.route_table,
                metric: gateway.route_metric,
            })
            .collect(),
        pinned_endpoint: t.remote,
        device_sysctls: device_sysctls(t),
    }
}

fn device_sysctls(t: &Tunnel) -> Vec<SysctlChange> {
    let dev = &t.device;
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
