//! What involves more than one tunnel: names, devices, endpoint pairs and routes.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::model::Tunnel;

use super::*;

impl Checker {
    /// Problems that involve more than one tunnel. Only tunnels that are valid on their own get
    /// here; route and endpoint clashes only matter between tunnels that are up.
    pub(super) fn across_tunnels(&mut self, tunnels: &[(usize, Tunnel)]) {
        let mut names: HashMap<&str, usize> = HashMap::new();
        let mut devices: HashMap<&str, usize> = HashMap::new();
        for (i, t) in tunnels {
            if let Some(first) = names.insert(&t.name, *i) {
                names.insert(&t.name, first);
                self.error(
                    format!("tunnel[{i}].name"),
                    format!("{:?} is already the name of tunnel[{first}]", t.name),
                );
            }
            if let Some(first) = devices.insert(&t.device, *i) {
                devices.insert(&t.device, first);
                self.error(
                    format!("tunnel[{i}].device"),
                    format!("{:?} is already the device of tunnel[{first}]", t.device),
                );
            }
        }
        self.path_devices_unique(tunnels);

        let enabled: Vec<&(usize, Tunnel)> = tunnels.iter().filter(|(_, t)| t.enabled).collect();
        self.endpoint_pairs_unique(&enabled);
        self.routes_apart(&enabled);
    }

    /// One tunnel per endpoint pair: each path against the paths of earlier tunnels with the
    /// same ends, found by hashing rather than by comparing every pair of tunnels.
    fn endpoint_pairs_unique(&mut self, enabled: &[&(usize, Tunnel)]) {
        let mut owners: HashMap<(String, String), Vec<(usize, usize)>> = HashMap::new();
        for (n, (i, a)) in enabled.iter().map(|e| (&e.0, &e.1)).enumerate() {
            for (ja, pa) in a.paths.iter().enumerate() {
                let ends = pa.ends();
                let Some(earlier) = owners.get(&ends) else {
                    continue;
                };
                for &(m, jb) in earlier {
                    let (j, b) = (enabled[m].0, &enabled[m].1);
                    let owner = self.path_key(j, jb);
                    let (local, remote) = &ends;
                    self.error(
                        format!("{}.remote", self.path_key(*i, ja)),
                        format!(
                            "{owner} ({:?}) already runs between {local} and {remote}; one \
                             tunnel per endpoint pair (use mode = \"any\" to carry both \
                             families)",
                            b.name
                        ),
                    );
                }
            }
            for (ja, pa) in a.paths.iter().enumerate() {
                owners.entry(pa.ends()).or_default().push((n, ja));
            }
        }
    }

    /// Routes of two tunnels in one table must not overlap (see [`overlaps`]). Prefixes nest
    /// or are disjoint, so after sorting each table's routes by address and length the routes
    /// that contain the one at hand are exactly a stack of open prefixes: n log n to sort,
    /// then one pass, plus one step per clash reported.
    fn routes_apart(&mut self, enabled: &[&(usize, Tunnel)]) {
        let mut by_table: HashMap<(u32, bool), Vec<RouteAt>> = HashMap::new();
        for (n, (_, t)) in enabled.iter().map(|e| (&e.0, &e.1)).enumerate() {
            for (k, net) in t.routes.iter().enumerate() {
                let at = RouteAt::new(*net, n, k);
                by_table.entry((t.route_table, at.v6)).or_default().push(at);
            }
        }
        // (later tunnel, earlier tunnel, later's route, earlier's route): the order the
        // problems were always reported in.
        let mut clashes: Vec<(usize, usize, usize, usize)> = Vec::new();
        for routes in by_table.values_mut() {
            routes.sort_unstable_by_key(|r| (r.start, r.net.prefix_len(), r.tunnel, r.route));
            let mut open: Vec<&RouteAt> = Vec::new();
            for r in routes.iter() {
                while open
                    .last()
                    .is_some_and(|o| !o.net.contains(&r.net.network()))
                {
                    open.pop();
                }
                for o in &open {
                    if o.tunnel != r.tunnel && overlaps(&o.net, &r.net) {
                        let (late, early) = if o.tunnel < r.tunnel {
                            (r, *o)
                        } else {
                            (*o, r)
                        };
                        clashes.push((late.tunnel, early.tunnel, late.route, early.route));
                    }
                }
                open.push(r);
            }
        }
        clashes.sort_unstable();
        for (n, m, k, l) in clashes {
            let (i, a) = (enabled[n].0, &enabled[n].1);
            let (j, b) = (enabled[m].0, &enabled[m].1);
            let (ra, rb) = (a.routes[k], b.routes[l]);
            self.error(
                format!("tunnel[{i}].routes[{k}]"),
                format!(
                    "{ra} overlaps {rb} of tunnel[{j}] ({:?}, routes[{l}]) in table {}",
                    b.name, a.route_table
                ),
            );
        }
    }

    /// Devices of `device_per_path` tunnels against every device a tunnel creates. Clashes
    /// between two tunnels' own devices are `across_tunnels`' to report.
    pub(super) fn path_devices_unique(&mut self, tunnels: &[(usize, Tunnel)]) {
        // device -> (who has it, whether that is a path's own device)
        let mut seen: HashMap<&str, (String, bool)> = HashMap::new();
        for (i, t) in tunnels {
            let created: Vec<(&str, String, bool)> = if t.device_per_path {
                t.paths
                    .iter()
                    .enumerate()
                    .map(|(j, p)| (p.device.as_str(), format!("tunnel[{i}].path[{j}]"), true))
                    .collect()
            } else {
                vec![(t.device.as_str(), format!("tunnel[{i}]"), false)]
            };
            for (device, owner, own) in created {
                match seen.get(device) {
                    Some((first, first_own)) if own || *first_own => {
                        self.error(
                            format!("{owner}.device"),
                            format!("{device:?} is already the device of {first}"),
                        );
                    }
                    Some(_) => {}
                    None => {
                        seen.insert(device, (owner, own));
                    }
                }
            }
        }
    }
}

/// A tunnel's route, placed for the sweep in [`Checker::routes_apart`].
struct RouteAt {
    net: IpNet,
    v6: bool,
    /// The first address of the prefix, as a number that sorts like the address.
    start: u128,
    /// Position among the enabled tunnels, and index in its `routes`.
    tunnel: usize,
    route: usize,
}

impl RouteAt {
    fn new(net: IpNet, tunnel: usize, route: usize) -> Self {
        let (v6, start) = match net.network() {
            IpAddr::V4(a) => (false, u128::from(u32::from(a))),
            IpAddr::V6(a) => (true, u128::from(a)),
        };
        Self {
            net,
            v6,
            start,
            tunnel,
            route,
        }
    }
}

/// Whether two tunnels' routes clash. A default route (/0) is a fallback by nature, so a more
/// specific route of another tunnel beside it is the normal "everything else via the VPS" set-up,
/// not a clash; any other containment is.
pub(super) fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    let contains = a.contains(&b.network()) || b.contains(&a.network());
    let one_is_default = (a.prefix_len() == 0) != (b.prefix_len() == 0);
    contains && !one_is_default
}
