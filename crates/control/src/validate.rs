//! From TOML text to a validated [`Config`], collecting every problem with its key path.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;
use toml::Value;
use toml::de::DeTable;

use crate::duration::{format_duration, parse_duration};
use crate::error::{ConfigError, Diagnostic};
use crate::file::{
    FileConfig, FileGateway, FileHealth, FileIke, FilePath, FileTunnel, FileWatch, Int,
};
use crate::ipsec::{Encap, IkeStart, IpsecConfig, Psk};
use crate::locate::KeyIndex;
use crate::model::{
    Config, DEFAULT_CONTROL_SOCKET, DEFAULT_HOP_LIMIT, DEFAULT_PATH, DEFAULT_PIN_RULE_PRIORITY,
    DEFAULT_PIN_TABLE, DEFAULT_ROUTE_METRIC, Gateway, Health, Hook, IPV6_HEADER_LEN, InnerFamilies,
    MAIN_TABLE, MAX_DEVICE_LEN, Mode, MssClamp, Path, Probe, TrafficClass, Tunnel, Watch,
    WatchRoute, default_device,
};
use crate::plan::tunnel_routes;
use crate::softwire;

/// Smallest MTU of an IPv4 link (RFC 791).
const IPV4_MIN_MTU: i64 = 68;
const IPV6_MIN_MTU: i64 = crate::model::IPV6_MIN_MTU as i64;
/// Largest inner packet: a full 64 KiB IPv6 packet minus the outer header.
const MAX_MTU: i64 = 65535 - IPV6_HEADER_LEN as i64;
/// Smallest MSS worth clamping to: IPv4's 68-byte minimum MTU plus a full IPv4 header's worth
/// of slack minus the TCP header, as Linux's TCP_MIN_MSS.
const MIN_MSS: i64 = 88;
const MAX_NAME_LEN: usize = 64;
/// Linux ip rule priority of the `main` table lookup; the pin rule must come before it.
const MAIN_RULE_PRIORITY: i64 = 32766;
/// Shortest probe interval or timeout: below this a lost probe says more about scheduling
/// jitter than about the path.
const MIN_PROBE_TIME: Duration = Duration::from_millis(10);
/// Longest duration of any timer; beyond an hour a probe no longer watches anything.
const MAX_TIMER: Duration = Duration::from_secs(3600);
/// Most probes in a row `down_after` / `up_after` may ask for.
const MAX_PROBE_COUNT: i64 = 1000;
/// Largest path cost, OSPF's largest interface cost.
const MAX_COST: i64 = 65535;
/// Kernel tables a v6gate table must not be: unspec, default, main, local.
const RESERVED_TABLES: [(u32, &str); 4] = [
    (0, "unspec"),
    (253, "default"),
    (254, "main"),
    (255, "local"),
];

pub(crate) fn config_from_str(text: &str, origin: &str) -> Result<Config, ConfigError> {
    let doc = match DeTable::parse(text) {
        Ok(doc) => doc,
        Err(e) => {
            let index = KeyIndex::empty(text);
            let mut d = Diagnostic::new("", e.message().trim_end());
            d.location = e.span().map(|s| index.line_col(s.start));
            return Err(ConfigError::new(origin, vec![d]));
        }
    };
    let index = KeyIndex::new(text, &doc);
    let file = match FileConfig::deserialize(toml::de::Deserializer::from(doc)) {
        Ok(file) => file,
        Err(e) => return Err(ConfigError::new(origin, vec![serde_diagnostic(&e, &index)])),
    };

    let mut check = Checker {
        // Relative key files sit beside the config, wherever the daemon was started from.
        config_dir: std::path::Path::new(origin).parent().map(PathBuf::from),
        ..Checker::default()
    };
    let mut config = check.config(file);
    let locate = |mut diagnostics: Vec<Diagnostic>| {
        for d in &mut diagnostics {
            d.location = index.locate(&d.key);
        }
        // File order reads best; stable so problems on one line keep the order they were found in.
        diagnostics.sort_by_key(|d| d.location.unwrap_or((usize::MAX, 0)));
        diagnostics
    };
    if check.diagnostics.is_empty() {
        config.warnings = locate(check.warnings);
        return Ok(config);
    }
    Err(ConfigError::new(origin, locate(check.diagnostics)))
}

/// Names the key a serde error is about, using its span.
fn serde_diagnostic(e: &toml::de::Error, index: &KeyIndex<'_>) -> Diagnostic {
    let start = e.span().map(|s| s.start);
    let mut key = start
        .and_then(|at| index.path_at(at))
        .unwrap_or_default()
        .to_owned();
    let message = e.message().trim_end().to_owned();
    // A missing key has the enclosing table's span; name the key itself.
    if let Some(field) = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.strip_suffix('`'))
    {
        key = if key.is_empty() {
            field.to_owned()
        } else {
            format!("{key}.{field}")
        };
    }
    let mut d = Diagnostic::new(key, message);
    d.location = start.map(|at| index.line_col(at));
    d
}

#[derive(Default)]
struct Checker {
    diagnostics: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
    /// Directory of the config file, against which relative `psk_file`s are resolved.
    config_dir: Option<PathBuf>,
    /// Tunnels written in the single-path form, whose path keys are the tunnel's own.
    single_path: HashSet<usize>,
}

/// What a tunnel's paths need to know about the tunnel.
struct TunnelShape<'a> {
    index: usize,
    families: Option<InnerFamilies>,
    /// The tunnel's own `address`es, which every path device gets too.
    addresses: Option<&'a [IpNet]>,
    device: &'a str,
    /// Whether `device` is a valid name (derived names are only checked when it is).
    device_ok: bool,
    device_per_path: bool,
    has_health: bool,
}

impl Checker {
    fn error(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.diagnostics.push(Diagnostic::new(key, message));
    }

    fn warn(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.warnings.push(Diagnostic::new(key, message));
    }

    fn config(&mut self, mut file: FileConfig) -> Config {
        let sections = crate::firewall::Sections::take(&mut file);
        let gateway = self.gateway(file.gateway);
        let mut tunnels: Vec<(usize, Tunnel)> = Vec::new();
        let mut softwires = Vec::new();
        for (i, t) in file.tunnel.into_iter().enumerate() {
            if softwire::is_softwire_mode(&t.mode) {
                let device_ok = t
                    .device
                    .as_ref()
                    .is_none_or(|d| self.device(&format!("tunnel[{i}].device"), d));
                let names_ok = self.name(&format!("tunnel[{i}].name"), &t.name) && device_ok;
                let sw = softwire::check(i, t, names_ok, &mut self.diagnostics);
                softwires.extend(sw.map(|sw| (i, sw)));
                continue;
            }
            softwire::foreign_keys(i, &t, &mut self.diagnostics);
            tunnels.extend(self.tunnel(i, t, &gateway).map(|t| (i, t)));
        }
        self.across_tunnels(&tunnels);
        softwire::across(&softwires, &tunnels, &mut self.diagnostics);
        let watches: Vec<(usize, Watch)> = file
            .watch
            .into_iter()
            .enumerate()
            .filter_map(|(i, w)| self.watch(i, w, &gateway).map(|w| (i, w)))
            .collect();
        self.across_watches(&watches, &tunnels, &gateway);
        let firewall = crate::firewall::validate::check(
            sections,
            &gateway,
            &mut self.diagnostics,
            &mut self.warnings,
        );
        let named: Vec<Tunnel> = tunnels.iter().map(|(_, t)| t.clone()).collect();
        let ddns = crate::ddns::validate::entries(self, file.ddns, &named);
        Config {
            gateway,
            tunnels: tunnels.into_iter().map(|(_, t)| t).collect(),
            softwires: softwires.into_iter().map(|(_, s)| s).collect(),
            watches: watches.into_iter().map(|(_, w)| w).collect(),
            ddns,
            warnings: Vec::new(),
            firewall: firewall.firewall,
            routing: firewall.routing,
            sysctls: firewall.sysctls,
        }
    }

    fn gateway(&mut self, file: FileGateway) -> Gateway {
        let control_socket = match file.control_socket {
            Some(path) if !path.starts_with('/') => {
                self.error(
                    "gateway.control_socket",
                    format!("expected an absolute path, found {path:?}"),
                );
                PathBuf::from(DEFAULT_CONTROL_SOCKET)
            }
            Some(path) => PathBuf::from(path),
            None => PathBuf::from(DEFAULT_CONTROL_SOCKET),
        };
        let pin_table = file
            .pin_table
            .and_then(|Int(t)| self.table_id("gateway.pin_table", t))
            .unwrap_or(DEFAULT_PIN_TABLE);
        let pin_rule_priority = file
            .pin_rule_priority
            .and_then(|Int(p)| {
                self.int_in_why(
                    "gateway.pin_rule_priority",
                    p,
                    1,
                    MAIN_RULE_PRIORITY - 1,
                    "the pin rule must come after `local` (0) and before `main` (32766)",
                )
            })
            .map_or(DEFAULT_PIN_RULE_PRIORITY, |p| p as u32);
        let route_metric = file
            .route_metric
            .and_then(|Int(m)| self.int_in("gateway.route_metric", m, 0, u32::MAX.into()))
            .map_or(DEFAULT_ROUTE_METRIC, |m| m as u32);
        Gateway {
            control_socket,
            pin_table,
            pin_rule_priority,
            ipv4_forwarding: file.ipv4_forwarding,
            ipv6_forwarding: file.ipv6_forwarding,
            route_metric,
        }
    }

    /// Converts one `[[tunnel]]`; `None` when anything in it is wrong (the problems are recorded).
    fn tunnel(&mut self, i: usize, mut file: FileTunnel, gateway: &Gateway) -> Option<Tunnel> {
        let before = self.diagnostics.len();
        let key = |field: &str| format!("tunnel[{i}].{field}");

        let name_ok = self.name(&key("name"), &file.name);
        let mut device_ok = name_ok;
        let device = match &file.device {
            Some(device) => {
                device_ok = self.device(&key("device"), device);
                device.clone()
            }
            None => {
                let device = default_device(&file.name);
                if name_ok && device.len() > MAX_DEVICE_LEN {
                    device_ok = false;
                    self.error(
                        key("name"),
                        format!(
                            "the device name derived from it, {device:?}, is {} bytes, longer than \
                             {MAX_DEVICE_LEN}; use a shorter name or set `device`",
                            device.len()
                        ),
                    );
                }
                device
            }
        };

        let mode = self.mode(&key("mode"), &file.mode);
        let families = match (&file.inner_families, mode) {
            (Some(_), Some(Mode::Ipsec)) => {
                self.error(
                    key("inner_families"),
                    "an ipsec tunnel carries the families of its local_subnets and routes; \
                     leave inner_families out",
                );
                None
            }
            (None, Some(Mode::Ipsec)) => Some(selector_families(&file)),
            (Some(list), Some(mode)) => self.families(&key("inner_families"), list, mode),
            (None, Some(mode)) => Some(mode.families()),
            (_, None) => None,
        };

        let addresses = match (&file.address, families) {
            (None, _) => Some(Vec::new()),
            (Some(value), Some(families)) => self.addresses(&key("address"), value, families),
            (Some(_), None) => None,
        };

        let ipsec_file = file.ike.take();
        let ipsec = self.ipsec(i, &file, ipsec_file, mode);
        let local_subnets = match (&file.local_subnets, mode, families) {
            (None, _, _) => Some(Vec::new()),
            (Some(list), Some(Mode::Ipsec), Some(families)) => {
                self.prefixes(&key("local_subnets"), list, Mode::Ipsec, families)
            }
            (Some(_), Some(Mode::Ipsec), None) | (Some(_), None, _) => None,
            (Some(_), Some(mode), _) => {
                self.error(
                    key("local_subnets"),
                    format!(
                        "names the local traffic selectors of mode = \"ipsec\"; mode = \"{mode}\" \
                         carries whatever is routed into it"
                    ),
                );
                None
            }
        };

        let device_per_path = file.device_per_path.unwrap_or(false);
        let file_health = file.health.take();
        let shape = TunnelShape {
            index: i,
            families,
            addresses: addresses.as_deref(),
            device: &device,
            device_ok,
            device_per_path,
            has_health: file_health.is_some(),
        };
        let paths = self.paths(&file, &shape);
        let health = match file_health {
            Some(h) if !self.single_path.contains(&i) => {
                self.health(&key("health"), h, Health::TUNNEL_DEFAULT)
            }
            // The single-path form is not probed; `single_path` has reported the table.
            Some(_) => None,
            None => Some(Health::TUNNEL_DEFAULT),
        };

        let encap_limit = match &file.encap_limit {
            None => Some(None),
            Some(Value::String(s)) if s == "none" => Some(None),
            Some(Value::Integer(n)) if (0..=255).contains(n) => Some(Some(*n as u8)),
            Some(other) => {
                self.error(
                    key("encap_limit"),
                    format!(
                        "expected \"none\" or an integer 0..=255, found {}",
                        describe(other)
                    ),
                );
                None
            }
        };
        if let (Some(Some(_)), Some(paths)) = (encap_limit, &paths)
            && !paths.iter().any(Path::is_ipv6)
        {
            self.error(
                key("encap_limit"),
                "is an IPv6 option, and every path of this tunnel runs over IPv4",
            );
        }

        let mtu = match (file.mtu, families) {
            (None, _) => Some(None),
            (Some(Int(mtu)), Some(families)) if families.ipv6 => self
                .int_in_why(
                    &key("mtu"),
                    mtu,
                    IPV6_MIN_MTU,
                    MAX_MTU,
                    "the tunnel carries IPv6, whose links need at least 1280",
                )
                .map(|m| Some(m as u16)),
            (Some(Int(mtu)), _) => self
                .int_in(&key("mtu"), mtu, IPV4_MIN_MTU, MAX_MTU)
                .map(|m| Some(m as u16)),
        };

        let routes = match (&file.routes, mode, families) {
            (Some(list), Some(mode), Some(families)) => {
                self.prefixes(&key("routes"), list, mode, families)
            }
            (None, _, _) => Some(Vec::new()),
            _ => None,
        };
        let allowed_sources = match (&file.allowed_sources, mode, families) {
            (Some(list), Some(mode), Some(families)) => {
                self.prefixes(&key("allowed_sources"), list, mode, families)
            }
            (None, _, _) => routes.clone(),
            _ => None,
        };

        let mss_clamp = match &file.mss_clamp {
            None => Some(MssClamp::Auto),
            Some(Value::String(s)) if s == "auto" => Some(MssClamp::Auto),
            Some(Value::String(s)) if s == "off" => Some(MssClamp::Off),
            Some(Value::Integer(n)) if (MIN_MSS..=MAX_MTU).contains(n) => {
                Some(MssClamp::Fixed(*n as u16))
            }
            Some(other) => {
                self.error(
                    key("mss_clamp"),
                    format!(
                        "expected \"auto\", \"off\" or an integer {MIN_MSS}..={MAX_MTU}, found {}",
                        describe(other)
                    ),
                );
                None
            }
        };

        let tclass = match &file.tclass {
            None => Some(TrafficClass::default()),
            Some(Value::String(s)) if s == "inherit" => Some(TrafficClass::Inherit),
            Some(Value::Integer(n)) if (0..=255).contains(n) => Some(TrafficClass::Fixed(*n as u8)),
            Some(other) => {
                self.error(
                    key("tclass"),
                    format!(
                        "expected \"inherit\" or an integer 0..=255, found {}",
                        describe(other)
                    ),
                );
                None
            }
        };

        let hop_limit = match file.hop_limit {
            None => Some(DEFAULT_HOP_LIMIT),
            Some(Int(h)) => self.int_in(&key("hop_limit"), h, 1, 255).map(|h| h as u8),
        };

        // The tunnel's `underlay_mtu` is the default of every path that sets none, so it must
        // suit each path's family.
        let underlay_mtu = match (file.underlay_mtu, &paths) {
            (None, _) => Some(None),
            (Some(_), None) => None,
            (Some(Int(m)), Some(paths)) => {
                let inheriting = paths.iter().filter(|p| p.underlay_mtu.is_none());
                let (v6, v4) = inheriting.fold((0, 0), |(v6, v4), p| {
                    if p.is_ipv6() {
                        (v6 + 1, v4)
                    } else {
                        (v6, v4 + 1)
                    }
                });
                let (lo, why) = match (v6, v4) {
                    (_, 0) => (IPV6_MIN_MTU, "the underlay is an IPv6 link"),
                    (0, _) => (IPV4_MIN_MTU, "the underlay is an IPv4 link"),
                    _ => (
                        IPV6_MIN_MTU,
                        "it applies to every path without its own, and one runs over IPv6",
                    ),
                };
                self.int_in_why(&key("underlay_mtu"), m, lo, 65535, why)
                    .map(|m| Some(m as u16))
            }
        };
        if let (Some(paths), Some(allowed)) = (&paths, &allowed_sources) {
            self.probe_targets_allowed(i, paths, allowed);
        }
        if let (Some(paths), Some(routes)) = (&paths, &routes)
            && device_per_path
            && !routes.is_empty()
        {
            self.costs_differ(i, paths);
        }

        let route_table =
            self.route_table_value(&key("route_table"), file.route_table.as_ref(), gateway);

        if self.diagnostics.len() != before {
            return None;
        }
        // Every field parsed, so none of these is None; `?` keeps that without unwrapping.
        let underlay_mtu = underlay_mtu?;
        let paths = paths?
            .into_iter()
            .map(|p| Path {
                underlay_mtu: p.underlay_mtu.or(underlay_mtu),
                ..p
            })
            .collect();
        Some(Tunnel {
            name: file.name,
            device,
            mode: mode?,
            paths,
            device_per_path,
            health: health?,
            encap_limit: encap_limit?,
            mtu: mtu?,
            routes: routes?,
            allowed_sources: allowed_sources?,
            inner_families: families?,
            mss_clamp: mss_clamp?,
            addresses: addresses?,
            tclass: tclass?,
            hop_limit: hop_limit?,
            route_table: route_table?,
            enabled: file.enabled.unwrap_or(true),
            local_subnets: local_subnets?,
            ipsec: ipsec?,
        })
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

    fn device(&mut self, key: &str, device: &str) -> bool {
        if device.is_empty()
            || device.len() > MAX_DEVICE_LEN
            || !device.bytes().all(is_name_byte)
            || device == "."
            || device == ".."
        {
            self.error(
                key,
                format!(
                    "expected an interface name of 1 to {MAX_DEVICE_LEN} bytes from \
                     A-Z a-z 0-9 _ . -, found {device:?}"
                ),
            );
            return false;
        }
        true
    }

    fn mode(&mut self, key: &str, mode: &str) -> Option<Mode> {
        let found = Mode::ALL.into_iter().find(|m| m.as_str() == mode);
        if found.is_none() {
            self.error(
                key,
                format!(
                    "expected one of \"ipip6\", \"ip6ip6\", \"any\", \"ipsec\", \"map-e\", \"ds-lite\", \
                     found {mode:?}"
                ),
            );
        }
        found
    }

    /// An outer address of either family: unicast, and not link-local (outer packets leave by
    /// route lookup, which gives a link-local address no scope).
    fn endpoint(&mut self, key: &str, text: &str) -> Option<IpAddr> {
        let addr = self.ip(key, text)?;
        self.unicast(key, addr, Scope::None)
    }

    /// The tunnel's paths: `[[tunnel.path]]` tables, or the single-path form's one.
    fn paths(&mut self, file: &FileTunnel, shape: &TunnelShape<'_>) -> Option<Vec<Path>> {
        let i = shape.index;
        let key = |field: &str| format!("tunnel[{i}].{field}");
        let Some(list) = &file.path else {
            return self.single_path(file, shape);
        };
        let before = self.diagnostics.len();
        for (field, value) in [("local", &file.local), ("remote", &file.remote)] {
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

    /// `local` and `remote` on the tunnel: one path, named "default", cost 0, not probed (there
    /// is nothing to fail over to, and the peer need not be v6gate).
    fn single_path(&mut self, file: &FileTunnel, shape: &TunnelShape<'_>) -> Option<Vec<Path>> {
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
        if shape.has_health {
            self.error(
                key("health"),
                "[tunnel.health] times path probes, and the single-path form is not probed; \
                 write the path as a [[tunnel.path]] table to probe it",
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
        let mut path = Path::new(DEFAULT_PATH, ends.local, ends.remote, shape.device);
        path.probe = Probe::None;
        path.remote_name = ends.remote_name;
        Some(vec![path])
    }

    /// One `[[tunnel.path]]` table at key `prefix` (`tunnel[0].path[1]`).
    fn path(&mut self, prefix: &str, file: &FilePath, shape: &TunnelShape<'_>) -> Option<Path> {
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

    fn probe(
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
    fn not_tunnel_addresses(&mut self, key: &str, own: &[IpNet], tunnel: Option<&[IpNet]>) -> bool {
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
    fn probe_targets_allowed(&mut self, i: usize, paths: &[Path], allowed: &[IpNet]) {
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
    fn costs_differ(&mut self, i: usize, paths: &[Path]) {
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
    fn path_key(&self, i: usize, j: usize) -> String {
        if self.single_path.contains(&i) {
            format!("tunnel[{i}]")
        } else {
            format!("tunnel[{i}].path[{j}]")
        }
    }

    fn families(&mut self, key: &str, list: &[String], mode: Mode) -> Option<InnerFamilies> {
        let before = self.diagnostics.len();
        let mut families = InnerFamilies {
            ipv4: false,
            ipv6: false,
        };
        for (j, name) in list.iter().enumerate() {
            let (family, carried) = match name.as_str() {
                "ipv4" => (&mut families.ipv4, mode.families().ipv4),
                "ipv6" => (&mut families.ipv6, mode.families().ipv6),
                _ => {
                    self.error(
                        format!("{key}[{j}]"),
                        format!("expected \"ipv4\" or \"ipv6\", found {name:?}"),
                    );
                    continue;
                }
            };
            *family = true;
            if !carried {
                self.error(
                    format!("{key}[{j}]"),
                    format!("mode = \"{mode}\" does not carry {name}"),
                );
            }
        }
        if list.is_empty() {
            self.error(
                key,
                "must name at least one family; to stop the tunnel set enabled = false",
            );
        }
        (self.diagnostics.len() == before).then_some(families)
    }

    /// Inner prefixes (`routes`, `allowed_sources`): canonical, of a family the tunnel carries,
    /// each listed once.
    fn prefixes(
        &mut self,
        key: &str,
        list: &[String],
        mode: Mode,
        families: InnerFamilies,
    ) -> Option<Vec<IpNet>> {
        let before = self.diagnostics.len();
        let mut out: Vec<IpNet> = Vec::with_capacity(list.len());
        for (j, text) in list.iter().enumerate() {
            let key = format!("{key}[{j}]");
            let Some(net) = parse_net(text) else {
                self.error(
                    key,
                    format!("expected a prefix like \"203.0.113.0/24\" or \"2001:db8::/48\", found {text:?}"),
                );
                continue;
            };
            if net.trunc() != net {
                self.error(
                    key,
                    format!("{net} has host bits set; the prefix is {}", net.trunc()),
                );
            } else if !mode.families().allows(&net) {
                self.error(
                    key,
                    format!(
                        "{net} is {}, but mode = \"{mode}\" carries only {}",
                        family_name(&net),
                        carried_families(mode)
                    ),
                );
            } else if !families.allows(&net) {
                self.error(
                    key,
                    format!(
                        "{net} is {}, which inner_families leaves out",
                        family_name(&net)
                    ),
                );
            } else if let Some(first) = out.iter().position(|n| *n == net) {
                self.error(key, format!("{net} is already listed at [{first}]"));
            }
            out.push(net);
        }
        (self.diagnostics.len() == before).then_some(out)
    }

    fn addresses(
        &mut self,
        key: &str,
        value: &Value,
        families: InnerFamilies,
    ) -> Option<Vec<IpNet>> {
        let items: Vec<(String, &Value)> = match value {
            Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(j, v)| (format!("{key}[{j}]"), v))
                .collect(),
            single => vec![(key.to_owned(), single)],
        };
        let before = self.diagnostics.len();
        let mut out: Vec<IpNet> = Vec::with_capacity(items.len());
        for (key, item) in items {
            let Some(text) = item.as_str() else {
                self.error(
                    key,
                    format!(
                        "expected an address string like \"198.51.100.1/32\" (or an array of them), found {}",
                        describe(item)
                    ),
                );
                continue;
            };
            let Some(net) = parse_net(text) else {
                self.error(
                    key,
                    format!("expected an address with prefix length like \"198.51.100.1/32\", found {text:?}"),
                );
                continue;
            };
            let addr = net.addr();
            if addr.is_unspecified() || addr.is_loopback() || addr.is_multicast() {
                self.error(key, format!("{addr} cannot be an interface address"));
            } else if !families.allows(&net) {
                self.error(
                    key,
                    format!(
                        "{net} is {}, which this tunnel does not carry (inner_families = {families})",
                        family_name(&net)
                    ),
                );
            } else if out.contains(&net) {
                self.error(key, format!("{net} is listed twice"));
            }
            out.push(net);
        }
        (self.diagnostics.len() == before).then_some(out)
    }

    /// `"main"` (the default) or a table id that is neither a kernel table nor the pin table.
    fn route_table_value(
        &mut self,
        key: &str,
        value: Option<&Value>,
        gateway: &Gateway,
    ) -> Option<u32> {
        match value {
            None => Some(MAIN_TABLE),
            Some(Value::String(s)) if s == "main" => Some(MAIN_TABLE),
            Some(Value::Integer(n)) => self.route_table(key, *n, gateway),
            Some(other) => {
                self.error(
                    key,
                    format!(
                        "expected \"main\" or a routing table id, found {}",
                        describe(other)
                    ),
                );
                None
            }
        }
    }

    fn route_table(&mut self, key: &str, id: i64, gateway: &Gateway) -> Option<u32> {
        if id == i64::from(MAIN_TABLE) {
            return Some(MAIN_TABLE);
        }
        let id = self.table_id(key, id)?;
        if id == gateway.pin_table {
            self.error(
                key,
                format!(
                    "{id} is gateway.pin_table, which holds only pinned endpoint routes; \
                     pick another table"
                ),
            );
            return None;
        }
        Some(id)
    }

    /// A routing table v6gate may fill: any id but the kernel's own tables.
    fn table_id(&mut self, key: &str, id: i64) -> Option<u32> {
        let id = self.int_in(key, id, 1, u32::MAX.into())? as u32;
        if let Some((_, name)) = RESERVED_TABLES.iter().find(|(t, _)| *t == id) {
            self.error(
                key,
                format!("{id} is the kernel's `{name}` table; pick a table id of v6gate's own"),
            );
            return None;
        }
        Some(id)
    }

    fn int_in(&mut self, key: &str, value: i64, lo: i64, hi: i64) -> Option<i64> {
        if (lo..=hi).contains(&value) {
            return Some(value);
        }
        self.error(
            key,
            format!("expected an integer {lo}..={hi}, found {value}"),
        );
        None
    }

    fn int_in_why(&mut self, key: &str, value: i64, lo: i64, hi: i64, why: &str) -> Option<i64> {
        if (lo..=hi).contains(&value) {
            return Some(value);
        }
        self.error(
            key,
            format!("expected an integer {lo}..={hi} ({why}), found {value}"),
        );
        None
    }

    /// Probe timers and counts under `prefix` (`tunnel[0].health`, `watch[1]`).
    fn health(&mut self, prefix: &str, file: FileHealth, defaults: Health) -> Option<Health> {
        let before = self.diagnostics.len();
        let key = |field: &str| format!("{prefix}.{field}");
        let interval = file.interval.as_ref().map_or(Some(defaults.interval), |v| {
            self.duration(&key("interval"), v, MIN_PROBE_TIME, MAX_TIMER)
        });
        let timeout = file.timeout.as_ref().map_or(Some(defaults.timeout), |v| {
            self.duration(&key("timeout"), v, MIN_PROBE_TIME, MAX_TIMER)
        });
        let hold_down = file
            .hold_down
            .as_ref()
            .map_or(Some(defaults.hold_down), |v| {
                self.duration(&key("hold_down"), v, Duration::ZERO, MAX_TIMER)
            });
        let mut count = |field: &str, value: Option<Int>, default: u32| match value {
            None => Some(default),
            Some(Int(n)) => self
                .int_in(&key(field), n, 1, MAX_PROBE_COUNT)
                .map(|n| n as u32),
        };
        let down_after = count("down_after", file.down_after, defaults.down_after);
        let up_after = count("up_after", file.up_after, defaults.up_after);
        if self.diagnostics.len() != before {
            return None;
        }
        Some(Health {
            interval: interval?,
            timeout: timeout?,
            down_after: down_after?,
            up_after: up_after?,
            hold_down: hold_down?,
        })
    }

    fn duration(
        &mut self,
        key: &str,
        value: &Value,
        lo: Duration,
        hi: Duration,
    ) -> Option<Duration> {
        let range = format!("{}..={}", format_duration(lo), format_duration(hi));
        let Value::String(text) = value else {
            self.error(
                key,
                format!(
                    "expected a duration string like \"100ms\", \"1.5s\" or \"2m\" ({range}), found {}",
                    describe(value)
                ),
            );
            return None;
        };
        match parse_duration(text) {
            Ok(d) if (lo..=hi).contains(&d) => Some(d),
            Ok(_) => {
                self.error(key, format!("expected a duration {range}, found {text:?}"));
                None
            }
            Err(why) => {
                self.error(
                    key,
                    format!(
                        "expected a duration like \"100ms\", \"1.5s\" or \"2m\", found {text:?}: {why}"
                    ),
                );
                None
            }
        }
    }

    /// Converts one `[[watch]]`; `None` when anything in it is wrong.
    fn watch(&mut self, i: usize, mut file: FileWatch, gateway: &Gateway) -> Option<Watch> {
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

    fn watch_route(
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
    fn hook(&mut self, key: &str, argv: &[String]) -> Option<Hook> {
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

    /// An IP address of either family. Host names are named as such: they are common in
    /// dynamic-DNS set-ups and deserve a better answer than "not an address".
    fn ip(&mut self, key: &str, text: &str) -> Option<IpAddr> {
        match text.parse::<IpAddr>() {
            Ok(addr) => Some(addr),
            Err(_) if looks_like_host_name(text) => {
                self.error(
                    key,
                    format!(
                        "{text:?} is a host name; names are not resolved yet, write the address"
                    ),
                );
                None
            }
            Err(_) => {
                self.error(
                    key,
                    format!("expected an IPv4 or IPv6 address, found {text:?}"),
                );
                None
            }
        }
    }

    /// `addr` if it can be the unicast peer of a packet; link-local only where something gives
    /// it a scope.
    fn unicast(&mut self, key: &str, addr: IpAddr, scope: Scope) -> Option<IpAddr> {
        let problem = match addr {
            IpAddr::V4(v4) if v4.is_unspecified() => Some("the unspecified address"),
            IpAddr::V4(v4) if v4.is_loopback() => Some("a loopback address"),
            IpAddr::V4(v4) if v4.is_multicast() => Some("a multicast address"),
            IpAddr::V4(v4) if v4.is_broadcast() => Some("the broadcast address"),
            IpAddr::V4(_) => None,
            IpAddr::V6(v6) if v6.is_unspecified() => Some("the unspecified address"),
            IpAddr::V6(v6) if v6.is_loopback() => Some("the loopback address"),
            IpAddr::V6(v6) if v6.is_multicast() => Some("a multicast address"),
            IpAddr::V6(v6) if v6.is_unicast_link_local() && scope == Scope::None => {
                Some("link-local, which needs an interface scope that tunnels do not have")
            }
            IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() => {
                Some("IPv4-mapped, which never appears on the wire")
            }
            IpAddr::V6(_) => None,
        };
        match problem {
            Some(problem) => {
                self.error(
                    key,
                    format!("{addr} is {problem}; expected a unicast address"),
                );
                None
            }
            None => Some(addr),
        }
    }

    /// Problems between watches, and between watch routes and tunnel routes.
    fn across_watches(
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
        // fails or, for IPv6, turns both into one multipath route.
        let same_slot = |r: &WatchRoute, dst: &IpNet, table: u32, metric: u32| {
            r.dst == *dst && r.table == table && r.metric == metric
        };
        for (n, (i, w)) in watches.iter().enumerate() {
            let r = &w.route;
            let clash = format!("{} in table {} at metric {}", r.dst, r.table, r.metric);
            for (j, other) in &watches[..n] {
                if same_slot(&other.route, &r.dst, r.table, r.metric) {
                    self.error(
                        format!("watch[{i}].route.dst"),
                        format!(
                            "watch[{j}] ({:?}) already installs {clash}; give one a different metric",
                            other.name
                        ),
                    );
                }
            }
            for (j, t) in tunnels.iter().filter(|(_, t)| t.enabled) {
                for (device, route) in tunnel_routes(gateway, t) {
                    if same_slot(r, &route.dst, route.table, route.metric) {
                        self.error(
                            format!("watch[{i}].route.dst"),
                            format!(
                                "tunnel[{j}] ({:?}) already installs {clash} (on {device}); \
                                 give the watch route a different metric",
                                t.name
                            ),
                        );
                    }
                }
            }
        }
    }

    /// Problems that involve more than one tunnel. Only tunnels that are valid on their own get
    /// here; route and endpoint clashes only matter between tunnels that are up.
    fn across_tunnels(&mut self, tunnels: &[(usize, Tunnel)]) {
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
                        if pa.ends() != pb.ends() {
                            continue;
                        }
                        let owner = self.path_key(*j, jb);
                        let (local, remote) = pa.ends();
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
    fn path_devices_unique(&mut self, tunnels: &[(usize, Tunnel)]) {
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
fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    let contains = a.contains(&b.network()) || b.contains(&a.network());
    let one_is_default = (a.prefix_len() == 0) != (b.prefix_len() == 0);
    contains && !one_is_default
}

/// Families an ipsec tunnel carries: those of its traffic selectors that parse (the ones that
/// do not are reported where they are checked).
fn selector_families(file: &FileTunnel) -> InnerFamilies {
    let nets = file
        .local_subnets
        .iter()
        .chain(&file.routes)
        .flatten()
        .filter_map(|text| parse_net(text));
    nets.fold(
        InnerFamilies {
            ipv4: false,
            ipv6: false,
        },
        |f, net| InnerFamilies {
            ipv4: f.ipv4 || net.addr().is_ipv4(),
            ipv6: f.ipv6 || net.addr().is_ipv6(),
        },
    )
}

fn parse_net(text: &str) -> Option<IpNet> {
    text.parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
}

fn family_name(net: &IpNet) -> &'static str {
    match net {
        IpNet::V4(_) => "IPv4",
        IpNet::V6(_) => "IPv6",
    }
}

fn carried_families(mode: Mode) -> &'static str {
    match mode {
        Mode::Ipip6 => "IPv4",
        Mode::Ip6ip6 => "IPv6",
        Mode::Any | Mode::Ipsec => "IPv4 and IPv6",
    }
}

/// Whether a link-local address has something to scope it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// Tunnel endpoints: outer packets leave by route lookup, not through a named device.
    None,
    /// Probes and gateways bound to a device.
    Device,
}

fn ip_family_name(addr: IpAddr) -> &'static str {
    match addr {
        IpAddr::V4(_) => "IPv4",
        IpAddr::V6(_) => "IPv6",
    }
}

/// Letters, digits, dots and hyphens with at least one letter: what a DNS name looks like, and
/// what no address looks like.
fn looks_like_host_name(text: &str) -> bool {
    !text.is_empty()
        && text.bytes().any(|b| b.is_ascii_alphabetic())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')
}

/// A TOML value as a person wrote it, for "found ..." in messages.
fn describe(value: &Value) -> String {
    match value {
        Value::String(s) => format!("{s:?}"),
        Value::Integer(n) => n.to_string(),
        Value::Float(x) => format!("{x:?}"),
        Value::Boolean(b) => b.to_string(),
        Value::Datetime(d) => d.to_string(),
        Value::Array(_) => "an array".to_owned(),
        Value::Table(_) => "a table".to_owned(),
    }
}

/// Shortest DPD delay and timeout: below a second a busy peer looks dead.
const MIN_DPD: Duration = Duration::from_secs(1);
/// Shortest SA lifetime: the IKE core rekeys up to 10 minutes before the end (9 minutes margin
/// plus up to a minute of jitter), so a lifetime must leave time before that.
const MIN_LIFETIME: Duration = Duration::from_secs(15 * 60);
/// Longest SA lifetime: a day, as strongSwan and the routers of S3/S4 allow.
const MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);

impl Checker {
    /// The ipsec side of tunnel `i`: `[tunnel.ike]`, which belongs to `mode = "ipsec"` and only
    /// to it, and the keys that mode excludes. `Some(None)` for a valid non-ipsec tunnel.
    fn ipsec(
        &mut self,
        i: usize,
        file: &FileTunnel,
        ike: Option<FileIke>,
        mode: Option<Mode>,
    ) -> Option<Option<IpsecConfig>> {
        let key = |field: &str| format!("tunnel[{i}].{field}");
        match (mode, ike) {
            (None, _) => None,
            (Some(Mode::Ipsec), None) => {
                self.error(
                    key("ike"),
                    "mode = \"ipsec\" needs a [tunnel.ike] table with at least psk_file",
                );
                None
            }
            (Some(mode), Some(_)) if mode != Mode::Ipsec => {
                self.error(
                    key("ike"),
                    format!("[tunnel.ike] belongs to mode = \"ipsec\", not \"{mode}\""),
                );
                None
            }
            (Some(_), None) => Some(None),
            (Some(_), Some(ike)) => {
                let before = self.diagnostics.len();
                self.ipsec_shape(i, file);
                let config = self.ike(&key("ike"), ike);
                (self.diagnostics.len() == before)
                    .then_some(config)
                    .flatten()
                    .map(Some)
            }
        }
    }

    /// Keys of the tunnel that an ipsec tunnel cannot have, and the ones it must.
    fn ipsec_shape(&mut self, i: usize, file: &FileTunnel) {
        let key = |field: &str| format!("tunnel[{i}].{field}");
        if file.device_per_path == Some(true) {
            self.error(
                key("device_per_path"),
                "an ipsec tunnel runs one device whatever its paths: each path has its own IKE \
                 SA and the tunnel picks the path, so there is nothing for a routing daemon to \
                 choose between",
            );
        }
        for (j, path) in file.path.iter().flatten().enumerate() {
            if path.probe.as_deref() == Some("icmp") {
                self.error(
                    format!("tunnel[{i}].path[{j}].probe"),
                    "an ipsec path is probed with keepalives inside its own ESP SA (\"keepalive\", \
                     the default) or not at all (\"none\"); an ICMP echo would leave on the \
                     active path's SA, not this one's",
                );
            }
            let remote = path.remote.trim();
            if let Some(k) = file
                .path
                .iter()
                .flatten()
                .take(j)
                .position(|q| q.remote.trim() == remote)
            {
                self.error(
                    format!("tunnel[{i}].path[{j}].remote"),
                    format!(
                        "path[{k}] already has remote {remote}; each path of an ipsec tunnel runs \
                         its own IKE SA, and IKE and ESP are told apart by the peer's address"
                    ),
                );
            }
        }
        for (field, set, why) in [
            (
                "encap_limit",
                file.encap_limit.is_some(),
                "is an RFC 2473 option; ESP has no such header",
            ),
            (
                "tclass",
                file.tclass.is_some(),
                "is not configurable for ESP: the outer header keeps the inner DSCP, as RFC 4301 \
                 §5.1.2 has it",
            ),
        ] {
            if set {
                self.error(key(field), why);
            }
        }
        for (field, list) in [
            ("local_subnets", &file.local_subnets),
            ("routes", &file.routes),
        ] {
            if list.as_ref().is_none_or(Vec::is_empty) {
                self.error(
                    key(field),
                    format!(
                        "an ipsec tunnel needs `{field}`: {}",
                        if field == "routes" {
                            "the peer's subnets, its traffic selectors"
                        } else {
                            "our subnets, the local traffic selectors"
                        }
                    ),
                );
            }
        }
    }

    /// `[tunnel.ike]` at key `prefix`.
    fn ike(&mut self, prefix: &str, file: FileIke) -> Option<IpsecConfig> {
        let before = self.diagnostics.len();
        let key = |field: &str| format!("{prefix}.{field}");
        let psk = match (&file.psk_file, &file.psk) {
            (Some(_), Some(_)) => {
                self.error(
                    key("psk"),
                    "give the key either in psk_file or in psk, not both",
                );
                None
            }
            (None, None) => {
                self.error(
                    key("psk_file"),
                    "missing field `psk_file`: the file holding the pre-shared key (mode 0600)",
                );
                None
            }
            (Some(path), None) => self.psk_file(&key("psk_file"), path),
            (None, Some(text)) if text.is_empty() => {
                self.error(key("psk"), "is empty");
                None
            }
            (None, Some(text)) => {
                self.warn(
                    key("psk"),
                    "the pre-shared key is written in the config, which gets copied, shared and \
                     backed up; put it in a file of mode 0600 and name it in psk_file",
                );
                Some(Psk::Inline(text.clone()))
            }
        };
        let mut identity = |field: &str, value: &Option<String>| match value {
            None => Some(None),
            Some(text) => match ike::Identity::parse(text) {
                Ok(id) => Some(Some(id)),
                Err(e) => {
                    self.error(key(field), e.to_string());
                    None
                }
            },
        };
        let local_id = identity("local_id", &file.local_id);
        let remote_id = identity("remote_id", &file.remote_id);

        let proposals = self.proposals(
            &key("proposals"),
            file.proposals.as_deref(),
            ike::proposal::IkeProposal::parse,
            ike::proposal::IkeProposal::default_modern,
            |p| p.legacy,
            |_| None,
        );
        let esp_proposals = self.proposals(
            &key("esp_proposals"),
            file.esp_proposals.as_deref(),
            ike::proposal::EspProposal::parse,
            ike::proposal::EspProposal::default_modern,
            |p| p.legacy,
            esp_unsupported,
        );

        let word = |this: &mut Self, field: &str, value: &Option<String>, words: &[&str]| {
            let text = value.as_deref()?;
            let found = words.iter().position(|w| *w == text);
            if found.is_none() {
                let list: Vec<String> = words.iter().map(|w| format!("{w:?}")).collect();
                this.error(
                    key(field),
                    format!("expected one of {}, found {text:?}", list.join(", ")),
                );
            }
            Some(found)
        };
        let start = match word(self, "start", &file.start, &["auto", "respond"]) {
            None => Some(IkeStart::Auto),
            Some(found) => found.map(|n| [IkeStart::Auto, IkeStart::Respond][n]),
        };
        let encap = match word(self, "encap", &file.encap, &["auto", "udp"]) {
            None => Some(Encap::Auto),
            Some(found) => found.map(|n| [Encap::Auto, Encap::Udp][n]),
        };
        let dpd_action = match word(self, "dpd_action", &file.dpd_action, &["restart", "clear"]) {
            None => Some(ike::DpdAction::Restart),
            Some(found) => found.map(|n| [ike::DpdAction::Restart, ike::DpdAction::Clear][n]),
        };

        // The IKE core's own defaults, which are strongSwan's.
        let defaults = ike::Config::new(b"", Vec::new(), Vec::new());
        let default_dpd = defaults.dpd.expect("the IKE core enables DPD by default");
        let mut duration = |field: &str, value: &Option<Value>, lo, hi, default| match value {
            None => Some(default),
            Some(v) => self.duration(&key(field), v, lo, hi),
        };
        let dpd_delay = duration(
            "dpd_delay",
            &file.dpd_delay,
            MIN_DPD,
            MAX_TIMER,
            default_dpd.delay,
        );
        let dpd_timeout = duration(
            "dpd_timeout",
            &file.dpd_timeout,
            MIN_DPD,
            MAX_TIMER,
            default_dpd.timeout,
        );
        let ike_lifetime = duration(
            "ike_lifetime",
            &file.ike_lifetime,
            MIN_LIFETIME,
            MAX_LIFETIME,
            defaults.ike_lifetime,
        );
        let child_lifetime = duration(
            "child_lifetime",
            &file.child_lifetime,
            MIN_LIFETIME,
            MAX_LIFETIME,
            defaults.child_lifetime,
        );

        if self.diagnostics.len() != before {
            return None;
        }
        let (proposals, ike_legacy) = proposals?;
        let (esp_proposals, esp_legacy) = esp_proposals?;
        let mut config = IpsecConfig {
            psk: psk?,
            local_id: local_id?,
            remote_id: remote_id?,
            proposals,
            esp_proposals,
            legacy: ike_legacy || esp_legacy,
            start: start?,
            encap: encap?,
            dpd_delay: dpd_delay?,
            dpd_timeout: dpd_timeout?,
            dpd_action: dpd_action?,
            ike_lifetime: ike_lifetime?,
            child_lifetime: child_lifetime?,
            version: crate::IkeVersion::V2,
        };
        let given = (file.proposals.is_some(), file.esp_proposals.is_some());
        for f in crate::ike_version::apply(prefix, file.version, given.0, given.1, &mut config) {
            self.error(f.key, f.message);
        }
        (self.diagnostics.len() == before).then_some(config)
    }

    /// A list of proposals in strongSwan's syntax, each parsed by the IKE core; a legacy one is
    /// accepted with a warning. Returns the proposals and whether any is legacy.
    fn proposals<P, E: std::fmt::Display>(
        &mut self,
        key: &str,
        list: Option<&[String]>,
        parse: impl Fn(&str) -> Result<P, E>,
        default: impl Fn() -> P,
        legacy: impl Fn(&P) -> bool,
        unsupported: impl Fn(&P) -> Option<String>,
    ) -> Option<(Vec<P>, bool)> {
        let Some(list) = list else {
            return Some((vec![default()], false));
        };
        if list.is_empty() {
            self.error(
                key,
                "must list at least one proposal (or be left out for the default)",
            );
            return None;
        }
        let before = self.diagnostics.len();
        let mut out = Vec::with_capacity(list.len());
        let mut any_legacy = false;
        for (j, text) in list.iter().enumerate() {
            let key = format!("{key}[{j}]");
            match parse(text) {
                Ok(p) => {
                    if let Some(why) = unsupported(&p) {
                        self.error(&key, why);
                    } else if legacy(&p) {
                        any_legacy = true;
                        self.warn(
                            &key,
                            format!(
                                "{text:?} allows SHA-1 or MODP-1024, kept only for old peers; \
                                 prefer aes128gcm16 with prfsha256 and ecp256 or modp2048"
                            ),
                        );
                    }
                    out.push(p);
                }
                Err(e) => self.error(key, e.to_string()),
            }
        }
        (self.diagnostics.len() == before).then_some((out, any_legacy))
    }

    /// `psk_file`: must be a readable regular file; one that others can read is a warning.
    fn psk_file(&mut self, key: &str, text: &str) -> Option<Psk> {
        use std::os::unix::fs::PermissionsExt;

        let mut path = PathBuf::from(text);
        if path.is_relative()
            && let Some(dir) = &self.config_dir
        {
            path = dir.join(path);
        }
        match std::fs::metadata(&path) {
            Ok(meta) if !meta.is_file() => {
                self.error(key, format!("{} is not a regular file", path.display()));
                None
            }
            Ok(meta) => {
                let mode = meta.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    self.warn(
                        key,
                        format!(
                            "{} has mode {mode:04o}: others on this host can read the key; \
                             chmod 600 it",
                            path.display()
                        ),
                    );
                }
                Some(Psk::File(path))
            }
            Err(e) => {
                self.error(key, format!("cannot read {}: {e}", path.display()));
                None
            }
        }
    }
}

/// Why the ESP dataplane cannot run a proposal, if it cannot: it implements AES-GCM-16 and
/// AES-CBC with HMAC-SHA1-96 or HMAC-SHA2-256-128.
fn esp_unsupported(p: &ike::proposal::EspProposal) -> Option<String> {
    use ike::crypto::Integ;
    p.integ
        .iter()
        .find(|i| !matches!(i, Integ::HmacSha1_96 | Integ::HmacSha256_128))
        .map(|i| {
            format!(
                "{i:?} is not implemented for ESP; use sha256 or sha1 with a CBC cipher, or \
                 aes128gcm16"
            )
        })
}

impl crate::names::EndpointCheck for Checker {
    fn error(&mut self, key: &str, message: String) {
        Self::error(self, key, message);
    }

    fn endpoint(&mut self, key: &str, text: &str) -> Option<IpAddr> {
        Self::endpoint(self, key, text)
    }

    fn device_name(&mut self, key: &str, name: &str) -> bool {
        self.device(key, name)
    }
}

impl crate::ddns::validate::DdnsCheck for Checker {
    fn warn(&mut self, key: &str, message: String) {
        Self::warn(self, key, message);
    }

    fn entry_name(&mut self, key: &str, name: &str) -> bool {
        self.name(key, name)
    }

    fn config_dir(&self) -> Option<&std::path::Path> {
        self.config_dir.as_deref()
    }
}
