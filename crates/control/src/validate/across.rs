//! What involves more than one tunnel: names, devices, endpoint pairs and routes.

use std::collections::HashMap;

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
        for (n, (i, a)) in enabled.iter().enumerate() {
            for (j, b) in enabled[..n].iter().map(|e| (&e.0, &e.1)) {
                for (ja, pa) in a.paths.iter().enumerate() {
                    for (jb, pb) in b.paths.iter().enumerate() {
                        if (pa.local, pa.remote) != (pb.local, pb.remote) {
                            continue;
                        }
                        let owner = self.path_key(*j, jb);
                        self.error(
                            format!("{}.remote", self.path_key(*i, ja)),
                            format!(
                                "{owner} ({:?}) already runs between {} and {}; one tunnel per \
                                 endpoint pair (use mode = \"any\" to carry both families)",
                                b.name, pa.local, pa.remote
                            ),
                        );
                    }
                }
                if a.route_table != b.route_table {
                    continue;
                }
                for (k, ra) in a.routes.iter().enumerate() {
                    for (l, rb) in b.routes.iter().enumerate() {
                        if overlaps(ra, rb) {
                            self.error(
                                format!("tunnel[{i}].routes[{k}]"),
                                format!(
                                    "{ra} overlaps {rb} of tunnel[{j}] ({:?}, routes[{l}]) in table {}",
                                    b.name, a.route_table
                                ),
                            );
                        }
                    }
                }
            }
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

/// Whether two tunnels' routes clash. A default route (/0) is a fallback by nature, so a more
/// specific route of another tunnel beside it is the normal "everything else via the VPS" set-up,
/// not a clash; any other containment is.
pub(super) fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    let contains = a.contains(&b.network()) || b.contains(&a.network());
    let one_is_default = (a.prefix_len() == 0) != (b.prefix_len() == 0);
    contains && !one_is_default
}
