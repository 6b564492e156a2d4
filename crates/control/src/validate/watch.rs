//! `[[watch]]`: uplink watches, their routes and hooks, and how they sit beside tunnels.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;

use crate::file::{FileWatch, Int};
use crate::model::{Gateway, Health, Hook, Tunnel, Watch, WatchRoute};
use crate::plan::tunnel_routes;

use super::*;

impl Checker {
    /// Converts one `[[watch]]`; `None` when anything in it is wrong.
    pub(super) fn watch(
        &mut self,
        i: usize,
        mut file: FileWatch,
        gateway: &Gateway,
    ) -> Option<Watch> {
        let before = self.diagnostics.len();
        let key = |field: &str| format!("watch[{i}].{field}");

        self.name(&key("name"), &file.name);
        let target = self
            .ip(&key("target"), &file.target)
            .and_then(|a| self.unicast(&key("target"), a, Scope::Device));
        let source = match &file.source {
            None => Some(None),
            Some(text) => self
                .ip(&key("source"), text)
                .and_then(|a| self.unicast(&key("source"), a, Scope::Device))
                .map(Some),
        };
        if let (Some(target), Some(Some(source))) = (target, source)
            && target.is_ipv4() != source.is_ipv4()
        {
            self.error(
                key("source"),
                format!(
                    "{source} is {}, but target {target} is {}; echo requests need a source of \
                     the target's family",
                    ip_family_name(source),
                    ip_family_name(target)
                ),
            );
        }
        self.device(&key("device"), &file.device);
        let health = self.health(&format!("watch[{i}]"), file.health(), Health::WATCH_DEFAULT);
        let route = self.watch_route(&key("route"), &file.route, gateway);
        let on_down = file
            .on_down
            .as_ref()
            .map(|argv| self.hook(&key("on_down"), argv));
        let on_up = file
            .on_up
            .as_ref()
            .map(|argv| self.hook(&key("on_up"), argv));

        if self.diagnostics.len() != before {
            return None;
        }
        Some(Watch {
            name: file.name,
            target: target?,
            source: source?,
            device: file.device,
            health: health?,
            route: route?,
            on_down: on_down.flatten(),
            on_up: on_up.flatten(),
        })
    }

    pub(super) fn watch_route(
        &mut self,
        key: &str,
        file: &crate::file::FileWatchRoute,
        gateway: &Gateway,
    ) -> Option<WatchRoute> {
        let before = self.diagnostics.len();
        let key = |field: &str| format!("{key}.{field}");
        let dst = match parse_net(&file.dst) {
            Some(net) if net.trunc() != net => {
                self.error(
                    key("dst"),
                    format!("{net} has host bits set; the prefix is {}", net.trunc()),
                );
                None
            }
            Some(net) => Some(net),
            None => {
                self.error(
                    key("dst"),
                    format!(
                        "expected a prefix like \"0.0.0.0/0\" or \"2001:db8::/48\", found {:?}",
                        file.dst
                    ),
                );
                None
            }
        };
        if let Some(device) = &file.device {
            self.device(&key("device"), device);
        }
        let via = match &file.via {
            None => None,
            Some(text) => self
                .ip(&key("via"), text)
                .and_then(|a| self.unicast(&key("via"), a, Scope::Device)),
        };
        if let (Some(dst), Some(via)) = (dst, via)
            && dst.addr().is_ipv4() != via.is_ipv4()
        {
            self.error(
                key("via"),
                format!(
                    "{via} is {}, but dst {dst} is {}; the gateway must be of the route's family",
                    ip_family_name(via),
                    family_name(&dst)
                ),
            );
        }
        if let Some(IpAddr::V6(v6)) = via
            && v6.is_unicast_link_local()
            && file.device.is_none()
        {
            self.error(
                key("via"),
                format!("{v6} is link-local, which needs `device` to say which link"),
            );
        }
        if file.via.is_none() && file.device.is_none() {
            self.error(
                key("dst"),
                "the route needs `via`, `device` or both to say where it leads",
            );
        }
        let table = self.route_table_value(&key("table"), file.table.as_ref(), gateway);
        let metric = match file.metric {
            None => Some(gateway.route_metric),
            Some(Int(m)) => self
                .int_in(&key("metric"), m, 0, u32::MAX.into())
                .map(|m| m as u32),
        };
        if self.diagnostics.len() != before {
            return None;
        }
        Some(WatchRoute {
            dst: dst?,
            via,
            device: file.device.clone(),
            table: table?,
            metric: metric?,
        })
    }

    /// A command run without a shell: an argv whose program is an absolute path.
    pub(super) fn hook(&mut self, key: &str, argv: &[String]) -> Option<Hook> {
        let Some((program, args)) = argv.split_first() else {
            self.error(
                key,
                "expected a command as an array like [\"/usr/local/bin/led\", \"on\"], found []",
            );
            return None;
        };
        let before = self.diagnostics.len();
        if !program.starts_with('/') {
            self.error(
                format!("{key}[0]"),
                format!(
                    "expected an absolute path (the daemon's PATH is not yours), found {program:?}"
                ),
            );
        }
        for (j, arg) in argv.iter().enumerate() {
            if arg.contains('\0') {
                self.error(
                    format!("{key}[{j}]"),
                    "contains a NUL byte, which no command line can carry",
                );
            }
        }
        (self.diagnostics.len() == before).then(|| Hook {
            program: PathBuf::from(program),
            args: args.to_vec(),
        })
    }

    /// Problems between watches, and between watch routes and tunnel routes.
    pub(super) fn across_watches(
        &mut self,
        watches: &[(usize, Watch)],
        tunnels: &[(usize, Tunnel)],
        gateway: &Gateway,
    ) {
        let mut names: HashMap<&str, usize> = HashMap::new();
        for (i, w) in watches {
            if let Some(first) = names.insert(&w.name, *i) {
                names.insert(&w.name, first);
                self.error(
                    format!("watch[{i}].name"),
                    format!("{:?} is already the name of watch[{first}]", w.name),
                );
            }
        }
        // The kernel keeps one route per destination, table and metric: a second one either
        // fails or, for IPv6, turns both into one multipath route. Slots are hashed so that a
        // hub's thousands of tunnel routes are visited once, not once per watch.
        type Slot = (IpNet, u32, u32);
        let mut tunnel_slots: HashMap<Slot, Vec<(usize, &str, String)>> = HashMap::new();
        if !watches.is_empty() {
            for (j, t) in tunnels.iter().filter(|(_, t)| t.enabled) {
                for (device, route) in tunnel_routes(gateway, t) {
                    let slot = (route.dst, route.table, route.metric);
                    let owners = tunnel_slots.entry(slot).or_default();
                    owners.push((*j, t.name.as_str(), device.to_string()));
                }
            }
        }
        let mut watch_slots: HashMap<Slot, Vec<(usize, &str)>> = HashMap::new();
        for (i, w) in watches {
            let r = &w.route;
            let slot = (r.dst, r.table, r.metric);
            let clash = format!("{} in table {} at metric {}", r.dst, r.table, r.metric);
            for (j, name) in watch_slots.get(&slot).into_iter().flatten() {
                self.error(
                    format!("watch[{i}].route.dst"),
                    format!(
                        "watch[{j}] ({name:?}) already installs {clash}; give one a different metric"
                    ),
                );
            }
            for (j, name, device) in tunnel_slots.get(&slot).into_iter().flatten() {
                self.error(
                    format!("watch[{i}].route.dst"),
                    format!(
                        "tunnel[{j}] ({name:?}) already installs {clash} (on {device}); \
                         give the watch route a different metric"
                    ),
                );
            }
            watch_slots
                .entry(slot)
                .or_default()
                .push((*i, w.name.as_str()));
        }
    }
}
