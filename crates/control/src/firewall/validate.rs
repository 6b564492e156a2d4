//! Checks of the firewall and policy-routing sections; every problem is recorded with its key
//! path, like the rest of validation.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use ipnet::IpNet;
use toml::Value;

use super::file::{FileAllow, FilePortForward, FileRule, FileTable, FileZone, Sections};
use super::model::{
    Allow, AllowTarget, Family, Firewall, GATEWAY_TARGET, POLICY_MARK_BASE, PolicyRule,
    PortForward, Protocol, RouteTable, Routing, Service, TableRoute, Verdict, Zone,
};
use super::ports::{PortRange, parse_ports};
use crate::error::Diagnostic;
use crate::file::Int;
use crate::model::{Gateway, MAIN_TABLE, MAX_DEVICE_LEN};
use crate::plan::SysctlChange;

const MAX_NAME_LEN: usize = 64;
/// Most items in one list (devices, prefixes, protocols): far above any real site, low enough
/// that a hostile file cannot make the ruleset huge.
const MAX_LIST: usize = 256;
/// Most entries of one section (zones, pinholes, forwards, tables, rules, routes of a table).
const MAX_ENTRIES: usize = 1024;
/// ip rule priority of the `main` lookup; v6gate's rules come before it.
const MAIN_RULE_PRIORITY: i64 = 32766;
/// Default priority of the first `[[rule]]`: after the pin rule (100 by default), so a pinned
/// tunnel endpoint is never policy-routed elsewhere.
pub const DEFAULT_RULE_PRIORITY: u32 = 1000;
const MAX_SYSCTL_KEY: usize = 128;
const MAX_SYSCTL_VALUE: usize = 64;

/// The validated sections.
#[derive(Debug, Default)]
pub(crate) struct Checked {
    pub firewall: Option<Firewall>,
    pub routing: Routing,
    pub sysctls: Vec<SysctlChange>,
}

/// Validates `sections`; problems go to `errors` and `warnings`.
pub(crate) fn check(
    sections: Sections,
    gateway: &Gateway,
    errors: &mut Vec<Diagnostic>,
    warnings: &mut Vec<Diagnostic>,
) -> Checked {
    let mut c = Check {
        errors,
        warnings,
        tunnel_names: sections.tunnel_names.iter().cloned().collect(),
    };
    let firewall = c.firewall(&sections);
    let written: HashSet<String> = sections.table.iter().map(|t| t.name.clone()).collect();
    let tables = c.tables(sections.table, gateway);
    let rules = c.rules(sections.rule, &tables, &written, gateway);
    let sysctls = c.sysctls(sections.sysctl, gateway);
    Checked {
        firewall,
        routing: Routing { tables, rules },
        sysctls,
    }
}

struct Check<'a> {
    errors: &'a mut Vec<Diagnostic>,
    warnings: &'a mut Vec<Diagnostic>,
    tunnel_names: HashSet<String>,
}

impl Check<'_> {
    fn error(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.errors.push(Diagnostic::new(key, message));
    }

    fn firewall(&mut self, s: &Sections) -> Option<Firewall> {
        let Some(file) = &s.firewall else {
            for (section, count) in [
                ("zone", s.zone.len()),
                ("allow", s.allow.len()),
                ("port_forward", s.port_forward.len()),
            ] {
                if count > 0 {
                    self.error(
                        format!("{section}[0]"),
                        "needs a [firewall] table: without one v6gate installs no ruleset",
                    );
                }
            }
            return None;
        };
        let before = self.errors.len();
        let input = self.verdict("firewall.input", file.input.as_deref());
        let forward = self.verdict("firewall.forward", file.forward.as_deref());
        let management = file
            .management
            .iter()
            .flatten()
            .enumerate()
            .filter_map(|(i, m)| self.service(&format!("firewall.management[{i}]"), m))
            .collect::<Vec<_>>();
        self.count("zone", s.zone.len());
        self.count("allow", s.allow.len());
        self.count("port_forward", s.port_forward.len());
        let zones = self.zones(&s.zone);
        let names: HashSet<&str> = s.zone.iter().map(|z| z.name.as_str()).collect();
        let allows = self.allows(&s.allow, &names);
        let port_forwards = self.port_forwards(&s.port_forward, &names);
        let input = input.unwrap_or(Verdict::Drop);
        if input != Verdict::Accept
            && management.is_empty()
            && zones.iter().all(|z| z.input != Some(Verdict::Accept))
            && !allows.iter().any(|a| a.to == AllowTarget::Gateway)
        {
            self.warnings.push(Diagnostic::new(
                "firewall.management",
                "no zone, pinhole or management port lets anything reach the gateway itself \
                 (ssh included); add e.g. management = [\"tcp/22\"]",
            ));
        }
        (self.errors.len() == before).then(|| Firewall {
            input,
            forward: forward.unwrap_or(Verdict::Drop),
            management,
            zones,
            allows,
            port_forwards,
        })
    }

    fn count(&mut self, section: &str, n: usize) {
        if n > MAX_ENTRIES {
            self.error(section, format!("has {n} entries, more than {MAX_ENTRIES}"));
        }
    }

    fn verdict(&mut self, key: &str, text: Option<&str>) -> Option<Verdict> {
        let text = text?;
        let found = Verdict::ALL.into_iter().find(|v| v.as_str() == text);
        if found.is_none() {
            self.error(
                key,
                format!("expected \"accept\", \"drop\" or \"reject\", found {text:?}"),
            );
        }
        found
    }

    /// `"tcp/22"`, `"udp/500 4500"`, `"tcp/8000:8010"`.
    fn service(&mut self, key: &str, text: &str) -> Option<Service> {
        let Some((proto, ports)) = text.split_once('/') else {
            self.error(
                key,
                format!("expected PROTOCOL/PORTS like \"tcp/22\", found {text:?}"),
            );
            return None;
        };
        let protocol = self.protocol(key, proto)?;
        if !protocol.has_ports() {
            self.error(
                key,
                format!("{protocol} has no ports; management services are tcp, udp or sctp"),
            );
            return None;
        }
        match parse_ports(ports) {
            Ok(ports) => Some(Service { protocol, ports }),
            Err(e) => {
                self.error(key, e);
                None
            }
        }
    }

    fn protocol(&mut self, key: &str, text: &str) -> Option<Protocol> {
        if let Some((_, p)) = Protocol::NAMED.iter().find(|(name, _)| *name == text) {
            return Some(*p);
        }
        if text == "ipip" || text == "ipencap" || text == "ipv6" {
            self.error(
                key,
                format!(
                    "{text:?} is ambiguous (in /etc/protocols \"ipip\" is 94, not 4); write the \
                     number: 4 for IPv4 in IP (RFC 2003/2473), 41 for IPv6 in IP"
                ),
            );
            return None;
        }
        match text.parse::<u8>() {
            Ok(n) => Some(
                Protocol::NAMED
                    .iter()
                    .find(|(_, p)| p.number() == n)
                    .map_or(Protocol::Number(n), |(_, p)| *p),
            ),
            Err(_) => {
                self.error(
                    key,
                    format!(
                        "expected one of \"tcp\", \"udp\", \"sctp\", \"icmp\", \"icmpv6\", \
                         \"esp\", \"ah\", \"gre\" or a protocol number 0-255, found {text:?}"
                    ),
                );
                None
            }
        }
    }

    fn protocols(
        &mut self,
        key: &str,
        list: Option<&[String]>,
        default: &[Protocol],
    ) -> Option<Vec<Protocol>> {
        let Some(list) = list else {
            return Some(default.to_vec());
        };
        if list.is_empty() {
            self.error(key, "is empty; leave it out for the default");
            return None;
        }
        if !self.list_len(key, list.len()) {
            return None;
        }
        let before = self.errors.len();
        let mut out: Vec<Protocol> = Vec::new();
        for (i, text) in list.iter().enumerate() {
            let k = format!("{key}[{i}]");
            if let Some(p) = self.protocol(&k, text) {
                if out.contains(&p) {
                    self.error(k, format!("{p} is listed twice"));
                } else {
                    out.push(p);
                }
            }
        }
        (self.errors.len() == before).then_some(out)
    }

    /// `ports` as a string in OpenWrt's syntax or one integer; `protocols` must all have ports.
    fn ports(
        &mut self,
        key: &str,
        value: Option<&Value>,
        protocols: Option<&[Protocol]>,
    ) -> Option<Vec<PortRange>> {
        let Some(value) = value else {
            return Some(Vec::new());
        };
        let parsed = match value {
            Value::String(s) => parse_ports(s),
            Value::Integer(n) => u16::try_from(*n)
                .ok()
                .filter(|p| *p != 0)
                .map(|p| vec![PortRange::single(p)])
                .ok_or_else(|| format!("expected a port 1-65535, found {n}")),
            other => Err(format!(
                "expected ports like \"80 443 8000:8999\", found {}",
                other.type_str()
            )),
        };
        let ports = match parsed {
            Ok(p) => p,
            Err(e) => {
                self.error(key, e);
                return None;
            }
        };
        if let Some(bad) = protocols.and_then(|ps| ps.iter().find(|p| !p.has_ports())) {
            self.error(
                key,
                format!(
                    "{bad} has no ports; ports need proto = [\"tcp\"], [\"udp\"] or [\"sctp\"]"
                ),
            );
            return None;
        }
        Some(ports)
    }

    fn list_len(&mut self, key: &str, n: usize) -> bool {
        if n > MAX_LIST {
            self.error(key, format!("has {n} items, more than {MAX_LIST}"));
            return false;
        }
        true
    }

    fn name(&mut self, key: &str, name: &str) -> bool {
        if name.is_empty() || name.len() > MAX_NAME_LEN || !name.bytes().all(is_name_byte) {
            self.error(
                key,
                format!(
                    "expected 1 to {MAX_NAME_LEN} characters from A-Z a-z 0-9 _ . -, found {name:?}"
                ),
            );
            return false;
        }
        true
    }

    /// An interface name; with `wildcard` a trailing `*` (prefix match) is allowed.
    fn device(&mut self, key: &str, device: &str, wildcard: bool) -> bool {
        let stem = match device.strip_suffix('*') {
            Some(stem) if wildcard => stem,
            _ => device,
        };
        let ok = !stem.is_empty()
            && device.len() <= MAX_DEVICE_LEN
            && stem.bytes().all(is_name_byte)
            && stem != "."
            && stem != "..";
        if !ok {
            let tail = if wildcard {
                ", optionally ending in * to match every name it starts"
            } else {
                ""
            };
            self.error(
                key,
                format!(
                    "expected an interface name of 1 to {MAX_DEVICE_LEN} bytes from \
                     A-Z a-z 0-9 _ . -{tail}, found {device:?}"
                ),
            );
        }
        ok
    }

    fn zones(&mut self, files: &[FileZone]) -> Vec<Zone> {
        let mut names = HashSet::new();
        let mut device_owner: HashMap<&str, &str> = HashMap::new();
        let mut tunnel_owner: HashMap<&str, &str> = HashMap::new();
        let known: HashSet<&str> = files.iter().map(|z| z.name.as_str()).collect();
        let mut out = Vec::new();
        for (i, z) in files.iter().enumerate() {
            let key = |f: &str| format!("zone[{i}].{f}");
            let before = self.errors.len();
            if self.name(&key("name"), &z.name) {
                if z.name == GATEWAY_TARGET {
                    self.error(
                        key("name"),
                        "\"gateway\" names the gateway itself in [[allow]] `to`; pick another name",
                    );
                } else if !names.insert(z.name.as_str()) {
                    self.error(key("name"), format!("zone {:?} is defined twice", z.name));
                }
            }
            let devices = z.devices.as_deref().unwrap_or_default();
            let tunnels = z.tunnels.as_deref().unwrap_or_default();
            if devices.is_empty() && tunnels.is_empty() {
                self.error(
                    key("devices"),
                    "the zone has no devices and no tunnels, so nothing is in it",
                );
            }
            self.list_len(&key("devices"), devices.len());
            for (j, d) in devices.iter().enumerate() {
                let k = format!("zone[{i}].devices[{j}]");
                if self.device(&k, d, true)
                    && let Some(other) = device_owner.insert(d.as_str(), z.name.as_str())
                {
                    self.error(k, format!("{d:?} is already in zone {other:?}"));
                }
            }
            self.list_len(&key("tunnels"), tunnels.len());
            for (j, t) in tunnels.iter().enumerate() {
                let k = format!("zone[{i}].tunnels[{j}]");
                if !self.tunnel_names.contains(t) {
                    self.error(k, format!("no [[tunnel]] is named {t:?}"));
                } else if let Some(other) = tunnel_owner.insert(t.as_str(), z.name.as_str()) {
                    self.error(k, format!("tunnel {t:?} is already in zone {other:?}"));
                }
            }
            let input = self.verdict(&key("input"), z.input.as_deref());
            let forward = self.verdict(&key("forward"), z.forward.as_deref());
            let forward_to = z.forward_to.clone().unwrap_or_default();
            let mut seen = HashSet::new();
            for (j, to) in forward_to.iter().enumerate() {
                let k = format!("zone[{i}].forward_to[{j}]");
                if !known.contains(to.as_str()) {
                    self.error(k, format!("no [[zone]] is named {to:?}"));
                } else if !seen.insert(to) {
                    self.error(k, format!("zone {to:?} is listed twice"));
                }
            }
            if self.errors.len() == before {
                out.push(Zone {
                    name: z.name.clone(),
                    devices: devices.to_vec(),
                    tunnels: tunnels.to_vec(),
                    input,
                    forward,
                    forward_to,
                    masquerade: z.masquerade.unwrap_or(false),
                    mss_clamp: z.mss_clamp.unwrap_or(false),
                });
            }
        }
        out
    }

    fn zone_ref(&mut self, key: &str, name: &str, zones: &HashSet<&str>) -> bool {
        if zones.contains(name) {
            return true;
        }
        let mut known: Vec<&str> = zones.iter().copied().collect();
        known.sort_unstable();
        self.error(
            key,
            format!(
                "no [[zone]] is named {name:?} (zones: {})",
                known.join(", ")
            ),
        );
        false
    }

    fn family(&mut self, key: &str, text: Option<&str>) -> Option<Family> {
        match text {
            None | Some("any") => Some(Family::Any),
            Some("ipv4") => Some(Family::Ipv4),
            Some("ipv6") => Some(Family::Ipv6),
            Some(other) => {
                self.error(
                    key,
                    format!("expected \"ipv4\", \"ipv6\" or \"any\", found {other:?}"),
                );
                None
            }
        }
    }

    /// A prefix (or a bare address, taken as a host prefix) with no host bits set.
    fn prefix(&mut self, key: &str, text: &str) -> Option<IpNet> {
        let net = match text.parse::<IpNet>() {
            Ok(net) => net,
            Err(_) => match text.parse::<IpAddr>() {
                Ok(addr) => IpNet::from(addr),
                Err(_) => {
                    self.error(
                        key,
                        format!("expected an address or prefix like 2001:db8::/64, found {text:?}"),
                    );
                    return None;
                }
            },
        };
        if net.trunc() != net {
            self.error(
                key,
                format!("{net} has host bits set; the prefix is {}", net.trunc()),
            );
            return None;
        }
        Some(net)
    }

    fn prefixes(
        &mut self,
        key: &str,
        list: Option<&[String]>,
        family: Family,
    ) -> Option<Vec<IpNet>> {
        let list = list.unwrap_or_default();
        if !self.list_len(key, list.len()) {
            return None;
        }
        let before = self.errors.len();
        let mut out = Vec::new();
        for (i, text) in list.iter().enumerate() {
            let k = format!("{key}[{i}]");
            if let Some(net) = self.prefix(&k, text) {
                if family.admits(&net) {
                    out.push(net);
                } else {
                    self.error(
                        k,
                        format!("{net} is not {}, the entry's family", family.as_str()),
                    );
                }
            }
        }
        (self.errors.len() == before).then_some(out)
    }

    /// ICMP is IPv4's and ICMPv6 IPv6's; a family that excludes a protocol is a contradiction.
    fn protocols_fit_family(&mut self, key: &str, protocols: &[Protocol], family: Family) {
        for p in protocols {
            let clash = match (p, family) {
                (Protocol::Icmp, Family::Ipv6) => Some("ipv4"),
                (Protocol::Icmpv6, Family::Ipv4) => Some("ipv6"),
                _ => None,
            };
            if let Some(needs) = clash {
                self.error(
                    key,
                    format!(
                        "{p} exists only in {needs}, and the entry's family is {}",
                        family.as_str()
                    ),
                );
            }
        }
    }

    fn allows(&mut self, files: &[FileAllow], zones: &HashSet<&str>) -> Vec<Allow> {
        let mut names = HashSet::new();
        let mut out = Vec::new();
        for (i, a) in files.iter().enumerate() {
            let key = |f: &str| format!("allow[{i}].{f}");
            let before = self.errors.len();
            if self.name(&key("name"), &a.name) && !names.insert(a.name.as_str()) {
                self.error(
                    key("name"),
                    format!("[[allow]] {:?} is defined twice", a.name),
                );
            }
            self.zone_ref(&key("from"), &a.from, zones);
            let to = if a.to == GATEWAY_TARGET {
                AllowTarget::Gateway
            } else {
                self.zone_ref(&key("to"), &a.to, zones);
                AllowTarget::Zone(a.to.clone())
            };
            let family = self.family(&key("family"), a.family.as_deref());
            let protocols = self.protocols(
                &key("proto"),
                a.proto.as_deref(),
                &[Protocol::Tcp, Protocol::Udp],
            );
            let fam = family.unwrap_or_default();
            if let Some(ps) = &protocols {
                self.protocols_fit_family(&key("proto"), ps, fam);
            }
            let sources = self.prefixes(&key("source"), a.source.as_deref(), fam);
            let dest = self.prefixes(&key("dest"), a.dest.as_deref(), fam);
            if let (Some(s), Some(d)) = (&sources, &dest)
                && fam == Family::Any
            {
                self.families_meet(&key("dest"), s, d);
            }
            let ports = self.ports(&key("ports"), a.ports.as_ref(), protocols.as_deref());
            if self.errors.len() == before
                && let (Some(family), Some(protocols), Some(sources), Some(dest), Some(ports)) =
                    (family, protocols, sources, dest, ports)
            {
                out.push(Allow {
                    name: a.name.clone(),
                    from: a.from.clone(),
                    to,
                    family,
                    protocols,
                    sources,
                    dest,
                    ports,
                });
            }
        }
        out
    }

    /// With both sources and destinations, some pair must be of one family, or nothing matches.
    fn families_meet(&mut self, key: &str, sources: &[IpNet], dest: &[IpNet]) {
        if sources.is_empty() || dest.is_empty() {
            return;
        }
        let meets = sources.iter().any(|s| {
            dest.iter()
                .any(|d| s.addr().is_ipv4() == d.addr().is_ipv4())
        });
        if !meets {
            self.error(
                key,
                "no destination is of a source's family, so nothing can match",
            );
        }
    }

    fn port(&mut self, key: &str, Int(n): Int) -> Option<u16> {
        match u16::try_from(n) {
            Ok(p) if p != 0 => Some(p),
            _ => {
                self.error(key, format!("expected a port 1-65535, found {n}"));
                None
            }
        }
    }

    fn port_forwards(
        &mut self,
        files: &[FilePortForward],
        zones: &HashSet<&str>,
    ) -> Vec<PortForward> {
        let mut names = HashSet::new();
        let mut out = Vec::new();
        for (i, f) in files.iter().enumerate() {
            let key = |k: &str| format!("port_forward[{i}].{k}");
            let before = self.errors.len();
            if self.name(&key("name"), &f.name) && !names.insert(f.name.as_str()) {
                self.error(
                    key("name"),
                    format!("[[port_forward]] {:?} is defined twice", f.name),
                );
            }
            self.zone_ref(&key("from"), &f.from, zones);
            let protocols = self.protocols(
                &key("proto"),
                f.proto.as_deref(),
                &[Protocol::Tcp, Protocol::Udp],
            );
            if let Some(bad) = protocols.iter().flatten().find(|p| !p.has_ports()) {
                self.error(
                    key("proto"),
                    format!("{bad} has no ports to forward; use tcp, udp or sctp"),
                );
            }
            let port = self.port(&key("port"), f.port);
            let to_port = match f.to_port {
                Some(p) => self.port(&key("to_port"), p),
                None => port,
            };
            let to = match f.to.parse::<IpAddr>() {
                Ok(a) if a.is_unspecified() || a.is_multicast() || a.is_loopback() => {
                    self.error(key("to"), format!("{a} is not a host to forward to"));
                    None
                }
                Ok(a) => Some(a),
                Err(_) => {
                    self.error(
                        key("to"),
                        format!(
                            "expected the address of the host behind the gateway, found {:?}",
                            f.to
                        ),
                    );
                    None
                }
            };
            if self.errors.len() == before
                && let (Some(protocols), Some(port), Some(to_port), Some(to)) =
                    (protocols, port, to_port, to)
            {
                out.push(PortForward {
                    name: f.name.clone(),
                    from: f.from.clone(),
                    protocols,
                    port,
                    to,
                    to_port,
                });
            }
        }
        out
    }

    fn tables(&mut self, files: Vec<FileTable>, gateway: &Gateway) -> Vec<RouteTable> {
        self.count("table", files.len());
        let mut names = HashSet::new();
        let mut ids = HashMap::new();
        let mut out = Vec::new();
        for (i, t) in files.into_iter().enumerate() {
            let key = |k: &str| format!("table[{i}].{k}");
            let before = self.errors.len();
            if self.name(&key("name"), &t.name) {
                if ["main", "local", "default", "unspec"].contains(&t.name.as_str()) {
                    self.error(
                        key("name"),
                        format!(
                            "{:?} is a kernel table; v6gate fills only tables of its own",
                            t.name
                        ),
                    );
                } else if !names.insert(t.name.clone()) {
                    self.error(
                        key("name"),
                        format!("[[table]] {:?} is defined twice", t.name),
                    );
                }
            }
            let Int(id) = t.id;
            let id = match u32::try_from(id) {
                Ok(0 | 253..=255) => {
                    self.error(
                        key("id"),
                        format!("{id} is a kernel table (unspec, default, main, local)"),
                    );
                    None
                }
                Ok(id) if id == gateway.pin_table => {
                    self.error(
                        key("id"),
                        format!("{id} is the pin table (gateway.pin_table)"),
                    );
                    None
                }
                Ok(id) => {
                    if let Some(other) = ids.insert(id, t.name.clone()) {
                        self.error(key("id"), format!("{id} is also the id of table {other:?}"));
                    }
                    Some(id)
                }
                Err(_) => {
                    self.error(
                        key("id"),
                        format!("expected a table id 1-4294967295, found {id}"),
                    );
                    None
                }
            };
            let routes = t.routes.unwrap_or_default();
            if routes.len() > MAX_ENTRIES {
                self.error(
                    key("routes"),
                    format!("has {} routes, more than {MAX_ENTRIES}", routes.len()),
                );
            }
            let mut parsed = Vec::new();
            for (j, r) in routes.into_iter().enumerate() {
                let k = |f: &str| format!("table[{i}].routes[{j}].{f}");
                let dst = self.prefix(&k("dst"), &r.dst);
                let via = r.via.as_deref().and_then(|v| match v.parse::<IpAddr>() {
                    Ok(a) => Some(a),
                    Err(_) => {
                        self.error(k("via"), format!("expected a gateway address, found {v:?}"));
                        None
                    }
                });
                if let (Some(dst), Some(via)) = (dst, via)
                    && dst.addr().is_ipv4() != via.is_ipv4()
                {
                    self.error(k("via"), format!("{via} is not of {dst}'s family"));
                }
                if let Some(d) = &r.device {
                    self.device(&k("device"), d, false);
                }
                if r.via.is_none() && r.device.is_none() {
                    self.error(k("dst"), "the route needs `via`, `device` or both");
                }
                let metric = match r.metric {
                    None => Some(gateway.route_metric),
                    Some(Int(m)) => u32::try_from(m).ok().or_else(|| {
                        self.error(k("metric"), format!("expected 0-4294967295, found {m}"));
                        None
                    }),
                };
                if let (Some(dst), Some(metric)) = (dst, metric) {
                    parsed.push(TableRoute {
                        dst,
                        via,
                        device: r.device,
                        metric,
                    });
                }
            }
            if self.errors.len() == before
                && let Some(id) = id
            {
                out.push(RouteTable {
                    name: t.name,
                    id,
                    routes: parsed,
                });
            }
        }
        out
    }

    fn rules(
        &mut self,
        files: Vec<FileRule>,
        tables: &[RouteTable],
        written: &HashSet<String>,
        gateway: &Gateway,
    ) -> Vec<PolicyRule> {
        self.count("rule", files.len());
        let mut names = HashSet::new();
        let mut priorities = HashMap::new();
        let mut marks = 0u32;
        let mut out = Vec::new();
        for (i, r) in files.into_iter().enumerate() {
            let key = |k: &str| format!("rule[{i}].{k}");
            let before = self.errors.len();
            if self.name(&key("name"), &r.name) && !names.insert(r.name.clone()) {
                self.error(
                    key("name"),
                    format!("[[rule]] {:?} is defined twice", r.name),
                );
            }
            let lo = i64::from(gateway.pin_rule_priority) + 1;
            let priority = match r.priority {
                None => Some(DEFAULT_RULE_PRIORITY.saturating_add(i as u32)),
                Some(Int(p)) if (lo..MAIN_RULE_PRIORITY).contains(&p) => Some(p as u32),
                Some(Int(p)) => {
                    self.error(
                        key("priority"),
                        format!(
                            "expected {lo}..={}, found {p}: after the pin rule \
                             (gateway.pin_rule_priority) and before `main` (32766)",
                            MAIN_RULE_PRIORITY - 1
                        ),
                    );
                    None
                }
            };
            if let Some(p) = priority
                && let Some(other) = priorities.insert(p, r.name.clone())
            {
                self.error(
                    key("priority"),
                    format!("{p} is also the priority of rule {other:?}"),
                );
            }
            let from = r.from.as_deref().and_then(|t| self.prefix(&key("from"), t));
            let to = r.to.as_deref().and_then(|t| self.prefix(&key("to"), t));
            let family = match (from, to) {
                (Some(f), Some(t)) if f.addr().is_ipv4() != t.addr().is_ipv4() => {
                    self.error(
                        key("to"),
                        format!("{t} is not of the family of `from` ({f})"),
                    );
                    Family::Any
                }
                (Some(n), _) | (None, Some(n)) if n.addr().is_ipv4() => Family::Ipv4,
                (Some(_), _) | (None, Some(_)) => Family::Ipv6,
                (None, None) => Family::Any,
            };
            if let Some(d) = &r.iif {
                self.device(&key("iif"), d, false);
            }
            let table = match &r.table {
                Value::String(s) if s == "main" => Some(MAIN_TABLE),
                Value::String(s) => match tables.iter().find(|t| t.name == *s) {
                    Some(t) => Some(t.id),
                    // A table written but refused has its own error already.
                    None if written.contains(s) => None,
                    None => {
                        self.error(key("table"), format!("no [[table]] is named {s:?}"));
                        None
                    }
                },
                Value::Integer(n) => {
                    match u32::try_from(*n) {
                        Ok(id @ (1..=254 | 256..)) => Some(id),
                        _ => {
                            self.error(key("table"), format!("expected a table id 1-4294967295 other than 255 (local), found {n}"));
                            None
                        }
                    }
                }
                other => {
                    self.error(
                        key("table"),
                        format!(
                            "expected a [[table]] name or an id, found {}",
                            other.type_str()
                        ),
                    );
                    None
                }
            };
            let protocols = self.protocols(&key("proto"), r.proto.as_deref(), &[]);
            if let Some(ps) = &protocols {
                self.protocols_fit_family(&key("proto"), ps, family);
            }
            let ports = self.ports(
                &key("ports"),
                r.ports.as_ref(),
                protocols.as_deref().filter(|p| !p.is_empty()),
            );
            if r.ports.is_some() && protocols.as_ref().is_some_and(Vec::is_empty) {
                self.error(
                    key("ports"),
                    "ports need proto = [\"tcp\"], [\"udp\"] or [\"sctp\"]",
                );
            }
            if self.errors.len() == before
                && let (Some(priority), Some(table), Some(protocols), Some(ports)) =
                    (priority, table, protocols, ports)
            {
                let mark = (!protocols.is_empty() || !ports.is_empty()).then(|| {
                    marks += 1;
                    POLICY_MARK_BASE + marks
                });
                out.push(PolicyRule {
                    name: r.name,
                    priority,
                    from,
                    to,
                    iif: r.iif,
                    table,
                    family,
                    protocols,
                    ports,
                    mark,
                });
            }
        }
        out
    }

    fn sysctls(&mut self, table: Option<toml::Table>, gateway: &Gateway) -> Vec<SysctlChange> {
        let Some(table) = table else {
            return Vec::new();
        };
        if table.len() > MAX_LIST {
            self.error(
                "sysctl",
                format!("has {} keys, more than {MAX_LIST}", table.len()),
            );
            return Vec::new();
        }
        let mut taken = HashMap::new();
        if gateway.ipv4_forwarding.is_some() {
            taken.insert("net/ipv4/ip_forward".to_owned(), "gateway.ipv4_forwarding");
        }
        if gateway.ipv6_forwarding.is_some() {
            taken.insert(
                "net/ipv6/conf/all/forwarding".to_owned(),
                "gateway.ipv6_forwarding",
            );
        }
        let mut seen: HashMap<String, String> = HashMap::new();
        let mut out = Vec::new();
        for (name, value) in table {
            let key = format!("sysctl.{name}");
            let Some(path) = self.sysctl_key(&key, &name) else {
                continue;
            };
            if let Some(other) = taken.get(&path) {
                self.error(
                    &key,
                    format!("is already set by {other}; set it in one place"),
                );
                continue;
            }
            if let Some(other) = seen.insert(path.clone(), name.clone()) {
                self.error(&key, format!("is the same key as {other:?}"));
                continue;
            }
            let value = match value {
                Value::String(s) => s,
                Value::Integer(n) => n.to_string(),
                Value::Boolean(b) => u8::from(b).to_string(),
                other => {
                    self.error(
                        &key,
                        format!("expected a string or integer, found {}", other.type_str()),
                    );
                    continue;
                }
            };
            if value.is_empty()
                || value.len() > MAX_SYSCTL_VALUE
                || value.chars().any(char::is_control)
            {
                self.error(
                    &key,
                    format!(
                        "expected 1 to {MAX_SYSCTL_VALUE} printable characters, found {value:?}"
                    ),
                );
                continue;
            }
            out.push(SysctlChange { key: path, value });
        }
        out
    }

    /// `net.ipv4.conf.all.rp_filter` or `net/ipv4/conf/eth0.100/rp_filter` to the path below
    /// /proc/sys. Only `net` keys: v6gate sets up networking, not the rest of the kernel.
    fn sysctl_key(&mut self, key: &str, name: &str) -> Option<String> {
        let parts: Vec<&str> = if name.contains('/') {
            name.split('/').collect()
        } else {
            name.split('.').collect()
        };
        let ok = name.len() <= MAX_SYSCTL_KEY
            && parts.len() >= 2
            && parts[0] == "net"
            && parts
                .iter()
                .all(|p| !p.is_empty() && *p != "." && *p != ".." && p.bytes().all(is_name_byte));
        if !ok {
            self.error(
                key,
                format!(
                    "expected a net.* sysctl like \"net.ipv4.conf.all.rp_filter\" (write \
                     net/ipv4/conf/eth0.100/rp_filter when a device name holds a dot), found {name:?}"
                ),
            );
            return None;
        }
        Some(parts.join("/"))
    }
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')
}
