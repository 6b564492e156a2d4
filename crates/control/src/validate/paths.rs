//! A tunnel's `[[tunnel.path]]`s, or the single-path form, and how each is probed.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::file::{FilePath, FileTunnel, Int};
use crate::model::{DEFAULT_PATH, InnerFamilies, MAX_DEVICE_LEN, Path, Probe};

use super::*;

impl Checker {
    /// The tunnel's paths: `[[tunnel.path]]` tables, or the single-path form's one.
    pub(super) fn paths(
        &mut self,
        file: &FileTunnel,
        shape: &TunnelShape<'_>,
    ) -> Option<Vec<Path>> {
        let i = shape.index;
        let key = |field: &str| format!("tunnel[{i}].{field}");
        let Some(list) = &file.path else {
            return self.single_path(file, shape);
        };
        let before = self.diagnostics.len();
        for (field, value) in [
            ("local", &file.local),
            ("remote", &file.remote),
            ("probe", &file.probe),
            ("probe_target", &file.probe_target),
            ("probe_source", &file.probe_source),
        ] {
            if value.is_some() {
                self.error(
                    key(field),
                    format!(
                        "`{field}` on the tunnel is the single-path form, which cannot be mixed \
                         with [[tunnel.path]] tables; give each path its own `{field}`"
                    ),
                );
            }
        }
        if list.is_empty() {
            self.error(
                key("path"),
                "needs at least one path; to stop the tunnel set enabled = false",
            );
        }
        let paths: Vec<(usize, Path)> = list
            .iter()
            .enumerate()
            .filter_map(|(j, p)| {
                self.path(&format!("tunnel[{i}].path[{j}]"), p, shape)
                    .map(|p| (j, p))
            })
            .collect();
        for (n, (j, p)) in paths.iter().enumerate() {
            for (k, q) in &paths[..n] {
                if p.name == q.name {
                    self.error(
                        format!("tunnel[{i}].path[{j}].name"),
                        format!("{:?} is already the name of path[{k}]", p.name),
                    );
                }
                if let Some(net) = p.addresses.iter().find(|a| q.addresses.contains(a)) {
                    self.error(
                        format!("tunnel[{i}].path[{j}].address"),
                        format!(
                            "{net} is already an address of path[{k}] ({:?}); one prefix on two \
                             devices makes two connected routes for it",
                            q.name
                        ),
                    );
                }
                if p.ends() == q.ends() {
                    let (local, remote) = p.ends();
                    self.error(
                        format!("tunnel[{i}].path[{j}].remote"),
                        format!(
                            "path[{k}] ({:?}) already runs between {local} and {remote}; \
                             received packets could not be told apart",
                            q.name
                        ),
                    );
                }
            }
        }
        (self.diagnostics.len() == before).then(|| paths.into_iter().map(|(_, p)| p).collect())
    }

    /// `local` and `remote` on the tunnel: one path, named "default", cost 0. Not probed unless
    /// `probe` is written (there is nothing to fail over to, and the peer need not be v6gate);
    /// a probe tells when the peer is dead, so `status` and metrics say `down`.
    pub(super) fn single_path(
        &mut self,
        file: &FileTunnel,
        shape: &TunnelShape<'_>,
    ) -> Option<Vec<Path>> {
        let i = shape.index;
        let key = |field: &str| format!("tunnel[{i}].{field}");
        self.single_path.insert(i);
        let before = self.diagnostics.len();
        if shape.device_per_path {
            self.error(
                key("device_per_path"),
                "needs [[tunnel.path]] tables; with `local` and `remote` on the tunnel there is \
                 one path and one device already",
            );
        }
        let probed = file.probe.as_deref().is_some_and(|p| p != "none");
        if shape.has_health && !probed {
            self.error(
                key("health"),
                "[tunnel.health] times path probes, and the single-path form is not probed \
                 unless `probe` is set on the tunnel (\"keepalive\" or \"icmp\")",
            );
        }
        let prefix = format!("tunnel[{i}]");
        let ends = crate::names::path_ends(
            self,
            &crate::names::Written {
                prefix: &prefix,
                local: file.local.as_deref(),
                remote: file.remote.as_deref(),
                local_device: None,
                family: None,
                missing_hint: " (write `local` and `remote`, or one [[tunnel.path]] table per \
                               path)",
            },
        )?;
        if self.diagnostics.len() != before {
            return None;
        }
        let probe = match &file.probe {
            None => Probe::None,
            Some(_) => {
                let written = FilePath {
                    name: DEFAULT_PATH.to_owned(),
                    local: None,
                    local_device: None,
                    family: None,
                    remote: String::new(),
                    cost: None,
                    probe: file.probe.clone(),
                    probe_target: file.probe_target.clone(),
                    probe_source: file.probe_source.clone(),
                    device: None,
                    address: None,
                    underlay_mtu: None,
                };
                self.probe(&prefix, &written, shape.families)?
            }
        };
        if file.probe.is_none() {
            for (field, value) in [
                ("probe_target", &file.probe_target),
                ("probe_source", &file.probe_source),
            ] {
                if value.is_some() {
                    self.error(key(field), "is only used with probe = \"icmp\"");
                }
            }
        }
        let mut path = Path::new(DEFAULT_PATH, ends.local, ends.remote, shape.device);
        path.probe = probe;
        path.remote_name = ends.remote_name;
        Some(vec![path])
    }

    /// One `[[tunnel.path]]` table at key `prefix` (`tunnel[0].path[1]`).
    pub(super) fn path(
        &mut self,
        prefix: &str,
        file: &FilePath,
        shape: &TunnelShape<'_>,
    ) -> Option<Path> {
        let before = self.diagnostics.len();
        let key = |field: &str| format!("{prefix}.{field}");

        let name_ok = self.name(&key("name"), &file.name);
        let endpoints = crate::names::path_ends(
            self,
            &crate::names::Written {
                prefix,
                local: file.local.as_deref(),
                remote: Some(&file.remote),
                local_device: file.local_device.as_deref(),
                family: file.family.as_deref(),
                missing_hint: " (an address, or `local_device` to follow a device's address)",
            },
        );

        let cost = match file.cost {
            None => Some(0),
            Some(Int(c)) => self.int_in(&key("cost"), c, 0, MAX_COST).map(|c| c as u32),
        };
        let probe = self.probe(prefix, file, shape.families);

        let device = match (&file.device, shape.device_per_path) {
            (Some(_), false) => {
                self.error(
                    key("device"),
                    "a path has a device of its own only with device_per_path = true on the tunnel",
                );
                None
            }
            (Some(device), true) => self.device(&key("device"), device).then(|| device.clone()),
            (None, false) => Some(shape.device.to_owned()),
            (None, true) => {
                let device = format!("{}-{}", shape.device, file.name);
                if name_ok && shape.device_ok && device.len() > MAX_DEVICE_LEN {
                    self.error(
                        key("name"),
                        format!(
                            "the device name derived from it, {device:?}, is {} bytes, longer \
                             than {MAX_DEVICE_LEN}; use a shorter name or set `device` on the path",
                            device.len()
                        ),
                    );
                }
                Some(device)
            }
        };

        let addresses = match (&file.address, shape.device_per_path, shape.families) {
            (None, _, _) => Some(Vec::new()),
            (Some(_), false, _) => {
                self.error(
                    key("address"),
                    "a path has addresses of its own only with device_per_path = true on the \
                     tunnel; put them in the tunnel's `address`",
                );
                None
            }
            (Some(value), true, Some(families)) => self
                .addresses(&key("address"), value, families)
                .filter(|own| self.not_tunnel_addresses(&key("address"), own, shape.addresses)),
            (Some(_), true, None) => None,
        };

        let underlay_mtu = match (file.underlay_mtu, &endpoints) {
            (None, _) => Some(None),
            (Some(_), None) => None,
            (Some(Int(m)), Some(crate::names::Ends { remote, .. })) => {
                let (lo, why) = if remote.is_ipv6() {
                    (IPV6_MIN_MTU, "the underlay is an IPv6 link")
                } else {
                    (IPV4_MIN_MTU, "the underlay is an IPv4 link")
                };
                self.int_in_why(&key("underlay_mtu"), m, lo, 65535, why)
                    .map(|m| Some(m as u16))
            }
        };

        if self.diagnostics.len() != before {
            return None;
        }
        let ends = endpoints?;
        Some(Path {
            name: file.name.clone(),
            local: ends.local,
            remote: ends.remote,
            remote_name: ends.remote_name,
            local_device: ends.local_device,
            cost: cost?,
            probe: probe?,
            device: device?,
            addresses: addresses?,
            underlay_mtu: underlay_mtu?,
        })
    }

    /// An outer address of either family: unicast, and not link-local (outer packets leave by
    /// route lookup, which gives a link-local address no scope).
    pub(super) fn endpoint(&mut self, key: &str, text: &str) -> Option<IpAddr> {
        let addr = self.ip(key, text)?;
        self.unicast(key, addr, Scope::None)
    }

    pub(super) fn probe(
        &mut self,
        prefix: &str,
        file: &FilePath,
        families: Option<InnerFamilies>,
    ) -> Option<Probe> {
        let key = |field: &str| format!("{prefix}.{field}");
        let kind = file.probe.as_deref().unwrap_or("keepalive");
        if kind != "icmp" {
            for (field, value) in [
                ("probe_target", &file.probe_target),
                ("probe_source", &file.probe_source),
            ] {
                if value.is_some() {
                    self.error(key(field), "is only used with probe = \"icmp\"");
                }
            }
        }
        match kind {
            "keepalive" => Some(Probe::Keepalive),
            "none" => Some(Probe::None),
            "icmp" => {
                let Some(text) = &file.probe_target else {
                    self.error(
                        key("probe"),
                        "probe = \"icmp\" needs `probe_target`, the peer's inner address to \
                         ping through this path",
                    );
                    return None;
                };
                let target = self
                    .ip(&key("probe_target"), text)
                    .and_then(|a| self.unicast(&key("probe_target"), a, Scope::Device))?;
                if let Some(families) = families
                    && !families.allows(&IpNet::from(target))
                {
                    self.error(
                        key("probe_target"),
                        format!(
                            "{target} is {}, which this tunnel does not carry \
                             (inner_families = {families})",
                            ip_family_name(target)
                        ),
                    );
                    return None;
                }
                let source = match &file.probe_source {
                    None => None,
                    Some(text) => {
                        let source = self
                            .ip(&key("probe_source"), text)
                            .and_then(|a| self.unicast(&key("probe_source"), a, Scope::Device))?;
                        if source.is_ipv4() != target.is_ipv4() {
                            self.error(
                                key("probe_source"),
                                format!(
                                    "{source} is {}, but probe_target {target} is {}; echo \
                                     requests need a source of the target's family",
                                    ip_family_name(source),
                                    ip_family_name(target)
                                ),
                            );
                            return None;
                        }
                        Some(source)
                    }
                };
                Some(Probe::Icmp { target, source })
            }
            other => {
                self.error(
                    key("probe"),
                    format!("expected one of \"keepalive\", \"icmp\", \"none\", found {other:?}"),
                );
                None
            }
        }
    }

    /// A path device gets the tunnel's addresses anyway; listing one again would add it twice.
    pub(super) fn not_tunnel_addresses(
        &mut self,
        key: &str,
        own: &[IpNet],
        tunnel: Option<&[IpNet]>,
    ) -> bool {
        let Some(net) = own.iter().find(|a| tunnel.is_some_and(|t| t.contains(a))) else {
            return true;
        };
        self.error(
            key,
            format!(
                "{net} is already in the tunnel's `address`, which every path device gets; \
                 list it in one place"
            ),
        );
        false
    }

    /// An ICMP probe's answers come back from its target, which the anti-spoofing filter drops
    /// unless `allowed_sources` holds it; a probe that can never be answered would take a
    /// healthy path down.
    pub(super) fn probe_targets_allowed(&mut self, i: usize, paths: &[Path], allowed: &[IpNet]) {
        for (j, p) in paths.iter().enumerate() {
            if let Probe::Icmp { target, .. } = p.probe
                && !allowed.iter().any(|net| net.contains(&target))
            {
                self.error(
                    format!("tunnel[{i}].path[{j}].probe_target"),
                    format!(
                        "{target} is not in the tunnel's allowed_sources, so its echo replies \
                         would be dropped as spoofed; add it (or its prefix) to allowed_sources"
                    ),
                );
            }
        }
    }

    /// With a device per path, every device gets the tunnel's routes at `route_metric + cost`;
    /// two paths of one cost would put two routes in one (destination, table, metric) slot.
    pub(super) fn costs_differ(&mut self, i: usize, paths: &[Path]) {
        for (n, p) in paths.iter().enumerate() {
            if let Some(k) = paths[..n].iter().position(|q| q.cost == p.cost) {
                self.error(
                    format!("tunnel[{i}].path[{n}].cost"),
                    format!(
                        "path[{k}] ({:?}) has cost {} too; with device_per_path each path's \
                         device gets the tunnel's routes at route_metric + cost, so the costs \
                         must differ",
                        paths[k].name, p.cost
                    ),
                );
            }
        }
    }

    /// Key prefix of a tunnel's path: the tunnel's own for the single-path form.
    pub(super) fn path_key(&self, i: usize, j: usize) -> String {
        if self.single_path.contains(&i) {
            format!("tunnel[{i}]")
        } else {
            format!("tunnel[{i}].path[{j}]")
        }
    }
}
