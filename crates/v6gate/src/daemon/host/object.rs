//! The kinds of host state v6gate installs. Each kind says who it is (identity), how to put
//! it on the host, how to take it off, and whether the host still has it as wanted. A new
//! kind (an nftables table, a BPF program) is one more arm in each of these four matches;
//! the owner's diff, journal, repair and undo work for it unchanged.

use std::fmt;
use std::net::IpAddr;

use anyhow::Context;
use ipnet::IpNet;
use sys::netlink::{Family, Netlink, Route, RouteKind, Rule};

use super::program::Program;
use super::table::Table;

/// One piece of host state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Object {
    /// A kernel parameter and the value we want; its original is journalled before the first
    /// write and written back when the object is removed.
    Sysctl { key: String, value: String },
    /// A route, carrying our routing protocol number.
    Route(Route),
    /// A policy rule. Identical rules may coexist; we add and remove our own copy.
    Rule(Rule),
    /// One of our devices, up, with this MTU. It closes with the packet thread that holds
    /// it, so removing the object changes nothing; it is here to be repaired.
    Link {
        ifindex: u32,
        device: String,
        mtu: u32,
    },
    /// An address on one of our devices (`device` for messages only).
    Address {
        ifindex: u32,
        device: String,
        net: IpNet,
    },
    /// One of our nftables tables, whole.
    Table(Table),
    /// A kernel-path program on a hook of an underlay device.
    Program(Program),
}

/// What makes two objects the same object, whatever their value: a route is its table,
/// destination and metric (as for the kernel), a sysctl its key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Identity {
    Sysctl(String),
    Route {
        table: u32,
        dst: IpNet,
        metric: Option<u32>,
    },
    Rule(String),
    Link(u32),
    Address {
        ifindex: u32,
        net: IpNet,
    },
    Table(String),
    Program {
        tunnel: String,
        device: String,
        hook: kpath::Hook,
    },
}

/// What the host has now, read once per repair.
#[derive(Debug, Default)]
pub struct Observed {
    pub routes: Vec<Route>,
    pub rules: Vec<Rule>,
    /// Addresses by interface index.
    pub addresses: Vec<(u32, Vec<IpNet>)>,
    /// Sysctl values by key; a key that cannot be read is absent.
    pub sysctls: Vec<(String, String)>,
    /// Links by interface index: up, MTU.
    pub links: Vec<(u32, bool, u32)>,
    /// Our nftables tables as read back, by name (`None`: it is gone); read only when
    /// installed.
    pub tables: Vec<(String, Option<sys::nft::Installed>)>,
    /// Ids of the programs attached to a device's hook (tcx and `clsact`).
    pub programs: Vec<(String, kpath::Hook, Vec<u32>)>,
}

impl Observed {
    /// Reads what `objects` can be checked against: routes and rules of the families in use,
    /// addresses of the devices in use, the sysctls set.
    pub async fn read(netlink: &Netlink, objects: &[&Object]) -> anyhow::Result<Self> {
        let mut seen = Self::default();
        let mut families = Vec::new();
        let mut devices = Vec::new();
        let mut want_rules = false;
        for object in objects {
            match object {
                Object::Route(r) => families.push(Family::of(r.dst.addr())),
                Object::Rule(r) => {
                    families.push(r.family);
                    want_rules = true;
                }
                Object::Address { ifindex, .. } => devices.push(*ifindex),
                Object::Link { ifindex, .. } => {
                    // A device that is gone is missing; its owner removes the object.
                    if let (Ok(up), Ok(mtu)) = (
                        netlink.link_is_up(*ifindex).await,
                        netlink.link_mtu(*ifindex).await,
                    ) {
                        seen.links.push((*ifindex, up, mtu));
                    }
                }
                Object::Sysctl { key, .. } => {
                    if let Ok(value) = sys::sysctl::read(key) {
                        seen.sysctls.push((key.clone(), value));
                    }
                }
                Object::Table(t) => {
                    if !seen.tables.iter().any(|(name, _)| name == t.name()) {
                        seen.tables.push((t.name().to_owned(), t.observe()?));
                    }
                }
                Object::Program(p) => {
                    if !seen
                        .programs
                        .iter()
                        .any(|(d, h, _)| *d == p.device && *h == p.hook)
                    {
                        let ids = attached_ids(netlink, &p.device, p.hook).await;
                        seen.programs.push((p.device.clone(), p.hook, ids));
                    }
                }
            }
        }
        families.sort_by_key(|f| *f == Family::V6);
        families.dedup();
        devices.sort_unstable();
        devices.dedup();
        for family in families {
            seen.routes.extend(
                netlink
                    .routes(family, None, Some(super::super::ROUTE_PROTOCOL))
                    .await
                    .with_context(|| format!("reading {family} routes"))?,
            );
            if want_rules {
                seen.rules.extend(
                    netlink
                        .rules(family)
                        .await
                        .with_context(|| format!("reading {family} rules"))?,
                );
            }
        }
        for ifindex in devices {
            // A device that is gone has no addresses; the repair then fails to add them, and
            // says so, until the device's owner removes the objects.
            let addresses = netlink.addresses(ifindex).await.unwrap_or_default();
            seen.addresses.push((ifindex, addresses));
        }
        Ok(seen)
    }
}

/// The programs on `hook` of `device`, tcx links and `clsact` filters alike; none when the
/// device is gone.
async fn attached_ids(netlink: &Netlink, device: &str, hook: kpath::Hook) -> Vec<u32> {
    let mut ids = kpath::KernelPath::tcx_ids(device, hook).unwrap_or_default();
    if let Some(index) = super::super::link_index(device)
        && let Ok(filters) = netlink
            .tc_bpf_filters(index, hook == kpath::Hook::Ingress)
            .await
    {
        ids.extend(filters.into_iter().map(|(_, id)| id));
    }
    ids
}

/// How an object stands on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Presence {
    Present,
    Missing,
    /// There, with another value (the text says what the host has).
    Differs(String),
}

impl Object {
    pub fn identity(&self) -> Identity {
        match self {
            Self::Sysctl { key, .. } => Identity::Sysctl(key.clone()),
            Self::Route(r) => Identity::Route {
                table: r.table,
                dst: r.dst,
                metric: r.metric,
            },
            Self::Rule(r) => Identity::Rule(r.to_string()),
            Self::Link { ifindex, .. } => Identity::Link(*ifindex),
            Self::Address { ifindex, net, .. } => Identity::Address {
                ifindex: *ifindex,
                net: *net,
            },
            Self::Table(t) => Identity::Table(t.name().to_owned()),
            Self::Program(p) => Identity::Program {
                tunnel: p.tunnel.clone(),
                device: p.device.clone(),
                hook: p.hook,
            },
        }
    }

    /// Puts the object on the host, replacing one of the same identity. A sysctl's original
    /// must be journalled before this is called.
    pub async fn apply(&self, netlink: &Netlink) -> anyhow::Result<()> {
        match self {
            Self::Sysctl { key, value } => {
                sys::sysctl::write(key, value).with_context(|| format!("setting sysctl {key}"))
            }
            Self::Route(r) => netlink
                .route_replace(r)
                .await
                .with_context(|| format!("installing route {r}")),
            Self::Rule(r) => netlink
                .rule_add_copy(r)
                .await
                .with_context(|| format!("adding {r}")),
            Self::Link {
                ifindex,
                device,
                mtu,
            } => {
                netlink
                    .link_set_mtu(*ifindex, *mtu)
                    .await
                    .with_context(|| format!("setting mtu {mtu} on {device}"))?;
                netlink
                    .link_set_up(*ifindex)
                    .await
                    .with_context(|| format!("bringing {device} up"))
            }
            Self::Address {
                ifindex,
                device,
                net,
            } => match netlink.address_add(*ifindex, *net).await {
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
                other => other.with_context(|| format!("adding address {net} to {device}")),
            },
            Self::Table(t) => t.apply().with_context(|| format!("installing {t}")),
            Self::Program(p) => p.apply().with_context(|| format!("attaching {p}")),
        }
    }

    /// Takes the object off the host; `original` is a sysctl's journalled value. An object
    /// that is already gone is not an error.
    pub async fn remove(&self, netlink: &Netlink, original: Option<&str>) -> anyhow::Result<()> {
        match self {
            Self::Sysctl { key, .. } => match original {
                Some(value) => sys::sysctl::write(key, value)
                    .with_context(|| format!("restoring sysctl {key}")),
                None => Ok(()),
            },
            Self::Route(r) => netlink
                .route_del(r)
                .await
                .with_context(|| format!("removing route {r}")),
            Self::Rule(r) => netlink
                .rule_del(r)
                .await
                .with_context(|| format!("removing {r}")),
            Self::Link { .. } => Ok(()),
            Self::Address {
                ifindex,
                device,
                net,
            } => match netlink.address_del(*ifindex, *net).await {
                // The device went first (a TUN closes with its owner).
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENODEV | libc::EADDRNOTAVAIL)) => {
                    Ok(())
                }
                other => other.with_context(|| format!("removing address {net} from {device}")),
            },
            Self::Table(t) => t.remove().with_context(|| format!("removing {t}")),
            Self::Program(p) => p.remove().with_context(|| format!("detaching {p}")),
        }
    }

    /// Whether the host still has the object as wanted.
    pub fn check(&self, seen: &Observed) -> Presence {
        match self {
            Self::Sysctl { key, value } => match seen.sysctls.iter().find(|(k, _)| k == key) {
                Some((_, now)) if now.trim() == value.trim() => Presence::Present,
                Some((_, now)) => Presence::Differs(format!("{key} = {now}")),
                None => Presence::Missing,
            },
            Self::Route(want) => {
                let same_key = seen.routes.iter().filter(|r| {
                    r.table == want.table && r.dst == want.dst && metric_matches(want, r)
                });
                let mut other = None;
                for r in same_key {
                    if r.kind == want.kind
                        && r.oif == want.oif
                        && r.gateway == want.gateway
                        && r.prefsrc == want.prefsrc
                        && r.realm == want.realm
                    {
                        return Presence::Present;
                    }
                    other = Some(r);
                }
                match other {
                    Some(r) => Presence::Differs(r.to_string()),
                    None => Presence::Missing,
                }
            }
            Self::Rule(want) => {
                if seen.rules.iter().any(|r| r == want) {
                    Presence::Present
                } else {
                    Presence::Missing
                }
            }
            Self::Link { ifindex, mtu, .. } => {
                match seen.links.iter().find(|(i, _, _)| i == ifindex) {
                    Some((_, true, now)) if now == mtu => Presence::Present,
                    Some((_, up, now)) => {
                        Presence::Differs(format!("{}, mtu {now}", if *up { "up" } else { "down" }))
                    }
                    None => Presence::Missing,
                }
            }
            Self::Address { ifindex, net, .. } => {
                let there = seen
                    .addresses
                    .iter()
                    .find(|(i, _)| i == ifindex)
                    .is_some_and(|(_, nets)| nets.contains(net));
                if there {
                    Presence::Present
                } else {
                    Presence::Missing
                }
            }
            Self::Table(t) => match seen.tables.iter().find(|(name, _)| name == t.name()) {
                Some((_, Some(now))) if t.matches(now) => Presence::Present,
                Some((_, Some(now))) => Presence::Differs(format!(
                    "a changed table inet {} ({} rules)",
                    t.name(),
                    now.rule_count()
                )),
                _ => Presence::Missing,
            },
            Self::Program(p) => {
                let listed = seen
                    .programs
                    .iter()
                    .find(|(d, h, _)| *d == p.device && *h == p.hook)
                    .is_some_and(|(_, _, ids)| p.id().is_some_and(|id| ids.contains(&id)));
                if listed {
                    Presence::Present
                } else {
                    Presence::Missing
                }
            }
        }
    }
}

/// A route added without a metric gets the kernel's default (IPv6 1024; IPv4 0, which dumps
/// leave out).
fn metric_matches(want: &Route, seen: &Route) -> bool {
    let default = match want.dst.addr() {
        IpAddr::V4(_) => 0,
        IpAddr::V6(_) => 1024,
    };
    want.metric.unwrap_or(default) == seen.metric.unwrap_or(0)
}

impl fmt::Display for Object {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sysctl { key, value } => write!(f, "sysctl {key} = {value}"),
            Self::Route(r) => {
                let dev = r
                    .oif
                    .and_then(super::super::link_name)
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default();
                if r.kind == RouteKind::Blackhole {
                    write!(f, "route {r}")
                } else {
                    write!(f, "route {r}{dev}")
                }
            }
            Self::Rule(r) => write!(f, "{r}"),
            Self::Link { device, mtu, .. } => write!(f, "link {device} up, mtu {mtu}"),
            Self::Address { device, net, .. } => write!(f, "address {net} on {device}"),
            Self::Table(t) => write!(f, "{t}"),
            Self::Program(p) => write!(f, "{p}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(dst: &str, metric: Option<u32>, seen_metric: Option<u32>) -> (Route, Route) {
        let want = Route {
            dst: dst.parse().unwrap(),
            table: 6464,
            protocol: 118,
            metric,
            oif: Some(3),
            gateway: None,
            kind: RouteKind::Unicast,
            mtu: None,
            prefsrc: None,
            realm: None,
        };
        let seen = Route {
            metric: seen_metric,
            ..want.clone()
        };
        (want, seen)
    }

    #[test]
    fn a_route_is_found_with_the_kernels_default_metric() {
        for (dst, want, seen, present) in [
            ("2001:db8::1/128", None, Some(1024), true),
            ("2001:db8::1/128", Some(1024), Some(1024), true),
            ("2001:db8::1/128", Some(100), Some(1024), false),
            ("198.51.100.0/24", None, None, true),
            ("198.51.100.0/24", Some(0), None, true),
            ("198.51.100.0/24", Some(100), Some(100), true),
            ("198.51.100.0/24", Some(100), None, false),
        ] {
            let (want, seen) = route(dst, want, seen);
            let observed = Observed {
                routes: vec![seen],
                ..Observed::default()
            };
            let got = Object::Route(want.clone()).check(&observed);
            assert_eq!(got == Presence::Present, present, "{want} vs {observed:?}");
        }
    }

    #[test]
    fn a_route_through_another_device_differs() {
        let (want, mut seen) = route("2001:db8::1/128", None, Some(1024));
        seen.oif = Some(9);
        let observed = Observed {
            routes: vec![seen],
            ..Observed::default()
        };
        assert!(matches!(
            Object::Route(want).check(&observed),
            Presence::Differs(_)
        ));
        assert_eq!(
            Object::Route(route("2001:db8::2/128", None, None).0).check(&observed),
            Presence::Missing
        );
    }

    #[test]
    fn a_route_with_another_source_differs() {
        let (mut want, mut seen) = route("198.51.100.0/24", Some(100), Some(100));
        want.prefsrc = Some("203.0.113.1".parse().unwrap());
        for (now, present) in [
            (None, false),
            (Some("203.0.113.2".parse().unwrap()), false),
            (want.prefsrc, true),
        ] {
            seen.prefsrc = now;
            let observed = Observed {
                routes: vec![seen.clone()],
                ..Observed::default()
            };
            let got = Object::Route(want.clone()).check(&observed);
            assert_eq!(got == Presence::Present, present, "{want} vs {seen}");
            assert_eq!(matches!(got, Presence::Differs(_)), !present, "{got:?}");
        }
    }

    #[test]
    fn a_route_with_another_realm_differs() {
        let (mut want, mut seen) = route("198.51.100.0/24", Some(100), Some(100));
        want.realm = Some(0xf600);
        for (now, present) in [(None, false), (Some(0xf601), false), (want.realm, true)] {
            seen.realm = now;
            let observed = Observed {
                routes: vec![seen.clone()],
                ..Observed::default()
            };
            let got = Object::Route(want.clone()).check(&observed);
            assert_eq!(got == Presence::Present, present, "{want} vs {seen}");
        }
    }

    #[test]
    fn identity_ignores_the_value() {
        let a = Object::Sysctl {
            key: "net/ipv4/ip_forward".into(),
            value: "1".into(),
        };
        let b = Object::Sysctl {
            key: "net/ipv4/ip_forward".into(),
            value: "0".into(),
        };
        assert_eq!(a.identity(), b.identity());
        assert_ne!(a, b);
    }
}
