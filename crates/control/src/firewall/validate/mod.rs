//! Checks of the firewall and policy-routing sections; every problem is recorded with its key
//! path, like the rest of validation. `[firewall]` and what hangs off it are checked here,
//! `[[table]]`/`[[rule]]` in `routing`, `[sysctl]` in `sysctl`.

mod routing;
mod sysctl;

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use ipnet::IpNet;
use toml::Value;

use super::file::{FileAllow, FilePortForward, FileZone, Sections};
use super::model::{
    Allow, AllowTarget, Family, Firewall, GATEWAY_TARGET, PortForward, Protocol, Routing, Service,
    Verdict, Zone,
};
use super::ports::{PortRange, parse_ports};
use crate::error::Diagnostic;
use crate::file::Int;
use crate::model::{Gateway, MAX_DEVICE_LEN};
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
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')
}
