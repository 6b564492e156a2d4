//! Validation of `mode = "map-e"` and `mode = "ds-lite"` tunnels, and of the keys only they
//! take. Problems are pushed as diagnostics with their key paths, like the rest of `validate`.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use toml::Value;

use super::{Aftr, DsLite, MapE, MapRule, Softwire, SoftwireKind};
use crate::error::Diagnostic;
use crate::file::FileTunnel;
use crate::mape::{self, Layout, MAX_EA_BITS, Rule, RuleField};
use crate::model::{Dataplane, MAIN_TABLE, MAX_DEVICE_LEN, MssClamp, Tunnel, default_device};

const MAP_E: &str = "map-e";
const DS_LITE: &str = "ds-lite";
/// Longest DNS name (RFC 1035 §2.3.4).
const MAX_HOST_NAME: usize = 253;

pub(crate) fn is_softwire_mode(mode: &str) -> bool {
    mode == MAP_E || mode == DS_LITE
}

struct Errors<'a> {
    i: usize,
    out: &'a mut Vec<Diagnostic>,
}

impl Errors<'_> {
    fn at(&mut self, field: &str, message: impl Into<String>) {
        self.out.push(Diagnostic::new(
            format!("tunnel[{}].{field}", self.i),
            message,
        ));
    }
}

/// Keys of `[[tunnel]]` a softwire of `mode` does not take, with why.
fn unused_keys(file: &FileTunnel, mode: &str) -> Vec<(&'static str, &'static str)> {
    let why_endpoint = "the tunnel's ends come from the ISP (MAP address and BR, or WAN address \
                        and AFTR)";
    let why_inner = "a softwire carries IPv4 to and from anywhere";
    let set = [
        ("local", mode == MAP_E && file.local.is_some(), why_endpoint),
        ("remote", file.remote.is_some(), why_endpoint),
        ("path", file.path.is_some(), why_endpoint),
        (
            "device_per_path",
            file.device_per_path.is_some(),
            why_endpoint,
        ),
        ("health", file.health.is_some(), why_endpoint),
        ("routes", file.routes.is_some(), "use default_route"),
        ("allowed_sources", file.allowed_sources.is_some(), why_inner),
        ("inner_families", file.inner_families.is_some(), why_inner),
        (
            "address",
            file.address.is_some(),
            "the tunnel's IPv4 address comes from the ISP",
        ),
        (
            "local_subnets",
            file.local_subnets.is_some(),
            "it belongs to mode = \"ipsec\"",
        ),
        ("ike", file.ike.is_some(), "it belongs to mode = \"ipsec\""),
        (
            "encap_limit",
            file.encap_limit.is_some(),
            "the ISP's relays expect none",
        ),
        (
            "tclass",
            file.tclass.is_some(),
            "not configurable for softwires yet",
        ),
        (
            "hop_limit",
            file.hop_limit.is_some(),
            "not configurable for softwires yet",
        ),
        (
            "mtu",
            file.mtu.is_some(),
            "derived from the underlay (1460 on 1500)",
        ),
        (
            "underlay_mtu",
            file.underlay_mtu.is_some(),
            "read from the host",
        ),
        (
            "route_table",
            file.route_table.is_some(),
            "the default route goes to main",
        ),
        (
            "device_prefix",
            mode == DS_LITE && file.device_prefix.is_some(),
            "it belongs to mode = \"map-e\"",
        ),
        (
            "rule",
            mode == DS_LITE && file.rule.is_some(),
            "it belongs to mode = \"map-e\"",
        ),
        (
            "aftr",
            mode == MAP_E && file.aftr.is_some(),
            "it belongs to mode = \"ds-lite\"",
        ),
    ];
    set.into_iter()
        .filter(|(_, present, _)| *present)
        .map(|(key, _, why)| (key, why))
        .collect()
}

/// Errors for the softwire-only keys on a tunnel of another mode, which would otherwise be
/// silently ignored.
pub(crate) fn foreign_keys(i: usize, file: &FileTunnel, out: &mut Vec<Diagnostic>) {
    let mut errors = Errors { i, out };
    for (key, present, mode) in [
        ("device_prefix", file.device_prefix.is_some(), MAP_E),
        ("rule", file.rule.is_some(), MAP_E),
        ("aftr", file.aftr.is_some(), DS_LITE),
        (
            "default_route",
            file.default_route.is_some(),
            "map-e\" or \"ds-lite",
        ),
    ] {
        if present {
            errors.at(
                key,
                format!(
                    "belongs to mode = \"{mode}\", not \"{}\"; route 0.0.0.0/0 with `routes`",
                    file.mode
                ),
            );
        }
    }
}

/// Converts one softwire `[[tunnel]]` (`is_softwire_mode(&file.mode)`); `None` when anything
/// in it is wrong. `names_ok` says whether `name` and `device` passed the common checks.
pub(crate) fn check(
    i: usize,
    file: FileTunnel,
    names_ok: bool,
    out: &mut Vec<Diagnostic>,
) -> Option<Softwire> {
    let before = out.len();
    let mut errors = Errors { i, out };
    let mode = file.mode.as_str();
    for (key, why) in unused_keys(&file, mode) {
        errors.at(key, format!("is not used by mode = \"{mode}\": {why}"));
    }
    let device = file
        .device
        .clone()
        .unwrap_or_else(|| default_device(&file.name));
    if names_ok && file.device.is_none() && device.len() > MAX_DEVICE_LEN {
        errors.at(
            "name",
            format!(
                "the device name derived from it, {device:?}, is {} bytes, longer than \
                 {MAX_DEVICE_LEN}; use a shorter name or set `device`",
                device.len()
            ),
        );
    }
    let mss_clamp = mss_clamp(&mut errors, file.mss_clamp.as_ref());
    let dataplane = dataplane(&mut errors, file.dataplane.as_ref());
    let kind = if mode == MAP_E {
        map_e(&mut errors, &file).map(SoftwireKind::MapE)
    } else {
        ds_lite(&mut errors, &file).map(SoftwireKind::DsLite)
    };
    if out.len() != before || !names_ok {
        return None;
    }
    Some(Softwire {
        name: file.name,
        device,
        kind: kind?,
        default_route: file.default_route.unwrap_or(false),
        mss_clamp: mss_clamp?,
        dataplane: dataplane?,
        enabled: file.enabled.unwrap_or(true),
    })
}

fn mss_clamp(errors: &mut Errors<'_>, value: Option<&Value>) -> Option<MssClamp> {
    // The same spellings as on the other modes; the range is the tunnel MTU's.
    match value {
        None => Some(MssClamp::Auto),
        Some(Value::String(s)) if s == "auto" => Some(MssClamp::Auto),
        Some(Value::String(s)) if s == "off" => Some(MssClamp::Off),
        Some(Value::Integer(n)) if (88..=1460).contains(n) => Some(MssClamp::Fixed(*n as u16)),
        Some(other) => {
            errors.at(
                "mss_clamp",
                format!(
                    "expected \"auto\", \"off\" or an integer 88..=1460, found {}",
                    describe(other)
                ),
            );
            None
        }
    }
}

/// `dataplane`, spelt and meant as on the other modes.
fn dataplane(errors: &mut Errors<'_>, value: Option<&Value>) -> Option<Dataplane> {
    let dataplane = match value {
        None => Dataplane::Auto,
        Some(Value::String(s)) if Dataplane::parse(s).is_some() => Dataplane::parse(s)?,
        Some(other) => {
            errors.at(
                "dataplane",
                format!(
                    "expected \"auto\", \"kernel\" or \"userspace\", found {}",
                    describe(other)
                ),
            );
            return None;
        }
    };
    Some(dataplane)
}

fn map_e(errors: &mut Errors<'_>, file: &FileTunnel) -> Option<MapE> {
    let device_prefix = match &file.device_prefix {
        None => {
            errors.at(
                "device_prefix",
                "mode = \"map-e\" needs the device whose delegated prefix the rule maps",
            );
            None
        }
        Some(dev) if !is_interface_name(dev) => {
            errors.at(
                "device_prefix",
                format!(
                    "expected an interface name of 1 to {MAX_DEVICE_LEN} bytes from \
                     A-Z a-z 0-9 _ . -, found {dev:?}"
                ),
            );
            None
        }
        Some(dev) => Some(dev.clone()),
    };
    let rule = match &file.rule {
        None => {
            errors.at(
                "rule",
                format!(
                    "mode = \"map-e\" needs a rule: a built-in set ({}) or a table with \
                     ipv6_prefix, ipv4_prefix, ea_bits, br",
                    known_sets()
                ),
            );
            None
        }
        Some(Value::String(name)) => match mape::builtin(name) {
            Some(set) => Some(MapRule::Builtin(set)),
            None => {
                errors.at(
                    "rule",
                    format!("no built-in rule set {name:?}; known: {}", known_sets()),
                );
                None
            }
        },
        Some(Value::Table(table)) => explicit_rule(errors, table).map(MapRule::Explicit),
        Some(other) => {
            errors.at(
                "rule",
                format!(
                    "expected a rule set name or a table, found {}",
                    describe(other)
                ),
            );
            None
        }
    };
    Some(MapE {
        device_prefix: device_prefix?,
        rule: rule?,
    })
}

fn known_sets() -> String {
    mape::builtin_names()
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn explicit_rule(errors: &mut Errors<'_>, table: &toml::Table) -> Option<Rule> {
    const KEYS: [&str; 6] = [
        "ipv6_prefix",
        "ipv4_prefix",
        "ea_bits",
        "psid_offset",
        "br",
        "layout",
    ];
    for key in table.keys().filter(|k| !KEYS.contains(&k.as_str())) {
        errors.at(
            &format!("rule.{key}"),
            format!("unknown field `{key}`, expected one of {}", KEYS.join(", ")),
        );
    }
    // Unknown keys do not stop the check of the known ones.
    let before = errors.out.len();
    let string = |errors: &mut Errors<'_>, key: &str| match table.get(key) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            errors.at(
                &format!("rule.{key}"),
                format!("expected a string, found {}", describe(other)),
            );
            None
        }
        None => None,
    };
    let required = |errors: &mut Errors<'_>, key: &str, text: Option<String>| {
        if text.is_none() && !table.contains_key(key) {
            errors.at(&format!("rule.{key}"), format!("missing field `{key}`"));
        }
        text
    };
    let v6_text = string(errors, "ipv6_prefix");
    let v6 = required(errors, "ipv6_prefix", v6_text).and_then(|t| match t.parse::<Ipv6Net>() {
        Ok(net) => Some(net),
        Err(_) => {
            errors.at(
                "rule.ipv6_prefix",
                format!("expected an IPv6 prefix like \"2001:db8::/38\", found {t:?}"),
            );
            None
        }
    });
    let v4_text = string(errors, "ipv4_prefix");
    let v4 = required(errors, "ipv4_prefix", v4_text).and_then(|t| match t.parse::<Ipv4Net>() {
        Ok(net) => Some(net),
        Err(_) => {
            errors.at(
                "rule.ipv4_prefix",
                format!("expected an IPv4 prefix like \"198.18.8.0/22\", found {t:?}"),
            );
            None
        }
    });
    let br_text = string(errors, "br");
    let br = required(errors, "br", br_text).and_then(|t| match t.parse::<Ipv6Addr>() {
        Ok(addr) => Some(addr),
        Err(_) => {
            errors.at(
                "rule.br",
                format!("expected the BR's IPv6 address, found {t:?}"),
            );
            None
        }
    });
    let layout = match string(errors, "layout") {
        None => Some(Layout::default()),
        Some(text) => Layout::parse(&text).or_else(|| {
            errors.at(
                "rule.layout",
                format!("expected \"rfc7597\" or \"draft03\", found {text:?}"),
            );
            None
        }),
    };
    let int = |errors: &mut Errors<'_>, key: &str, max: u8| match table.get(key) {
        Some(Value::Integer(n)) if (0..=i64::from(max)).contains(n) => Some(Some(*n as u8)),
        Some(other) => {
            errors.at(
                &format!("rule.{key}"),
                format!("expected an integer 0..={max}, found {}", describe(other)),
            );
            None
        }
        None => Some(None),
    };
    let ea_bits = int(errors, "ea_bits", MAX_EA_BITS);
    if matches!(ea_bits, Some(None)) {
        errors.at("rule.ea_bits", "missing field `ea_bits`");
    }
    let psid_offset = int(errors, "psid_offset", mape::MAX_PSID_OFFSET);
    if errors.out.len() != before {
        return None;
    }
    let offset = psid_offset?.unwrap_or(mape::DEFAULT_PSID_OFFSET);
    match Rule::new(v6?, v4?, ea_bits??, offset, br?, layout?) {
        Ok(rule) => Some(rule),
        Err(e) => {
            let field = match e.field() {
                RuleField::PsidOffset if table.get("psid_offset").is_none() => "ea_bits",
                f => f.key(),
            };
            errors.at(&format!("rule.{field}"), e.to_string());
            None
        }
    }
}

fn ds_lite(errors: &mut Errors<'_>, file: &FileTunnel) -> Option<DsLite> {
    let aftr = match file.aftr.as_deref().map(str::trim) {
        None => {
            errors.at(
                "aftr",
                "mode = \"ds-lite\" needs the AFTR: an IPv6 address or a host name \
                 (transix: \"gw.transix.jp\")",
            );
            None
        }
        Some(text) => match text.parse::<IpAddr>() {
            Ok(IpAddr::V6(addr)) => unicast(errors, "aftr", addr).map(Aftr::Address),
            Ok(IpAddr::V4(addr)) => {
                errors.at(
                    "aftr",
                    format!("{addr} is IPv4; a B4 reaches its AFTR over IPv6"),
                );
                None
            }
            Err(_) if is_host_name(text) => Some(Aftr::Name(text.to_ascii_lowercase())),
            Err(_) => {
                errors.at(
                    "aftr",
                    format!("expected an IPv6 address or a host name, found {text:?}"),
                );
                None
            }
        },
    };
    let local = match file.local.as_deref() {
        None => Some(None),
        Some(text) => match text.parse::<Ipv6Addr>() {
            Ok(addr) => unicast(errors, "local", addr).map(Some),
            Err(_) => {
                errors.at(
                    "local",
                    format!("expected this host's global IPv6 address, found {text:?}"),
                );
                None
            }
        },
    };
    if let (Some(Aftr::Address(aftr)), Some(Some(local))) = (&aftr, local)
        && *aftr == local
    {
        errors.at("aftr", format!("is the same address as `local` ({local})"));
        return None;
    }
    Some(DsLite {
        aftr: aftr?,
        local: local?,
    })
}

/// A global or unique-local unicast address: outer packets leave by route lookup, which gives
/// a link-local address no scope.
fn unicast(errors: &mut Errors<'_>, key: &str, addr: Ipv6Addr) -> Option<Ipv6Addr> {
    if addr.is_unspecified()
        || addr.is_loopback()
        || addr.is_multicast()
        || addr.is_unicast_link_local()
        || addr.to_ipv4_mapped().is_some()
    {
        errors.at(key, format!("{addr} is not a global unicast address"));
        return None;
    }
    Some(addr)
}

fn is_interface_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_DEVICE_LEN
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// A DNS name of letters, digits and hyphens in dot-separated labels of 1 to 63 bytes.
fn is_host_name(text: &str) -> bool {
    let text = text.strip_suffix('.').unwrap_or(text);
    !text.is_empty()
        && text.len() <= MAX_HOST_NAME
        && text.bytes().any(|b| b.is_ascii_alphabetic())
        && text.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

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

/// Problems between softwires and the other tunnels: names and devices are shared, and there
/// is one IPv4 default route in `main`.
pub(crate) fn across(
    softwires: &[(usize, Softwire)],
    tunnels: &[(usize, Tunnel)],
    out: &mut Vec<Diagnostic>,
) {
    let mut names: HashMap<&str, usize> =
        tunnels.iter().map(|(i, t)| (t.name.as_str(), *i)).collect();
    let mut devices: HashMap<&str, usize> = tunnels
        .iter()
        .flat_map(|(i, t)| t.devices().into_iter().map(move |d| (d, *i)))
        .collect();
    let any = IpNet::V4(Ipv4Net::default());
    let mut default_route = tunnels
        .iter()
        .find(|(_, t)| t.enabled && t.route_table == MAIN_TABLE && t.routes.contains(&any))
        .map(|(i, _)| *i);
    for (i, sw) in softwires {
        let mut errors = Errors { i: *i, out };
        if let Some(first) = names.insert(&sw.name, *i) {
            errors.at(
                "name",
                format!("{:?} is already the name of tunnel[{first}]", sw.name),
            );
        }
        if let Some(first) = devices.insert(&sw.device, *i) {
            errors.at(
                "device",
                format!("{:?} is already the device of tunnel[{first}]", sw.device),
            );
        }
        if sw.enabled && sw.default_route {
            match default_route {
                Some(first) => errors.at(
                    "default_route",
                    format!(
                        "tunnel[{first}] already routes 0.0.0.0/0 in table main; one of them \
                         must leave it (or let a [[watch]] own the route)"
                    ),
                ),
                None => default_route = Some(*i),
            }
        }
    }
}
