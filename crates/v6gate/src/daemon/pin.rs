//! Endpoint pinning: which underlay route a tunnel's remote endpoint must keep, so that no
//! route through a tunnel (not even `::/0`, or a connected prefix that contains the remote, as
//! in scenario S0) can ever capture the tunnel's own outer packets.
//!
//! The decision is pure; the daemon feeds it the kernel's answer and the main table, and
//! installs what it returns as a host route in the pin table.

use std::net::IpAddr;

use ipnet::IpNet;
use sys::netlink::{Route, RouteKind, RouteLookup};

/// Where a remote endpoint is pinned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pin {
    /// Via the underlay: a gateway (or on-link) out of a real interface.
    Via { oif: u32, gateway: Option<IpAddr> },
    /// The underlay is gone: drop rather than let the packets fall into a tunnel.
    Blackhole,
}

impl Pin {
    pub fn is_up(&self) -> bool {
        matches!(self, Self::Via { .. })
    }
}

/// What the daemon knows when it decides.
pub struct Facts<'a> {
    /// The kernel's route lookup for the remote, done with the mark that skips the pin table.
    pub lookup: Option<&'a RouteLookup>,
    /// The main table, for when the lookup lands in one of our tunnels.
    pub main_routes: &'a [Route],
    /// Interface indexes of v6gate's own TUN devices.
    pub own_devices: &'a [u32],
    /// The routes of tunnels on the kernel path, which lead into a tunnel through the
    /// underlay device rather than through its TUN device.
    pub kernel_routes: &'a [KernelRoute],
}

/// A kernel-path tunnel's inner route: `dst` via `gateway` on `oif`, where the tunnel's
/// egress program takes what it routes; `device` is the tunnel's TUN device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelRoute {
    pub dst: IpNet,
    pub oif: u32,
    pub gateway: IpAddr,
    pub device: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Pin(Pin),
    /// Nothing but a v6gate tunnel leads to the remote.
    Loop {
        through: u32,
    },
}

/// Picks the underlay route for `remote`.
///
/// The kernel's answer is taken unless it leads into one of our tunnels; then the best route of
/// the main table that does not is used (longest prefix, then lowest metric), because a tunnel
/// route covering the remote (S0) hides the underlay from the kernel's lookup but does not
/// remove it.
pub fn decide(remote: IpAddr, facts: &Facts<'_>) -> Decision {
    // A kernel-path route is a tunnel's like a route into its TUN device: its program would
    // encapsulate the remote's packets.
    let into_kernel_path = |oif: u32, gateway: Option<IpAddr>| {
        facts
            .kernel_routes
            .iter()
            .find(|k| k.oif == oif && Some(k.gateway) == gateway && k.dst.contains(&remote))
            .map(|k| k.device)
    };
    if let Some(lookup) = facts.lookup {
        let usable = matches!(lookup.kind, RouteKind::Unicast);
        match lookup.oif {
            Some(oif)
                if usable
                    && !facts.own_devices.contains(&oif)
                    && into_kernel_path(oif, lookup.gateway).is_none() =>
            {
                return Decision::Pin(Pin::Via {
                    oif,
                    gateway: lookup.gateway,
                });
            }
            _ => {}
        }
    }
    let best = facts
        .main_routes
        .iter()
        .filter(|r| matches!(r.kind, RouteKind::Unicast))
        .filter(|r| r.dst.contains(&remote))
        .filter(|r| r.oif.is_some_and(|o| !facts.own_devices.contains(&o)))
        .filter(|r| {
            !facts
                .kernel_routes
                .iter()
                .any(|k| k.dst == r.dst && r.oif == Some(k.oif) && r.gateway == Some(k.gateway))
        })
        .max_by(|a, b| {
            a.dst
                .prefix_len()
                .cmp(&b.dst.prefix_len())
                .then(b.metric.unwrap_or(0).cmp(&a.metric.unwrap_or(0)))
        });
    if let Some(route) = best {
        return Decision::Pin(Pin::Via {
            oif: route.oif.unwrap_or_default(),
            gateway: route.gateway,
        });
    }
    match facts.lookup.and_then(|l| l.oif.map(|oif| (oif, l.gateway))) {
        Some((oif, _)) if facts.own_devices.contains(&oif) => Decision::Loop { through: oif },
        Some((oif, gateway)) => match into_kernel_path(oif, gateway) {
            Some(device) => Decision::Loop { through: device },
            None => Decision::Pin(Pin::Blackhole),
        },
        None => Decision::Pin(Pin::Blackhole),
    }
}

/// The host route that carries a pin.
pub fn route(remote: IpAddr, pin: Pin, table: u32, protocol: u8) -> Route {
    let dst = IpNet::from(remote);
    let (oif, gateway, kind) = match pin {
        Pin::Via { oif, gateway } => (Some(oif), gateway, RouteKind::Unicast),
        Pin::Blackhole => (None, None, RouteKind::Blackhole),
    };
    Route {
        dst,
        table,
        protocol,
        metric: None,
        oif,
        gateway,
        kind,
        mtu: None,
        prefsrc: None,
        realm: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(oif: u32, gw: Option<&str>) -> RouteLookup {
        RouteLookup {
            oif: Some(oif),
            gateway: gw.map(|g| g.parse().unwrap()),
            prefsrc: None,
            table: 254,
            kind: RouteKind::Unicast,
            realm: None,
        }
    }

    fn main_route(dst: &str, oif: u32, gw: Option<&str>, metric: u32) -> Route {
        Route {
            dst: dst.parse().unwrap(),
            table: 254,
            protocol: 3,
            metric: Some(metric),
            oif: Some(oif),
            gateway: gw.map(|g| g.parse().unwrap()),
            kind: RouteKind::Unicast,
            mtu: None,
            prefsrc: None,
            realm: None,
        }
    }

    const REMOTE: &str = "2001:db8:0:2::1";

    #[test]
    fn plain_underlay_lookup_is_pinned() {
        let l = lookup(2, Some("fe80::1"));
        let d = decide(
            REMOTE.parse().unwrap(),
            &Facts {
                lookup: Some(&l),
                main_routes: &[],
                own_devices: &[7],
                kernel_routes: &[],
            },
        );
        assert_eq!(
            d,
            Decision::Pin(Pin::Via {
                oif: 2,
                gateway: Some("fe80::1".parse().unwrap())
            })
        );
    }

    /// S0: an address inside the server's own /64 on the tunnel makes the kernel route the
    /// server into the tunnel; the pin must still go out of the real interface.
    #[test]
    fn tunnel_route_covering_the_remote_falls_back_to_the_underlay() {
        let l = lookup(7, None);
        let routes = [
            main_route("::/0", 2, Some("fe80::1"), 1024),
            main_route("2001:db8:0:2::/64", 7, None, 256),
            main_route("2001:db8:0:1::/64", 2, None, 256),
        ];
        let d = decide(
            REMOTE.parse().unwrap(),
            &Facts {
                lookup: Some(&l),
                main_routes: &routes,
                own_devices: &[7],
                kernel_routes: &[],
            },
        );
        assert_eq!(
            d,
            Decision::Pin(Pin::Via {
                oif: 2,
                gateway: Some("fe80::1".parse().unwrap())
            })
        );
    }

    #[test]
    fn longest_prefix_then_lowest_metric_wins() {
        let routes = [
            main_route("::/0", 2, Some("fe80::1"), 100),
            main_route("2001:db8::/32", 3, Some("fe80::3"), 500),
            main_route("2001:db8::/32", 4, Some("fe80::4"), 200),
        ];
        let d = decide(
            REMOTE.parse().unwrap(),
            &Facts {
                lookup: None,
                main_routes: &routes,
                own_devices: &[],
                kernel_routes: &[],
            },
        );
        assert_eq!(
            d,
            Decision::Pin(Pin::Via {
                oif: 4,
                gateway: Some("fe80::4".parse().unwrap())
            })
        );
    }

    #[test]
    fn a_kernel_path_route_leads_into_its_tunnel() {
        // Tunnel on device 7 routes 2001:db8:77::/64 via the underlay next hop on wan (2).
        let kernel = [KernelRoute {
            dst: "2001:db8:77::/64".parse().unwrap(),
            oif: 2,
            gateway: "fe80::1".parse().unwrap(),
            device: 7,
        }];
        let l = lookup(2, Some("fe80::1"));
        let inside = [main_route("2001:db8:77::/64", 2, Some("fe80::1"), 49)];
        let facts = |routes| Facts {
            lookup: Some(&l),
            main_routes: routes,
            own_devices: &[7],
            kernel_routes: &kernel,
        };
        let remote: IpAddr = "2001:db8:77::1".parse().unwrap();
        assert_eq!(
            decide(remote, &facts(&inside)),
            Decision::Loop { through: 7 }
        );
        // The underlay's own route beside it is taken, as beside a route into a TUN device.
        let beside = [
            inside[0].clone(),
            main_route("::/0", 2, Some("fe80::1"), 1024),
        ];
        let underlay = Decision::Pin(Pin::Via {
            oif: 2,
            gateway: Some("fe80::1".parse().unwrap()),
        });
        assert_eq!(decide(remote, &facts(&beside)), underlay);
        // A remote outside the tunnel's prefixes is not its business.
        assert_eq!(decide(REMOTE.parse().unwrap(), &facts(&inside)), underlay);
    }

    #[test]
    fn only_a_tunnel_leads_there_is_a_loop() {
        let l = lookup(7, None);
        let routes = [main_route("::/0", 7, None, 1024)];
        let d = decide(
            REMOTE.parse().unwrap(),
            &Facts {
                lookup: Some(&l),
                main_routes: &routes,
                own_devices: &[7],
                kernel_routes: &[],
            },
        );
        assert_eq!(d, Decision::Loop { through: 7 });
    }

    #[test]
    fn no_route_at_all_is_a_blackhole() {
        let d = decide(
            REMOTE.parse().unwrap(),
            &Facts {
                lookup: None,
                main_routes: &[],
                own_devices: &[],
                kernel_routes: &[],
            },
        );
        assert_eq!(d, Decision::Pin(Pin::Blackhole));
    }

    #[test]
    fn pin_route_is_a_host_route_in_the_pin_table() {
        let r = route(REMOTE.parse().unwrap(), Pin::Blackhole, 6464, 118);
        assert_eq!(r.dst.prefix_len(), 128);
        assert_eq!(r.table, 6464);
        assert!(matches!(r.kind, RouteKind::Blackhole));
        let r = route(
            "198.18.0.2".parse().unwrap(),
            Pin::Via {
                oif: 3,
                gateway: None,
            },
            6464,
            118,
        );
        assert_eq!(r.dst.prefix_len(), 32);
        assert_eq!(r.oif, Some(3));
    }
}
