//! One `[[tunnel]]` on its own: names, mode, families, prefixes and addresses, and the
//! tunnel-wide values of its paths.

use ipnet::IpNet;
use toml::Value;

use crate::file::{FileTunnel, Int};
use crate::model::{
    DEFAULT_HOP_LIMIT, Dataplane, Gateway, Health, InnerFamilies, MAX_DEVICE_LEN, Mode, MssClamp,
    Path, TrafficClass, Tunnel, default_device,
};

use super::*;

/// What a tunnel's paths need to know about the tunnel.
pub(super) struct TunnelShape<'a> {
    pub(super) index: usize,
    pub(super) families: Option<InnerFamilies>,
    /// The tunnel's own `address`es, which every path device gets too.
    pub(super) addresses: Option<&'a [IpNet]>,
    pub(super) device: &'a str,
    /// Whether `device` is a valid name (derived names are only checked when it is).
    pub(super) device_ok: bool,
    pub(super) device_per_path: bool,
    pub(super) has_health: bool,
}

impl Checker {
    /// Converts one `[[tunnel]]`; `None` when anything in it is wrong (the problems are recorded).
    pub(super) fn tunnel(
        &mut self,
        i: usize,
        mut file: FileTunnel,
        gateway: &Gateway,
    ) -> Option<Tunnel> {
        let before = self.diagnostics.len();
        let key = |field: &str| format!("tunnel[{i}].{field}");

        let (device, device_ok) = self.tunnel_device(i, &file);

        let mode = self.mode(&key("mode"), &file.mode);
        let families = self.tunnel_families(i, &file, mode);

        let addresses = match (&file.address, families) {
            (None, _) => Some(Vec::new()),
            (Some(value), Some(families)) => self.addresses(&key("address"), value, families),
            (Some(_), None) => None,
        };

        let ipsec_file = file.ike.take();
        let ipsec = self.ipsec(i, &file, ipsec_file, mode);
        let local_subnets = self.local_subnets(i, &file, mode, families);

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
        let probed = file.probe.as_deref().is_some_and(|p| p != "none");
        let health = match file_health {
            Some(h) if !self.single_path.contains(&i) || probed => {
                self.health(&key("health"), h, Health::TUNNEL_DEFAULT)
            }
            // An unprobed single path; `single_path` has reported the table.
            Some(_) => None,
            None => Some(Health::TUNNEL_DEFAULT),
        };

        let encap_limit = self.encap_limit(i, &file, paths.as_deref());

        let mtu = self.tunnel_mtu(i, &file, families);

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

        let mss_clamp = self.mss_clamp(i, &file);
        let dataplane = self.dataplane(i, &file, mode);

        let tclass = self.tclass(i, &file);

        let hop_limit = match file.hop_limit {
            None => Some(DEFAULT_HOP_LIMIT),
            Some(Int(h)) => self.int_in(&key("hop_limit"), h, 1, 255).map(|h| h as u8),
        };

        let underlay_mtu = self.underlay_mtu(i, &file, paths.as_deref());
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
            dataplane: dataplane?,
            addresses: addresses?,
            tclass: tclass?,
            hop_limit: hop_limit?,
            route_table: route_table?,
            enabled: file.enabled.unwrap_or(true),
            local_subnets: local_subnets?,
            ipsec: ipsec?,
        })
    }

    /// The tunnel's device, given or derived from its name, and whether it is a valid name.
    fn tunnel_device(&mut self, i: usize, file: &FileTunnel) -> (String, bool) {
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
        (device, device_ok)
    }

    /// The inner families: listed, implied by the mode, or (ipsec) those of the selectors.
    fn tunnel_families(
        &mut self,
        i: usize,
        file: &FileTunnel,
        mode: Option<Mode>,
    ) -> Option<InnerFamilies> {
        let key = |field: &str| format!("tunnel[{i}].{field}");
        match (&file.inner_families, mode) {
            (Some(_), Some(Mode::Ipsec)) => {
                self.error(
                    key("inner_families"),
                    "an ipsec tunnel carries the families of its local_subnets and routes; \
                     leave inner_families out",
                );
                None
            }
            (None, Some(Mode::Ipsec)) => Some(selector_families(file)),
            (Some(list), Some(mode)) => self.families(&key("inner_families"), list, mode),
            (None, Some(mode)) => Some(mode.families()),
            (_, None) => None,
        }
    }

    /// `local_subnets`, the local traffic selectors, which only ipsec tunnels have.
    fn local_subnets(
        &mut self,
        i: usize,
        file: &FileTunnel,
        mode: Option<Mode>,
        families: Option<InnerFamilies>,
    ) -> Option<Vec<IpNet>> {
        let key = |field: &str| format!("tunnel[{i}].{field}");
        match (&file.local_subnets, mode, families) {
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
        }
    }

    /// `encap_limit`: "none" or a limit, and only where some path runs over IPv6.
    fn encap_limit(
        &mut self,
        i: usize,
        file: &FileTunnel,
        paths: Option<&[Path]>,
    ) -> Option<Option<u8>> {
        let key = |field: &str| format!("tunnel[{i}].{field}");
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
        if let (Some(Some(_)), Some(paths)) = (encap_limit, paths)
            && !paths.iter().any(Path::is_ipv6)
        {
            self.error(
                key("encap_limit"),
                "is an IPv6 option, and every path of this tunnel runs over IPv4",
            );
        }
        encap_limit
    }

    /// `mtu`, at least IPv6's 1280 when the tunnel carries IPv6.
    fn tunnel_mtu(
        &mut self,
        i: usize,
        file: &FileTunnel,
        families: Option<InnerFamilies>,
    ) -> Option<Option<u16>> {
        let key = |field: &str| format!("tunnel[{i}].{field}");
        match (file.mtu, families) {
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
        }
    }

    /// `dataplane`: one of [`Dataplane::WORDS`]; the kernel path moves IP-in-IP only, so
    /// `kernel` is refused for ipsec tunnels (`auto` means the TUN dataplane there).
    fn dataplane(&mut self, i: usize, file: &FileTunnel, mode: Option<Mode>) -> Option<Dataplane> {
        let key = format!("tunnel[{i}].dataplane");
        let dataplane = match &file.dataplane {
            None => Some(Dataplane::Auto),
            Some(Value::String(s)) => match Dataplane::parse(s) {
                Some(d) => Some(d),
                None => {
                    self.error(
                        key.clone(),
                        format!("expected one of \"auto\", \"kernel\", \"userspace\", found {s:?}"),
                    );
                    None
                }
            },
            Some(other) => {
                self.error(
                    key.clone(),
                    format!(
                        "expected \"auto\", \"kernel\" or \"userspace\", found {}",
                        describe(other)
                    ),
                );
                None
            }
        };
        if dataplane == Some(Dataplane::Kernel) && mode == Some(Mode::Ipsec) {
            self.error(
                key,
                "the kernel path carries IP-in-IP (RFC 2473/2003); an ipsec tunnel uses \
                 \"auto\" or \"userspace\"",
            );
            return None;
        }
        dataplane
    }

    fn mss_clamp(&mut self, i: usize, file: &FileTunnel) -> Option<MssClamp> {
        let key = |field: &str| format!("tunnel[{i}].{field}");
        match &file.mss_clamp {
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
        }
    }

    fn tclass(&mut self, i: usize, file: &FileTunnel) -> Option<TrafficClass> {
        let key = |field: &str| format!("tunnel[{i}].{field}");
        match &file.tclass {
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
        }
    }

    /// The tunnel's `underlay_mtu` is the default of every path that sets none, so it must
    /// suit each path's family.
    fn underlay_mtu(
        &mut self,
        i: usize,
        file: &FileTunnel,
        paths: Option<&[Path]>,
    ) -> Option<Option<u16>> {
        let key = |field: &str| format!("tunnel[{i}].{field}");
        match (file.underlay_mtu, paths) {
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
        }
    }

    pub(super) fn name(&mut self, key: &str, name: &str) -> bool {
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

    pub(super) fn device(&mut self, key: &str, device: &str) -> bool {
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

    pub(super) fn mode(&mut self, key: &str, mode: &str) -> Option<Mode> {
        let found = Mode::ALL.into_iter().find(|m| m.as_str() == mode);
        if found.is_none() {
            let words = Mode::ALL
                .map(Mode::as_str)
                .into_iter()
                .chain(["map-e", "ds-lite"]);
            let near = crate::suggest::closest(mode, words)
                .map_or_else(String::new, |m| format!("; did you mean \"{m}\"?"));
            self.error(
                key,
                format!(
                    "expected one of \"ipip6\", \"ip6ip6\", \"any\", \"ipsec\", \"map-e\", \"ds-lite\", \
                     found {mode:?}{near}"
                ),
            );
        }
        found
    }

    pub(super) fn families(
        &mut self,
        key: &str,
        list: &[String],
        mode: Mode,
    ) -> Option<InnerFamilies> {
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
    pub(super) fn prefixes(
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

    pub(super) fn addresses(
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
}

/// Families an ipsec tunnel carries: those of its traffic selectors that parse (the ones that
/// do not are reported where they are checked).
pub(super) fn selector_families(file: &FileTunnel) -> InnerFamilies {
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

pub(super) fn carried_families(mode: Mode) -> &'static str {
    match mode {
        Mode::Ipip6 => "IPv4",
        Mode::Ip6ip6 => "IPv6",
        Mode::Any | Mode::Ipsec => "IPv4 and IPv6",
    }
}
