//! `[[tunnel.path]]`, `[tunnel.health]` and `device_per_path`: several underlay paths to one
//! peer (scenario S4).

mod support;

use std::net::IpAddr;
use std::time::Duration;

use control::{Health, Mode, Path, Probe, RoutePlan, Tunnel, diff, plan};
use ipnet::IpNet;
use support::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

/// A tunnel "k" with `tunnel_extra` lines, then an IPv6 path "ipoe" and an IPv4 path "pppoe",
/// each followed by its extra lines.
fn s4(tunnel_extra: &str, ipoe_extra: &str, pppoe_extra: &str) -> String {
    format!(
        "[[tunnel]]\nname = \"k\"\nmode = \"ipip6\"\nroutes = [\"198.51.100.0/24\"]\n{tunnel_extra}\
         [[tunnel.path]]\nname = \"ipoe\"\nlocal = \"2001:db8:1::1\"\nremote = \"2001:db8:1::2\"\n\
         cost = 10\n{ipoe_extra}\
         [[tunnel.path]]\nname = \"pppoe\"\nlocal = \"198.18.0.1\"\nremote = \"198.18.0.2\"\n\
         cost = 100\n{pppoe_extra}"
    )
}

#[test]
fn every_path_key_is_read() {
    let text = r#"
[[tunnel]]
name = "k"
mode = "any"
routes = ["198.51.100.0/24", "2001:db8:100::/48"]
address = "198.51.100.1/32"
device_per_path = true
underlay_mtu = 1492

[[tunnel.path]]
name = "ipoe"
local = "2001:db8:1::1"
remote = "2001:db8:1::2"
cost = 10
probe = "icmp"
probe_target = "198.51.100.2"
probe_source = "198.51.100.1"
device = "kagawa6"
address = ["203.0.113.1/30", "2001:db8:ff::1/64"]
underlay_mtu = 1500

[[tunnel.path]]
name = "pppoe"
local = "198.18.0.1"
remote = "198.18.0.2"
cost = 100
probe = "none"

[tunnel.health]
interval = "100ms"
timeout = "300ms"
down_after = 3
up_after = 20
hold_down = "5s"
"#;
    let c = valid(text);
    let t = &c.tunnels[0];
    assert!(t.device_per_path);
    assert_eq!(
        t.health,
        Health {
            interval: Duration::from_millis(100),
            timeout: Duration::from_millis(300),
            down_after: 3,
            up_after: 20,
            hold_down: Duration::from_secs(5),
        }
    );
    let [ipoe, pppoe] = &t.paths[..] else {
        panic!("two paths: {:?}", t.paths)
    };
    assert_eq!(
        *ipoe,
        Path {
            name: "ipoe".into(),
            local: ip("2001:db8:1::1"),
            remote: ip("2001:db8:1::2"),
            cost: 10,
            probe: Probe::Icmp {
                target: ip("198.51.100.2"),
                source: Some(ip("198.51.100.1")),
            },
            device: "kagawa6".into(),
            addresses: vec![net("203.0.113.1/30"), net("2001:db8:ff::1/64")],
            underlay_mtu: Some(1500),
            remote_name: None,
            local_device: None,
        }
    );
    assert_eq!(
        pppoe.device, "v6g-k-pppoe",
        "derived from the tunnel's device"
    );
    assert_eq!(pppoe.probe, Probe::None);
    assert_eq!(
        pppoe.underlay_mtu,
        Some(1492),
        "the tunnel's underlay_mtu is the paths' default"
    );
    assert!(!pppoe.is_ipv6());
    assert_eq!(t.devices(), ["kagawa6", "v6g-k-pppoe"]);
    assert_eq!(t.path("pppoe"), Some(pppoe));
}

#[test]
fn path_defaults() {
    let c = valid(&s4("", "", ""));
    let t = &c.tunnels[0];
    assert_eq!(t.health, Health::TUNNEL_DEFAULT);
    assert!(!t.device_per_path);
    for p in &t.paths {
        assert_eq!(p.probe, Probe::Keepalive);
        assert_eq!(p.device, "v6g-k", "paths share the tunnel's device");
        assert!(p.addresses.is_empty());
        assert_eq!(p.underlay_mtu, None);
    }
    let text = s4("", "", "").replace("cost = 10\n", "");
    assert_eq!(valid(&text).tunnels[0].paths[0].cost, 0);
}

#[test]
fn single_path_form_is_one_default_path() {
    let text = tunnel("home", "2001:db8:a::2", "routes = [\"203.0.113.0/24\"]\n");
    let mut built = Tunnel::new(
        "home",
        Mode::Ipip6,
        ip("2001:db8:a::1"),
        ip("2001:db8:a::2"),
    );
    built.routes = vec![net("203.0.113.0/24")];
    built.allowed_sources = built.routes.clone();
    assert_eq!(valid(&text).tunnels[0], built);

    // Over IPv4 too (RFC 2003).
    let text = tunnel("home", "198.18.0.2", "").replace("2001:db8:a::1", "198.18.0.1");
    let t = &valid(&text).tunnels[0];
    assert_eq!(
        (t.paths[0].local, t.paths[0].remote),
        (ip("198.18.0.1"), ip("198.18.0.2"))
    );
}

#[test]
fn single_path_form_and_paths_do_not_mix() {
    let text = s4(
        "local = \"2001:db8:1::1\"\nremote = \"2001:db8:1::9\"\n",
        "",
        "",
    );
    let e = invalid(&text);
    has_problem(
        &e,
        "tunnel[0].local",
        5,
        "cannot be mixed with [[tunnel.path]] tables",
    );
    has_problem(
        &e,
        "tunnel[0].remote",
        line_of(&text, "remote = \"2001:db8:1::9\""),
        "give each path its own `remote`",
    );
    assert_eq!(e.diagnostics().len(), 2, "{e}");

    let text = "[[tunnel]]\nname = \"k\"\nmode = \"ipip6\"\n";
    let e = invalid(text);
    has_problem(&e, "tunnel[0].local", 1, "missing field `local`");
    has_problem(
        &e,
        "tunnel[0].remote",
        1,
        "or one [[tunnel.path]] table per path",
    );
    assert_eq!(e.diagnostics().len(), 2, "{e}");

    let text = "[[tunnel]]\nname = \"k\"\nmode = \"ipip6\"\npath = []\n";
    only_problem(
        text,
        "tunnel[0].path",
        "needs at least one path",
        "path = []",
    );
}

#[test]
fn single_path_form_takes_no_path_settings() {
    let text = tunnel("home", "2001:db8:a::2", "device_per_path = true\n");
    only_problem(
        &text,
        "tunnel[0].device_per_path",
        "needs [[tunnel.path]] tables",
        "device_per_path",
    );
    let text = tunnel(
        "home",
        "2001:db8:a::2",
        "[tunnel.health]\ninterval = \"1s\"\n",
    );
    only_problem(
        &text,
        "tunnel[0].health",
        "the single-path form is not probed",
        "[tunnel.health]",
    );
}

#[test]
fn path_names_are_unique_and_restricted() {
    let text = s4("", "", "").replace("name = \"pppoe\"", "name = \"ipoe\"");
    only_problem_on(
        &text,
        "tunnel[0].path[1].name",
        "\"ipoe\" is already the name of path[0]",
        last_line_starting(&text, "name ="),
    );
    let text = s4("", "", "").replace("name = \"pppoe\"", "name = \"ppp oe\"");
    only_problem(
        &text,
        "tunnel[0].path[1].name",
        "A-Z a-z 0-9",
        "name = \"ppp oe\"",
    );
}

#[test]
fn path_endpoints() {
    let text = s4("", "", "").replace("\"198.18.0.2\"", "\"2001:db8:2::2\"");
    only_problem(
        &text,
        "tunnel[0].path[1].remote",
        "2001:db8:2::2 is IPv6, but local 198.18.0.1 is IPv4",
        "remote = \"2001:db8:2::2\"",
    );
    let text = s4("", "", "").replace("\"198.18.0.2\"", "\"198.18.0.1\"");
    only_problem(
        &text,
        "tunnel[0].path[1].remote",
        "same address as `local`",
        "remote = \"198.18.0.1\"",
    );
    let text = s4("", "", "").replace("\"198.18.0.2\"", "\"home.example.net\"");
    let path = valid(&text).tunnels[0].paths[1].clone();
    assert_eq!(path.remote_name.as_deref(), Some("home.example.net"));
    assert_eq!(
        path.remote,
        ip("0.0.0.0"),
        "an A record, like local's family"
    );
    // Following a device instead of a fixed local address; two named paths stay apart.
    let text = s4("", "", "")
        .replace("local = \"198.18.0.1\"", "local_device = \"ppp0\"")
        .replace("\"198.18.0.2\"", "\"home-v4.example.net\"");
    // The key is not written: the message points at the path's table.
    has_problem(
        &invalid(&text),
        "tunnel[0].path[1].family",
        10,
        "nothing says which family",
    );
    let text = text.replace(
        "local_device = \"ppp0\"",
        "local_device = \"ppp0\"\nfamily = \"ipv4\"",
    );
    let path = valid(&text).tunnels[0].paths[1].clone();
    assert_eq!(path.local_device.as_deref(), Some("ppp0"));
    assert_eq!((path.local, path.remote), (ip("0.0.0.0"), ip("0.0.0.0")));
    let text = s4("", "", "").replace("local = \"198.18.0.1\"", "local_device = \"ppp0/x\"");
    only_problem(
        &text,
        "tunnel[0].path[1].local_device",
        "expected an interface name",
        "local_device",
    );
    let text = s4("", "", "").replace("\"198.18.0.1\"", "\"127.0.0.1\"");
    only_problem(
        &text,
        "tunnel[0].path[1].local",
        "loopback",
        "local = \"127.0.0.1\"",
    );
    let text = s4("", "", "").replace("\"2001:db8:1::2\"", "\"fe80::2\"");
    only_problem(&text, "tunnel[0].path[0].remote", "link-local", "fe80::2");
}

#[test]
fn one_path_per_endpoint_pair_within_and_across_tunnels() {
    let text = s4("", "", "")
        .replace("\"198.18.0.1\"", "\"2001:db8:1::1\"")
        .replace("\"198.18.0.2\"", "\"2001:db8:1::2\"");
    only_problem_on(
        &text,
        "tunnel[0].path[1].remote",
        "path[0] (\"ipoe\") already runs between 2001:db8:1::1 and 2001:db8:1::2",
        last_line_starting(&text, "remote ="),
    );

    // A single-path tunnel over the other tunnel's PPPoE path.
    let text =
        s4("", "", "") + &tunnel("other", "198.18.0.2", "").replace("2001:db8:a::1", "198.18.0.1");
    only_problem_on(
        &text,
        "tunnel[1].remote",
        "tunnel[0].path[1] (\"k\") already runs between 198.18.0.1 and 198.18.0.2",
        last_line_starting(&text, "remote ="),
    );
    let text =
        tunnel("other", "198.18.0.2", "").replace("2001:db8:a::1", "198.18.0.1") + &s4("", "", "");
    only_problem_on(
        &text,
        "tunnel[1].path[1].remote",
        "tunnel[0] (\"other\") already runs between 198.18.0.1 and 198.18.0.2",
        last_line_starting(&text, "remote ="),
    );
    // Disabled tunnels do not clash.
    let text = s4("", "", "")
        + &tunnel("other", "198.18.0.2", "enabled = false\n")
            .replace("2001:db8:a::1", "198.18.0.1");
    valid(&text);
}

#[test]
fn cost_range() {
    for bad in ["-1", "65536"] {
        let text = s4("", "", "").replace("cost = 100", &format!("cost = {bad}"));
        let line = last_line_starting(&text, "cost =");
        only_problem_on(&text, "tunnel[0].path[1].cost", "0..=65535", line);
    }
    let text = s4("", "", "").replace("cost = 100", "cost = 65535");
    assert_eq!(valid(&text).tunnels[0].paths[1].cost, 65535);
}

#[test]
fn probe_rules() {
    let cases = [
        (
            "probe = \"bfd\"\n",
            "probe",
            "expected one of \"keepalive\", \"icmp\", \"none\"",
        ),
        ("probe = \"icmp\"\n", "probe", "needs `probe_target`"),
        (
            "probe_target = \"198.51.100.2\"\n",
            "probe_target",
            "only used with probe = \"icmp\"",
        ),
        (
            "probe = \"none\"\nprobe_source = \"198.51.100.1\"\n",
            "probe_source",
            "only used with probe = \"icmp\"",
        ),
        (
            "probe = \"icmp\"\nprobe_target = \"2001:db8:100::2\"\n",
            "probe_target",
            "2001:db8:100::2 is IPv6, which this tunnel does not carry (inner_families = ipv4)",
        ),
        (
            "probe = \"icmp\"\nprobe_target = \"198.51.100.2\"\nprobe_source = \"2001:db8::1\"\n",
            "probe_source",
            "2001:db8::1 is IPv6, but probe_target 198.51.100.2 is IPv4",
        ),
        (
            "probe = \"icmp\"\nprobe_target = \"203.0.113.9\"\n",
            "probe_target",
            "203.0.113.9 is not in the tunnel's allowed_sources",
        ),
        (
            "probe = \"icmp\"\nprobe_target = \"peer.example.net\"\n",
            "probe_target",
            "is a host name",
        ),
        (
            "probe = \"icmp\"\nprobe_target = \"224.0.0.5\"\n",
            "probe_target",
            "multicast",
        ),
    ];
    for (extra, field, needle) in cases {
        let text = s4("", "", extra);
        let line = extra
            .lines()
            .find(|l| l.starts_with(field))
            .unwrap_or_else(|| extra.lines().next().unwrap());
        only_problem(&text, &format!("tunnel[0].path[1].{field}"), needle, line);
    }
    let text = s4(
        "",
        "",
        "probe = \"icmp\"\nprobe_target = \"198.51.100.2\"\nprobe_source = \"198.51.100.1\"\n",
    );
    assert_eq!(
        valid(&text).tunnels[0].paths[1].probe,
        Probe::Icmp {
            target: ip("198.51.100.2"),
            source: Some(ip("198.51.100.1")),
        }
    );
}

#[test]
fn path_devices() {
    only_problem(
        &s4("", "", "device = \"ppp-k\"\n"),
        "tunnel[0].path[1].device",
        "only with device_per_path = true",
        "device = \"ppp-k\"",
    );
    only_problem(
        &s4("", "", "address = \"203.0.113.1/30\"\n"),
        "tunnel[0].path[1].address",
        "only with device_per_path = true",
        "address =",
    );
    only_problem(
        &s4("device_per_path = true\n", "", "device = \"a:b\"\n"),
        "tunnel[0].path[1].device",
        "interface name",
        "device = \"a:b\"",
    );
    // "v6g-kagawa-pppoe" is 16 bytes.
    let text = s4("device_per_path = true\n", "", "").replace("name = \"k\"", "name = \"kagawa\"");
    only_problem(
        &text,
        "tunnel[0].path[1].name",
        "\"v6g-kagawa-pppoe\", is 16 bytes, longer than 15; use a shorter name or set `device` on the path",
        "name = \"pppoe\"",
    );
    let fixed = text.replace("cost = 100\n", "cost = 100\ndevice = \"kagawa-ppp\"\n");
    assert_eq!(
        valid(&fixed).tunnels[0].devices(),
        ["v6g-kagawa-ipoe", "kagawa-ppp"]
    );
    // A bad tunnel device is reported once, not again through every derived name.
    let text = s4(
        "device_per_path = true\ndevice = \"way-too-long-device\"\n",
        "",
        "",
    );
    only_problem(&text, "tunnel[0].device", "interface name", "device = ");
}

#[test]
fn path_addresses_are_not_repeated() {
    let text = s4(
        "device_per_path = true\naddress = \"198.51.100.1/32\"\n",
        "",
        "address = [\"203.0.113.5/30\", \"198.51.100.1/32\"]\n",
    );
    only_problem_on(
        &text,
        "tunnel[0].path[1].address",
        "198.51.100.1/32 is already in the tunnel's `address`",
        last_line_starting(&text, "address ="),
    );
    let text = s4(
        "device_per_path = true\n",
        "address = \"203.0.113.1/30\"\n",
        "address = \"203.0.113.1/30\"\n",
    );
    only_problem_on(
        &text,
        "tunnel[0].path[1].address",
        "203.0.113.1/30 is already an address of path[0] (\"ipoe\")",
        last_line_starting(&text, "address ="),
    );
    // One link subnet per path is the OSPF way.
    valid(&s4(
        "device_per_path = true\n",
        "address = \"203.0.113.1/30\"\n",
        "address = \"203.0.113.5/30\"\n",
    ));
}

#[test]
fn path_devices_are_unique_across_tunnels() {
    let text = s4("device_per_path = true\n", "", "")
        + &tunnel("b", "2001:db8:a::2", "device = \"v6g-k-pppoe\"\n");
    only_problem(
        &text,
        "tunnel[1].device",
        "\"v6g-k-pppoe\" is already the device of tunnel[0].path[1]",
        "device = \"v6g-k-pppoe\"",
    );
    let text = s4("device_per_path = true\n", "", "device = \"same\"\n")
        .replace("cost = 10\n", "cost = 10\ndevice = \"same\"\n");
    only_problem_on(
        &text,
        "tunnel[0].path[1].device",
        "\"same\" is already the device of tunnel[0].path[0]",
        last_line_starting(&text, "device ="),
    );
}

#[test]
fn device_per_path_routes_need_distinct_costs() {
    let text = s4("device_per_path = true\n", "", "").replace("cost = 100", "cost = 10");
    only_problem_on(
        &text,
        "tunnel[0].path[1].cost",
        "path[0] (\"ipoe\") has cost 10 too",
        last_line_starting(&text, "cost ="),
    );
    // Without routes (a routing daemon installs them) equal costs are fine.
    let text = text.replace(
        "routes = [\"198.51.100.0/24\"]\n",
        "allowed_sources = [\"0.0.0.0/0\"]\n",
    );
    valid(&text);
    // Without device_per_path one device holds the routes once.
    valid(&s4("", "", "").replace("cost = 100", "cost = 10"));
}

#[test]
fn encap_limit_is_for_ipv6_paths() {
    let text = "[[tunnel]]\nname = \"k\"\nmode = \"ipip6\"\nencap_limit = 4\n\
                [[tunnel.path]]\nname = \"ppp\"\nlocal = \"198.18.0.1\"\nremote = \"198.18.0.2\"\n";
    only_problem(
        text,
        "tunnel[0].encap_limit",
        "every path of this tunnel runs over IPv4",
        "encap_limit",
    );
    let c = valid(&s4("encap_limit = 4\n", "", ""));
    let t = &c.tunnels[0];
    assert_eq!(
        t.paths.iter().map(|p| t.overhead(p)).collect::<Vec<_>>(),
        [48, 20]
    );
}

#[test]
fn underlay_mtu_suits_each_path() {
    only_problem(
        &s4("", "underlay_mtu = 1279\n", ""),
        "tunnel[0].path[0].underlay_mtu",
        "1280..=65535 (the underlay is an IPv6 link)",
        "underlay_mtu",
    );
    only_problem(
        &s4("", "", "underlay_mtu = 67\n"),
        "tunnel[0].path[1].underlay_mtu",
        "68..=65535 (the underlay is an IPv4 link)",
        "underlay_mtu",
    );
    only_problem(
        &s4("underlay_mtu = 1000\n", "", ""),
        "tunnel[0].underlay_mtu",
        "1280..=65535 (it applies to every path without its own, and one runs over IPv6)",
        "underlay_mtu",
    );
    // Once the IPv6 path has its own, the tunnel's only reaches the IPv4 path.
    let c = valid(&s4("underlay_mtu = 1000\n", "underlay_mtu = 1500\n", ""));
    let mtus: Vec<_> = c.tunnels[0].paths.iter().map(|p| p.underlay_mtu).collect();
    assert_eq!(mtus, [Some(1500), Some(1000)]);
}

#[test]
fn health_keys() {
    for (line, field, needle) in [
        ("interval = \"5ms\"", "interval", "10ms..=1h"),
        ("timeout = 300", "timeout", "expected a duration string"),
        ("down_after = 0", "down_after", "1..=1000"),
        ("up_after = 1001", "up_after", "1..=1000"),
        ("hold_down = \"-1s\"", "hold_down", "malformed number"),
        ("retries = 3", "retries", "unknown field `retries`"),
    ] {
        let text = s4("", "", &format!("[tunnel.health]\n{line}\n"));
        only_problem(&text, &format!("tunnel[0].health.{field}"), needle, line);
    }
    // A timeout longer than the interval is fine: several probes are in flight.
    let text = s4(
        "",
        "",
        "[tunnel.health]\ninterval = \"10ms\"\ntimeout = \"1s\"\nhold_down = \"0s\"\n",
    );
    let h = valid(&text).tunnels[0].health;
    assert_eq!(h.worst_detection(), Duration::from_millis(1030));
}

#[test]
fn plan_of_a_shared_device() {
    let c = valid(&s4("", "", ""));
    let host = |_: &Tunnel, p: &Path| if p.is_ipv6() { 1500 } else { 1454 };
    let p = plan(&c, host);
    let t = &p.tunnels[0];
    assert_eq!(t.devices.len(), 1);
    let d = &t.devices[0];
    assert_eq!(d.name, "v6g-k");
    // min(1500 - 40, 1454 - 20)
    assert_eq!(d.mtu, 1434);
    assert_eq!(
        d.routes,
        [RoutePlan {
            dst: net("198.51.100.0/24"),
            table: 254,
            metric: 50,
        }]
    );
    let pins: Vec<(&str, &str, IpAddr, IpAddr, u32)> = t
        .paths
        .iter()
        .map(|p| {
            (
                p.name.as_str(),
                p.device.as_str(),
                p.local,
                p.pinned_endpoint,
                p.cost,
            )
        })
        .collect();
    assert_eq!(
        pins,
        [
            (
                "ipoe",
                "v6g-k",
                ip("2001:db8:1::1"),
                ip("2001:db8:1::2"),
                10
            ),
            ("pppoe", "v6g-k", ip("198.18.0.1"), ip("198.18.0.2"), 100),
        ]
    );
}

#[test]
fn plan_of_a_device_per_path() {
    let text = s4(
        "device_per_path = true\naddress = \"198.51.100.1/32\"\n",
        "address = \"203.0.113.1/30\"\n",
        "underlay_mtu = 1454\n",
    );
    let c = valid(&text);
    let asked = std::cell::Cell::new(0);
    let p = plan(&c, |_, path| {
        asked.set(asked.get() + 1);
        assert_eq!(path.name, "ipoe", "pppoe's underlay is configured");
        1500
    });
    assert_eq!(asked.get(), 1);
    let t = &p.tunnels[0];
    let names: Vec<&str> = t.devices.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["v6g-k-ipoe", "v6g-k-pppoe"]);
    let ipoe = t.device("v6g-k-ipoe").unwrap();
    let pppoe = t.device("v6g-k-pppoe").unwrap();
    assert_eq!(
        (ipoe.mtu, pppoe.mtu),
        (1460, 1434),
        "each device fits its own path"
    );
    assert_eq!(
        ipoe.addresses,
        [net("198.51.100.1/32"), net("203.0.113.1/30")]
    );
    assert_eq!(pppoe.addresses, [net("198.51.100.1/32")]);
    let metrics: Vec<u32> = t
        .devices
        .iter()
        .flat_map(|d| d.routes.iter().map(|r| r.metric))
        .collect();
    assert_eq!(metrics, [60, 150], "route_metric + cost");
    assert_eq!(
        pppoe.sysctls[0].key, "net/ipv4/conf/v6g-k-pppoe/rp_filter",
        "sysctls per device"
    );
    assert_eq!(t.paths[1].device, "v6g-k-pppoe");
    assert!(
        t.device("v6g-k").is_none(),
        "no device for the tunnel itself"
    );
}

#[test]
fn configured_mtu_applies_to_every_device() {
    let text = s4("device_per_path = true\nmtu = 1400\n", "", "");
    let p = plan(&valid(&text), |_, _| panic!("not needed"));
    let mtus: Vec<u16> = p.tunnels[0].devices.iter().map(|d| d.mtu).collect();
    assert_eq!(mtus, [1400, 1400]);
}

#[test]
fn watch_route_clashes_with_a_path_device_route() {
    // pppoe's device has 198.51.100.0/24 at 50 + 100.
    let text = s4("device_per_path = true\n", "", "")
        + "[[watch]]\nname = \"w\"\ntarget = \"198.18.2.254\"\ndevice = \"wan4\"\n\
           route = { dst = \"198.51.100.0/24\", device = \"wan4\", metric = 150 }\n";
    only_problem(
        &text,
        "watch[0].route.dst",
        "tunnel[0] (\"k\") already installs 198.51.100.0/24 in table 254 at metric 150 (on v6g-k-pppoe)",
        "route =",
    );
    valid(&text.replace("metric = 150", "metric = 149"));
}

#[test]
fn diff_sees_path_and_health_changes() {
    let old = valid(&s4("", "", ""));
    for new in [
        s4("", "", "").replace("cost = 100", "cost = 90"),
        s4("", "", "probe = \"none\"\n"),
        s4("", "", "[tunnel.health]\nup_after = 30\n"),
        s4("device_per_path = true\n", "", ""),
    ] {
        let d = diff(&old, &valid(&new));
        assert_eq!(d.changed, ["k"], "{new}");
    }
    assert!(diff(&old, &valid(&s4("", "", ""))).is_empty());
}
