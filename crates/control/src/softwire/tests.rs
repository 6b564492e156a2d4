//! Parsing, validation and lowering of MAP-E and DS-Lite tunnels.

use std::net::{IpAddr, Ipv6Addr};

use super::*;
use crate::mape::Layout;
use crate::model::Dataplane;
use crate::{Config, ConfigError, Gateway, Mode, tunnel_plan};

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml_str(text, "test.toml")
}

fn errors(text: &str) -> Vec<String> {
    let e = parse(text).expect_err("config should be refused");
    e.to_string().lines().map(str::to_owned).collect()
}

fn has(errors: &[String], key: &str, fragment: &str) -> bool {
    errors
        .iter()
        .any(|e| e.contains(&format!(" {key}: ")) && e.contains(fragment))
}

const V6PLUS: &str = r#"
[[tunnel]]
name = "mape"
mode = "map-e"
device_prefix = "eth0"
rule = "v6plus"
default_route = true
mss_clamp = "auto"
"#;

#[test]
fn map_e_with_a_builtin_rule() {
    let c = parse(V6PLUS).unwrap();
    assert!(c.tunnels.is_empty());
    let sw = &c.softwires[0];
    assert_eq!(sw.name, "mape");
    assert_eq!(sw.device, "v6g-mape");
    assert!(sw.default_route);
    let SoftwireKind::MapE(m) = &sw.kind else {
        panic!("{sw:?}")
    };
    assert_eq!(m.device_prefix, "eth0");
    assert!(matches!(m.rule, MapRule::Builtin(set) if set.name == "v6plus"));
}

#[test]
fn map_e_with_an_explicit_rule() {
    let c = parse(
        r#"
[[tunnel]]
name = "mape"
mode = "map-e"
device_prefix = "eth0"
rule = { ipv6_prefix = "2001:db8:8000::/38", ipv4_prefix = "198.18.8.0/22", ea_bits = 18,
         psid_offset = 4, br = "2001:db8:ffff::64", layout = "draft03" }
"#,
    )
    .unwrap();
    let SoftwireKind::MapE(m) = &c.softwires[0].kind else {
        panic!()
    };
    let MapRule::Explicit(rule) = m.rule else {
        panic!()
    };
    assert_eq!(rule.psid_len(), 8);
    assert_eq!(rule.psid_offset(), 4);
    assert_eq!(rule.layout(), Layout::Draft03);
    assert!(
        !c.softwires[0].default_route,
        "a default route is asked for, not assumed"
    );
}

#[test]
fn map_e_errors_name_the_key() {
    let e = errors(
        r#"
[[tunnel]]
name = "mape"
mode = "map-e"
rule = { ipv6_prefix = "2001:db8:8000::/38", ipv4_prefix = "198.18.8.0/22", ea_bits = 30,
         br = "2001:db8:ffff::64", colour = 1 }
routes = ["0.0.0.0/0"]
local = "2001:db8::1"
"#,
    );
    assert!(
        has(&e, "tunnel[0].device_prefix", "needs the device"),
        "{e:?}"
    );
    assert!(has(&e, "tunnel[0].rule.ea_bits", "past the /64"), "{e:?}");
    assert!(has(&e, "tunnel[0].rule.colour", "unknown field"), "{e:?}");
    assert!(has(&e, "tunnel[0].routes", "default_route"), "{e:?}");
    assert!(
        has(&e, "tunnel[0].local", "not used by mode = \"map-e\""),
        "{e:?}"
    );
    // Errors carry the line of the key.
    assert!(e.iter().any(|l| l.starts_with("test.toml:5:")), "{e:?}");

    let e = errors(
        r#"
[[tunnel]]
name = "mape"
mode = "map-e"
device_prefix = "eth0"
rule = "v6pluss"
"#,
    );
    assert!(
        has(&e, "tunnel[0].rule", "\"v6plus\", \"ocn\", \"biglobe\""),
        "{e:?}"
    );

    let e = errors(
        r#"
[[tunnel]]
name = "mape"
mode = "map-e"
device_prefix = "eth0"
rule = { ipv6_prefix = "2001:db8:8000::/38", ipv4_prefix = "198.18.8.0/22", ea_bits = 18,
         psid_offset = 9, br = "2001:db8:ffff::64", layout = "draft" }
"#,
    );
    assert!(has(&e, "tunnel[0].rule.layout", "\"draft03\""), "{e:?}");
    let e = errors(
        r#"
[[tunnel]]
name = "mape"
mode = "map-e"
device_prefix = "eth0"
rule = { ipv6_prefix = "2001:db8:8000::/38", ipv4_prefix = "198.18.8.0/22", ea_bits = 18,
         psid_offset = 9, br = "2001:db8:ffff::64" }
"#,
    );
    assert!(has(&e, "tunnel[0].rule.psid_offset", "16 bits"), "{e:?}");
}

const TRANSIX: &str = r#"
[[tunnel]]
name = "transix"
mode = "ds-lite"
aftr = "gw.transix.jp"
default_route = true
"#;

#[test]
fn ds_lite_by_name_and_by_address() {
    let c = parse(TRANSIX).unwrap();
    let SoftwireKind::DsLite(d) = &c.softwires[0].kind else {
        panic!()
    };
    assert_eq!(d.aftr, Aftr::Name("gw.transix.jp".into()));
    assert_eq!(d.local, None);

    let c = parse(
        r#"
[[tunnel]]
name = "b4"
mode = "ds-lite"
aftr = "2001:db8:aftr::1"
local = "2001:db8:1::2"
"#,
    );
    assert!(c.is_err(), "aftr is not hex");
    let c = parse(
        r#"
[[tunnel]]
name = "b4"
mode = "ds-lite"
aftr = "2001:db8:af::1"
local = "2001:db8:1::2"
"#,
    )
    .unwrap();
    let SoftwireKind::DsLite(d) = &c.softwires[0].kind else {
        panic!()
    };
    assert_eq!(d.aftr, Aftr::Address("2001:db8:af::1".parse().unwrap()));
}

#[test]
fn ds_lite_errors_name_the_key() {
    let e = errors(
        r#"
[[tunnel]]
name = "b4"
mode = "ds-lite"
aftr = "198.51.100.1"
local = "fe80::1"
rule = "v6plus"
"#,
    );
    assert!(has(&e, "tunnel[0].aftr", "over IPv6"), "{e:?}");
    assert!(has(&e, "tunnel[0].local", "not a global unicast"), "{e:?}");
    assert!(
        has(&e, "tunnel[0].rule", "belongs to mode = \"map-e\""),
        "{e:?}"
    );
    let e = errors("[[tunnel]]\nname = \"b4\"\nmode = \"ds-lite\"\n");
    assert!(has(&e, "tunnel[0].aftr", "needs the AFTR"), "{e:?}");
    let e = errors("[[tunnel]]\nname = \"b4\"\nmode = \"ds-lite\"\naftr = \"bad_name!\"\n");
    assert!(has(&e, "tunnel[0].aftr", "host name"), "{e:?}");
}

#[test]
fn softwire_keys_on_other_modes_are_refused() {
    let e = errors(
        r#"
[[tunnel]]
name = "vps"
mode = "ipip6"
local = "2001:db8:a::1"
remote = "2001:db8:b::1"
default_route = true
aftr = "gw.example"
"#,
    );
    assert!(has(&e, "tunnel[0].default_route", "routes"), "{e:?}");
    assert!(has(&e, "tunnel[0].aftr", "ds-lite"), "{e:?}");
}

#[test]
fn names_devices_and_default_routes_are_shared_with_tunnels() {
    let e = errors(&format!(
        r#"
[[tunnel]]
name = "transix"
mode = "ipip6"
local = "2001:db8:a::1"
remote = "2001:db8:b::1"
routes = ["0.0.0.0/0"]
{V6PLUS}{TRANSIX}"#
    ));
    assert!(
        has(&e, "tunnel[2].name", "already the name of tunnel[0]"),
        "{e:?}"
    );
    assert!(
        has(&e, "tunnel[1].default_route", "tunnel[0] already routes"),
        "{e:?}"
    );
    assert!(
        has(&e, "tunnel[2].default_route", "tunnel[0] already routes"),
        "{e:?}"
    );
}

fn only(text: &str) -> Softwire {
    parse(text).unwrap().softwires.remove(0)
}

#[test]
fn map_e_lowers_to_an_ipip6_tunnel_from_the_map_address_to_the_br() {
    let sw = only(V6PLUS);
    assert_eq!(
        lower(&sw, &Facts::default()),
        Err(LowerError::NoPrefix {
            device: "eth0".into()
        })
    );
    let facts = Facts {
        prefix: Some("240b:10:1234:5600::/56".parse().unwrap()),
        ..Facts::default()
    };
    let low = lower(&sw, &facts).unwrap();
    let t = &low.tunnel;
    assert_eq!(t.mode, Mode::Ipip6);
    assert_eq!(t.device, "v6g-mape");
    let map_address: Ipv6Addr = "240b:10:1234:5600:6a:4812:3400:5600".parse().unwrap();
    assert_eq!(t.paths[0].local, IpAddr::V6(map_address));
    assert_eq!(
        t.paths[0].remote,
        "2404:9200:225:100::64".parse::<IpAddr>().unwrap()
    );
    assert_eq!(t.paths[0].device, "v6g-mape");
    assert_eq!(t.addresses, ["106.72.18.52/32".parse().unwrap()]);
    assert_eq!(t.routes, ["0.0.0.0/0".parse().unwrap()]);
    assert_eq!(t.allowed_sources, ["0.0.0.0/0".parse().unwrap()]);
    assert_eq!(t.encap_limit, None);
    // `dataplane` as written (here the default), as for any ipip6 tunnel.
    assert_eq!(t.dataplane, Dataplane::Auto);
    assert_eq!(low.wan_address, Some(("eth0".into(), map_address)));
    let (_, map) = low.map.unwrap();
    assert_eq!(map.ports.len(), 240);
    // On a 1500-byte underlay the tunnel MTU is 1460, as the Japanese services configure.
    let plan = tunnel_plan(&Gateway::default(), t, |_| 1500);
    assert_eq!(plan.devices[0].mtu, 1460);
    assert_eq!(plan.paths[0].pinned_endpoint, t.paths[0].remote);

    // Re-delegation moves everything.
    let moved = Facts {
        prefix: Some("240b:12:9a3d:d300::/56".parse().unwrap()),
        ..Facts::default()
    };
    let low = lower(&sw, &moved).unwrap();
    assert_eq!(low.tunnel.addresses, ["14.8.154.61/32".parse().unwrap()]);
    let outside = Facts {
        prefix: Some("2001:db8::/56".parse().unwrap()),
        ..Facts::default()
    };
    assert!(matches!(lower(&sw, &outside), Err(LowerError::Map(_))));
}

#[test]
fn ds_lite_lowers_to_an_ipip6_tunnel_with_the_b4_address() {
    let sw = only(TRANSIX);
    assert_eq!(
        lower(&sw, &Facts::default()),
        Err(LowerError::AftrUnresolved("gw.transix.jp".into()))
    );
    let aftr: Ipv6Addr = "2001:db8:af::1".parse().unwrap();
    let wan: Ipv6Addr = "2001:db8:1::2".parse().unwrap();
    let resolved = Facts {
        aftr: Some(aftr),
        ..Facts::default()
    };
    assert_eq!(lower(&sw, &resolved), Err(LowerError::NoWanAddress));
    let facts = Facts {
        aftr: Some(aftr),
        wan_address: Some(wan),
        ..Facts::default()
    };
    let low = lower(&sw, &facts).unwrap();
    let t = &low.tunnel;
    assert_eq!(t.mode, Mode::Ipip6);
    assert_eq!(
        (t.paths[0].local, t.paths[0].remote),
        (IpAddr::V6(wan), IpAddr::V6(aftr))
    );
    assert_eq!(t.addresses, ["192.0.0.2/29".parse().unwrap()]);
    assert_eq!(t.routes, ["0.0.0.0/0".parse().unwrap()]);
    assert!(low.map.is_none() && low.wan_address.is_none());
    // No NAT on a B4: the kernel path can carry it.
    assert_eq!(t.dataplane, Dataplane::Auto);

    // A configured `local` wins over the host's choice.
    let mut sw = sw;
    let local: Ipv6Addr = "2001:db8:1::99".parse().unwrap();
    if let SoftwireKind::DsLite(d) = &mut sw.kind {
        d.local = Some(local);
    }
    sw.default_route = false;
    let low = lower(&sw, &facts).unwrap();
    assert_eq!(low.tunnel.paths[0].local, IpAddr::V6(local));
    assert!(low.tunnel.routes.is_empty());
}

#[test]
fn the_plan_holds_the_tunnel_and_the_map_address_on_the_wan() {
    let c = parse(V6PLUS).unwrap();
    let facts = Facts {
        prefix: Some("240b:12:9a3d:d300::/56".parse().unwrap()),
        ..Facts::default()
    };
    let plan = softwire_plan(&c.gateway, &c.softwires[0], &facts, |_| 1500).unwrap();
    let device = &plan.tunnel.devices[0];
    assert_eq!(device.name, "v6g-mape");
    assert_eq!(device.mtu, 1460);
    assert_eq!(device.addresses, ["14.8.154.61/32".parse().unwrap()]);
    assert_eq!(device.routes[0].dst, "0.0.0.0/0".parse().unwrap());
    assert_eq!(device.routes[0].metric, c.gateway.route_metric);
    assert_eq!(
        plan.tunnel.paths[0].pinned_endpoint,
        "2404:9200:225:100::64".parse::<IpAddr>().unwrap()
    );
    assert_eq!(
        plan.wan_address,
        Some(DeviceAddress {
            device: "eth0".into(),
            address: "240b:12:9a3d:d300:e:89a:3d00:d300/128".parse().unwrap(),
        })
    );
    assert_eq!(plan.map.unwrap().1.ports.len(), 240);
    assert!(softwire_plan(&c.gateway, &c.softwires[0], &Facts::default(), |_| 1500).is_err());
}

#[test]
fn b4s_and_map_e_ces_follow_dataplane() {
    let facts = Facts {
        aftr: Some("2001:db8:af::1".parse().unwrap()),
        wan_address: Some("2001:db8:1::2".parse().unwrap()),
        ..Facts::default()
    };
    for (word, want) in [
        ("kernel", Dataplane::Kernel),
        ("userspace", Dataplane::Userspace),
        ("auto", Dataplane::Auto),
    ] {
        let sw = only(&format!("{TRANSIX}dataplane = \"{word}\"\n"));
        assert_eq!(sw.dataplane, want);
        assert_eq!(lower(&sw, &facts).unwrap().tunnel.dataplane, want);
    }
    let e = errors(&format!("{TRANSIX}dataplane = \"tc\"\n"));
    assert!(has(&e, "tunnel[0].dataplane", "\"tc\""), "{e:?}");

    let facts = Facts {
        prefix: Some("240b:10:1234:5600::/56".parse().unwrap()),
        ..Facts::default()
    };
    for (word, want) in [
        ("kernel", Dataplane::Kernel),
        ("userspace", Dataplane::Userspace),
        ("auto", Dataplane::Auto),
    ] {
        let sw = only(&format!("{V6PLUS}dataplane = \"{word}\"\n"));
        assert_eq!(sw.dataplane, want);
        assert_eq!(lower(&sw, &facts).unwrap().tunnel.dataplane, want);
    }
}
