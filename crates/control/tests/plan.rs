//! The host plan and the reload diff.

mod support;

use std::cell::Cell;

use control::{Config, RoutePlan, SysctlChange, diff, plan};
use support::*;

fn sysctl(key: &str, value: &str) -> SysctlChange {
    SysctlChange {
        key: key.to_owned(),
        value: value.to_owned(),
    }
}

#[test]
fn gateway_sysctls_only_when_asked() {
    let base = tunnel("a", "2001:db8:a::2", "");
    assert!(plan(&valid(&base), |_, _| 1500).sysctls.is_empty());

    let text = format!("[gateway]\nipv4_forwarding = true\nipv6_forwarding = false\n{base}");
    assert_eq!(
        plan(&valid(&text), |_, _| 1500).sysctls,
        vec![
            sysctl("net/ipv4/ip_forward", "1"),
            sysctl("net/ipv6/conf/all/forwarding", "0"),
        ]
    );
}

#[test]
fn tunnel_plan_carries_routes_addresses_and_pin() {
    let text = format!(
        "[gateway]\nroute_metric = 300\npin_table = 7000\npin_rule_priority = 90\n{}",
        tunnel(
            "home",
            "2001:db8:a::2",
            "routes = [\"0.0.0.0/0\", \"203.0.113.0/24\"]\naddress = \"198.51.100.2/30\"\nroute_table = 300\n",
        )
    );
    let p = plan(&valid(&text), |_, _| 1500);
    assert_eq!(
        (p.pin_table, p.pin_rule_priority, p.pin_mark),
        (7000, 90, 0x7636)
    );
    let tp = p.tunnel("home").unwrap();
    assert_eq!(tp.devices.len(), 1);
    assert_eq!(tp.paths.len(), 1);
    assert_eq!(tp.paths[0].name, "default");
    assert_eq!(tp.paths[0].device, "v6g-home");
    assert_eq!(
        tp.paths[0].pinned_endpoint,
        "2001:db8:a::2".parse::<std::net::IpAddr>().unwrap()
    );
    let t = tp.device("v6g-home").unwrap();
    assert_eq!(t.addresses, vec!["198.51.100.2/30".parse().unwrap()]);
    assert_eq!(
        t.routes,
        vec![
            RoutePlan {
                dst: "0.0.0.0/0".parse().unwrap(),
                table: 300,
                metric: 300
            },
            RoutePlan {
                dst: "203.0.113.0/24".parse().unwrap(),
                table: 300,
                metric: 300
            },
        ]
    );
}

#[test]
fn device_sysctls_follow_inner_families() {
    let v4 = plan(&valid(&tunnel("a", "2001:db8:a::2", "")), |_, _| 1500);
    assert_eq!(
        v4.tunnels[0].devices[0].sysctls,
        vec![
            sysctl("net/ipv4/conf/v6g-a/rp_filter", "2"),
            sysctl("net/ipv6/conf/v6g-a/accept_ra", "0"),
            sysctl("net/ipv6/conf/v6g-a/disable_ipv6", "1"),
        ]
    );
    let text = tunnel("a", "2001:db8:a::2", "device = \"tun.a\"\n").replace("ipip6", "any");
    let both = plan(&valid(&text), |_, _| 1500);
    assert_eq!(
        both.tunnels[0].devices[0].sysctls,
        vec![
            sysctl("net/ipv4/conf/tun.a/rp_filter", "2"),
            sysctl("net/ipv6/conf/tun.a/accept_ra", "0"),
            sysctl("net/ipv6/conf/tun.a/disable_ipv6", "0"),
        ]
    );
}

#[test]
fn mtu_comes_from_config_override_or_host() {
    let asked = Cell::new(0);
    let host = |_: &control::Tunnel, _: &control::Path| {
        asked.set(asked.get() + 1);
        9000
    };
    let text = tunnel("fixed", "2001:db8:a::2", "mtu = 1400\n")
        + &tunnel(
            "over",
            "2001:db8:a::3",
            "underlay_mtu = 1500\nencap_limit = 4\n",
        )
        + &tunnel("host", "2001:db8:a::4", "");
    let p = plan(&valid(&text), host);
    let mtus: Vec<u16> = p.tunnels.iter().map(|t| t.devices[0].mtu).collect();
    assert_eq!(mtus, [1400, 1452, 8960]);
    assert_eq!(
        asked.get(),
        1,
        "the host is asked only when nothing is configured"
    );
}

#[test]
fn ipv6_carrying_tunnel_keeps_1280_on_a_minimum_underlay() {
    let text = tunnel("a", "2001:db8:a::2", "").replace("ipip6", "ip6ip6");
    assert_eq!(
        plan(&valid(&text), |_, _| 1280).tunnels[0].devices[0].mtu,
        1280
    );
    let text = tunnel("a", "2001:db8:a::2", "");
    assert_eq!(
        plan(&valid(&text), |_, _| 1280).tunnels[0].devices[0].mtu,
        1240
    );
}

#[test]
fn disabled_tunnels_have_no_host_state() {
    let text =
        tunnel("a", "2001:db8:a::2", "enabled = false\n") + &tunnel("b", "2001:db8:a::3", "");
    let p = plan(&valid(&text), |_, _| 1500);
    let names: Vec<&str> = p.tunnels.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["b"]);
    assert!(p.tunnel("a").is_none());
}

#[test]
fn plan_is_deterministic() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/s0-client.toml"
    ))
    .unwrap();
    let c = valid(&text);
    assert_eq!(plan(&c, |_, _| 1500), plan(&c.clone(), |_, _| 1500));
    assert_ne!(plan(&c, |_, _| 1500), plan(&c, |_, _| 1400));
}

fn config(tunnels: &[(&str, &str, &str)]) -> Config {
    valid(
        &tunnels
            .iter()
            .map(|(n, r, extra)| tunnel(n, r, extra))
            .collect::<String>(),
    )
}

#[test]
fn diff_sorts_tunnels() {
    let old = config(&[
        ("keep", "2001:db8:a::2", ""),
        ("edit", "2001:db8:a::3", "mtu = 1400\n"),
        ("drop", "2001:db8:a::4", ""),
        ("off", "2001:db8:a::5", ""),
    ]);
    let new = config(&[
        ("new", "2001:db8:a::6", ""),
        ("edit", "2001:db8:a::3", "mtu = 1300\n"),
        ("keep", "2001:db8:a::2", ""),
        ("off", "2001:db8:a::5", "enabled = false\n"),
    ]);
    let d = diff(&old, &new);
    assert_eq!(d.removed, ["drop", "off"]);
    assert_eq!(d.added, ["new"]);
    assert_eq!(d.changed, ["edit"]);
    assert_eq!(d.unchanged, ["keep"]);
    assert!(!d.gateway_changed);
    assert!(!d.is_empty());

    let back = diff(&new, &old);
    assert_eq!(back.added, ["drop", "off"]);
    assert_eq!(back.removed, ["new"]);
}

#[test]
fn diff_of_equal_configs_is_empty() {
    let c = config(&[
        ("a", "2001:db8:a::2", ""),
        ("b", "2001:db8:a::3", "enabled = false\n"),
    ]);
    let d = diff(&c, &c);
    assert!(d.is_empty(), "{d:?}");
    assert_eq!(d.unchanged, ["a"]);
}

#[test]
fn gateway_changes_that_reshape_routes_change_every_tunnel() {
    let base = tunnel("a", "2001:db8:a::2", "");
    let old = valid(&base);
    let socket = valid(&format!(
        "[gateway]\ncontrol_socket = \"/run/x.sock\"\n{base}"
    ));
    let d = diff(&old, &socket);
    assert!(d.gateway_changed);
    assert_eq!(d.unchanged, ["a"]);

    let metric = valid(&format!("[gateway]\nroute_metric = 7\n{base}"));
    let d = diff(&old, &metric);
    assert!(d.gateway_changed);
    assert_eq!(d.changed, ["a"]);
}
