//! Every validation rule, each checked for the key and line it reports.

mod support;

use std::net::IpAddr;

use control::{Health, InnerFamilies, MAIN_TABLE, Mode, MssClamp, Probe, TrafficClass};
use ipnet::IpNet;
use support::*;

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

#[test]
fn defaults_are_filled_in() {
    let c = valid(&tunnel(
        "home",
        "2001:db8:a::2",
        "routes = [\"203.0.113.0/24\"]\n",
    ));
    assert_eq!(
        c.gateway.control_socket.to_str(),
        Some("/run/v6gate/v6gate.sock")
    );
    assert_eq!(c.gateway.pin_table, 6464);
    assert_eq!(c.gateway.pin_rule_priority, 100);
    assert_eq!(c.gateway.route_metric, 50);
    assert_eq!(c.gateway.ipv4_forwarding, None);
    assert_eq!(c.gateway.ipv6_forwarding, None);
    let t = &c.tunnels[0];
    assert_eq!(t.device, "v6g-home");
    assert_eq!(t.mode, Mode::Ipip6);
    assert_eq!(t.paths.len(), 1);
    let p = &t.paths[0];
    assert_eq!(p.name, "default");
    assert_eq!(p.local, "2001:db8:a::1".parse::<IpAddr>().unwrap());
    assert_eq!(p.remote, "2001:db8:a::2".parse::<IpAddr>().unwrap());
    assert_eq!((p.cost, p.probe), (0, Probe::None));
    assert_eq!(p.device, "v6g-home");
    assert_eq!(p.underlay_mtu, None);
    assert!(p.addresses.is_empty());
    assert!(!t.device_per_path);
    assert_eq!(t.health, Health::TUNNEL_DEFAULT);
    assert_eq!(t.encap_limit, None);
    assert_eq!(t.mtu, None);
    assert_eq!(t.allowed_sources, vec![net("203.0.113.0/24")]);
    assert_eq!(t.inner_families, InnerFamilies::IPV4);
    assert_eq!(t.mss_clamp, MssClamp::Auto);
    assert!(t.addresses.is_empty());
    assert_eq!(t.tclass, TrafficClass::Fixed(0));
    assert_eq!(t.hop_limit, 64);
    assert_eq!(t.route_table, MAIN_TABLE);
    assert!(t.enabled);
}

#[test]
fn every_key_is_read() {
    let text = r#"
[gateway]
control_socket = "/run/test/v6gate.sock"
pin_table = 7000
pin_rule_priority = 90
ipv4_forwarding = true
ipv6_forwarding = false
route_metric = 1024

[[tunnel]]
name = "all"
device = "tun-all"
mode = "any"
local = "2001:db8:a::1"
remote = "2001:db8:b::1"
encap_limit = 4
mtu = 1400
routes = ["203.0.113.0/24", "2001:db8:c::/48"]
allowed_sources = ["203.0.113.0/25"]
inner_families = ["ipv6", "ipv4"]
mss_clamp = 1300
address = "198.51.100.1/32"
tclass = "inherit"
hop_limit = 255
underlay_mtu = 9000
route_table = 100
enabled = false
"#;
    let c = valid(text);
    let g = &c.gateway;
    assert_eq!(g.control_socket.to_str(), Some("/run/test/v6gate.sock"));
    assert_eq!(
        (g.pin_table, g.pin_rule_priority, g.route_metric),
        (7000, 90, 1024)
    );
    assert_eq!(
        (g.ipv4_forwarding, g.ipv6_forwarding),
        (Some(true), Some(false))
    );
    let t = &c.tunnels[0];
    assert_eq!(t.device, "tun-all");
    assert_eq!(t.mode, Mode::Any);
    assert_eq!(t.encap_limit, Some(4));
    assert_eq!(t.mtu, Some(1400));
    assert_eq!(
        t.routes,
        vec![net("203.0.113.0/24"), net("2001:db8:c::/48")]
    );
    assert_eq!(t.allowed_sources, vec![net("203.0.113.0/25")]);
    assert_eq!(t.inner_families, InnerFamilies::BOTH);
    assert_eq!(t.mss_clamp, MssClamp::Fixed(1300));
    assert_eq!(t.addresses, vec![net("198.51.100.1/32")]);
    assert_eq!(t.tclass, TrafficClass::Inherit);
    assert_eq!(t.hop_limit, 255);
    assert_eq!(t.paths[0].underlay_mtu, Some(9000));
    assert_eq!(t.route_table, 100);
    assert!(!t.enabled);
}

#[test]
fn empty_file_is_a_gateway_without_tunnels() {
    let c = valid("");
    assert!(c.tunnels.is_empty());
    assert_eq!(c.gateway, control::Gateway::default());
}

#[test]
fn duplicate_tunnel_names() {
    let text = tunnel("home", "2001:db8:a::2", "")
        + &tunnel("home", "2001:db8:a::3", "device = \"other\"\n");
    let e = invalid(&text);
    let second_name = text.match_indices("name = \"home\"").nth(1).unwrap().0;
    let line = text[..second_name].matches('\n').count() + 1;
    has_problem(&e, "tunnel[1].name", line, "already the name of tunnel[0]");
    assert_eq!(e.diagnostics().len(), 1, "{e}");
}

#[test]
fn duplicate_devices_including_derived_ones() {
    let text = tunnel("home", "2001:db8:a::2", "")
        + &tunnel("b", "2001:db8:a::3", "device = \"v6g-home\"\n");
    only_problem(
        &text,
        "tunnel[1].device",
        "already the device of tunnel[0]",
        "device = \"v6g-home\"",
    );
}

#[test]
fn device_names_follow_linux_rules() {
    for bad in ["", "sixteen-bytes-xx", "has space", "a/b", "a:b", ".", ".."] {
        let text = tunnel("home", "2001:db8:a::2", &format!("device = \"{bad}\"\n"));
        only_problem(&text, "tunnel[0].device", "interface name", "device =");
    }
    valid(&tunnel(
        "home",
        "2001:db8:a::2",
        "device = \"fifteen-bytes-x\"\n",
    ));
}

#[test]
fn derived_device_too_long_names_the_name() {
    let text = tunnel("twelve-chars", "2001:db8:a::2", "");
    only_problem(
        &text,
        "tunnel[0].name",
        "\"v6g-twelve-chars\", is 16 bytes, longer than 15",
        "name =",
    );
    valid(&tunnel(
        "twelve-chars",
        "2001:db8:a::2",
        "device = \"v6g-12\"\n",
    ));
    valid(&tunnel("eleven-char", "2001:db8:a::2", ""));
}

#[test]
fn tunnel_names_are_restricted() {
    let text = tunnel("no spaces", "2001:db8:a::2", "device = \"x\"\n");
    only_problem(&text, "tunnel[0].name", "A-Z a-z 0-9", "name =");
}

#[test]
fn local_and_remote_differ() {
    let text = tunnel("home", "2001:db8:a::1", "");
    only_problem(
        &text,
        "tunnel[0].remote",
        "same address as `local`",
        "remote =",
    );
}

#[test]
fn endpoints_are_unicast() {
    for (addr, why) in [
        ("::", "unspecified"),
        ("::1", "loopback"),
        ("ff02::1", "multicast"),
        ("fe80::1", "link-local"),
        ("::ffff:198.51.100.1", "IPv4-mapped"),
    ] {
        only_problem(
            &tunnel("home", addr, ""),
            "tunnel[0].remote",
            why,
            "remote =",
        );
        let text = tunnel("home", "2001:db8:a::2", "").replace("2001:db8:a::1", addr);
        only_problem(&text, "tunnel[0].local", why, "local =");
    }
    for (addr, why) in [
        ("0.0.0.0", "unspecified"),
        ("127.0.0.1", "loopback"),
        ("224.0.0.5", "multicast"),
        ("255.255.255.255", "broadcast"),
    ] {
        let text = tunnel("home", addr, "").replace("2001:db8:a::1", "198.18.0.1");
        only_problem(&text, "tunnel[0].remote", why, "remote =");
    }
    only_problem(
        &tunnel("home", "198.51.100.1", ""),
        "tunnel[0].remote",
        "198.51.100.1 is IPv4, but local 2001:db8:a::1 is IPv6; both ends of a path are of one family",
        "remote =",
    );
    // A name waits for its AAAA record (the family of `local`): unspecified until resolved.
    let named = valid(&tunnel("home", "Peer.Example.NET", ""));
    let path = &named.tunnels[0].paths[0];
    assert_eq!(path.remote_name.as_deref(), Some("peer.example.net"));
    assert_eq!(path.remote, "::".parse::<IpAddr>().unwrap());
    assert!(!path.is_resolved());
    only_problem(
        &tunnel("home", "peer_1.example.net", ""),
        "tunnel[0].remote",
        "expected an address or a host name: \"peer_1\" holds a character other than",
        "remote =",
    );
    only_problem(
        &tunnel("home", "2001:db8::zz", ""),
        "tunnel[0].remote",
        "expected an IPv4 or IPv6 address",
        "remote =",
    );
}

#[test]
fn mode_is_one_of_six() {
    let text = tunnel("home", "2001:db8:a::2", "").replace("\"ipip6\"", "\"gre\"");
    only_problem(
        &text,
        "tunnel[0].mode",
        "expected one of \"ipip6\", \"ip6ip6\", \"any\", \"ipsec\", \"map-e\", \"ds-lite\", \
         found \"gre\"",
        "mode =",
    );
}

#[test]
fn route_families_follow_mode() {
    let text = tunnel(
        "home",
        "2001:db8:a::2",
        "routes = [\"203.0.113.0/24\", \"2001:db8:c::/48\"]\n",
    );
    only_problem(
        &text,
        "tunnel[0].routes[1]",
        "carries only IPv4",
        "routes =",
    );

    let text = tunnel("home", "2001:db8:a::2", "routes = [\"203.0.113.0/24\"]\n")
        .replace("ipip6", "ip6ip6");
    only_problem(
        &text,
        "tunnel[0].routes[0]",
        "carries only IPv6",
        "routes =",
    );

    let text = tunnel(
        "home",
        "2001:db8:a::2",
        "allowed_sources = [\"2001:db8:c::/48\"]\n",
    );
    only_problem(
        &text,
        "tunnel[0].allowed_sources[0]",
        "carries only IPv4",
        "allowed_sources =",
    );

    let text = tunnel(
        "home",
        "2001:db8:a::2",
        "routes = [\"203.0.113.0/24\", \"2001:db8:c::/48\"]\n",
    )
    .replace("ipip6", "any");
    valid(&text);
}

#[test]
fn routes_outside_inner_families_are_rejected() {
    let text = tunnel(
        "home",
        "2001:db8:a::2",
        "inner_families = [\"ipv4\"]\nroutes = [\"2001:db8:c::/48\"]\n",
    )
    .replace("ipip6", "any");
    only_problem(
        &text,
        "tunnel[0].routes[0]",
        "inner_families leaves out",
        "routes =",
    );
}

#[test]
fn inner_families_within_mode() {
    let text = tunnel(
        "home",
        "2001:db8:a::2",
        "inner_families = [\"ipv4\", \"ipv6\"]\n",
    );
    only_problem(
        &text,
        "tunnel[0].inner_families[1]",
        "does not carry ipv6",
        "inner_families =",
    );
    let text = tunnel("home", "2001:db8:a::2", "inner_families = [\"ipx\"]\n");
    only_problem(
        &text,
        "tunnel[0].inner_families[0]",
        "expected \"ipv4\" or \"ipv6\"",
        "inner_families =",
    );
    let text = tunnel("home", "2001:db8:a::2", "inner_families = []\n");
    only_problem(
        &text,
        "tunnel[0].inner_families",
        "at least one family",
        "inner_families =",
    );

    let any =
        tunnel("home", "2001:db8:a::2", "inner_families = [\"ipv4\"]\n").replace("ipip6", "any");
    assert_eq!(valid(&any).tunnels[0].inner_families, InnerFamilies::IPV4);
    let any = tunnel("home", "2001:db8:a::2", "").replace("ipip6", "any");
    assert_eq!(valid(&any).tunnels[0].inner_families, InnerFamilies::BOTH);
}

#[test]
fn mtu_bounds() {
    for bad in [67, 65496, -1] {
        let text = tunnel("home", "2001:db8:a::2", &format!("mtu = {bad}\n"));
        only_problem(
            &text,
            "tunnel[0].mtu",
            &format!("expected an integer 68..=65495, found {bad}"),
            "mtu =",
        );
    }
    for good in [68, 1279, 65495] {
        let text = tunnel("home", "2001:db8:a::2", &format!("mtu = {good}\n"));
        assert_eq!(valid(&text).tunnels[0].mtu, Some(good));
    }
}

#[test]
fn mtu_at_least_1280_when_ipv6_is_carried() {
    let text = tunnel("home", "2001:db8:a::2", "mtu = 1279\n").replace("ipip6", "any");
    only_problem(&text, "tunnel[0].mtu", "1280..=65495", "mtu =");
    let text = tunnel(
        "home",
        "2001:db8:a::2",
        "mtu = 1279\ninner_families = [\"ipv4\"]\n",
    )
    .replace("ipip6", "any");
    valid(&text);
}

#[test]
fn encap_limit_values() {
    let text = tunnel("home", "2001:db8:a::2", "encap_limit = 300\n");
    let e = invalid(&text);
    let line = line_of(&text, "encap_limit");
    assert_eq!(
        e.to_string(),
        format!(
            "test.toml:{line}:15: tunnel[0].encap_limit: expected \"none\" or an integer 0..=255, found 300"
        )
    );
    for (bad, shown) in [
        ("-1", "-1"),
        ("\"four\"", "\"four\""),
        ("true", "true"),
        ("4.0", "4.0"),
        ("[4]", "an array"),
    ] {
        let text = tunnel("home", "2001:db8:a::2", &format!("encap_limit = {bad}\n"));
        only_problem(
            &text,
            "tunnel[0].encap_limit",
            &format!("found {shown}"),
            "encap_limit",
        );
    }
    for (good, want) in [("0", Some(0)), ("255", Some(255)), ("\"none\"", None)] {
        let text = tunnel("home", "2001:db8:a::2", &format!("encap_limit = {good}\n"));
        assert_eq!(valid(&text).tunnels[0].encap_limit, want);
    }
}

#[test]
fn mss_clamp_values() {
    for bad in ["87", "65496", "\"on\""] {
        let text = tunnel("home", "2001:db8:a::2", &format!("mss_clamp = {bad}\n"));
        only_problem(
            &text,
            "tunnel[0].mss_clamp",
            "expected \"auto\", \"off\" or an integer 88..=65495",
            "mss_clamp",
        );
    }
    for (good, want) in [
        ("88", MssClamp::Fixed(88)),
        ("\"off\"", MssClamp::Off),
        ("\"auto\"", MssClamp::Auto),
    ] {
        let text = tunnel("home", "2001:db8:a::2", &format!("mss_clamp = {good}\n"));
        assert_eq!(valid(&text).tunnels[0].mss_clamp, want);
    }
}

#[test]
fn tclass_values() {
    let text = tunnel("home", "2001:db8:a::2", "tclass = 256\n");
    only_problem(
        &text,
        "tunnel[0].tclass",
        "\"inherit\" or an integer 0..=255, found 256",
        "tclass",
    );
    let text = tunnel("home", "2001:db8:a::2", "tclass = 0xb8\n");
    assert_eq!(valid(&text).tunnels[0].tclass, TrafficClass::Fixed(0xb8));
}

#[test]
fn hop_limit_bounds() {
    for bad in [0, 256] {
        let text = tunnel("home", "2001:db8:a::2", &format!("hop_limit = {bad}\n"));
        only_problem(&text, "tunnel[0].hop_limit", "1..=255", "hop_limit");
    }
    let text = tunnel("home", "2001:db8:a::2", "hop_limit = 1\n");
    assert_eq!(valid(&text).tunnels[0].hop_limit, 1);
}

#[test]
fn underlay_mtu_is_an_ipv6_link_mtu() {
    let text = tunnel("home", "2001:db8:a::2", "underlay_mtu = 1279\n");
    only_problem(
        &text,
        "tunnel[0].underlay_mtu",
        "1280..=65535",
        "underlay_mtu",
    );
}

#[test]
fn route_table_values() {
    let text = tunnel("home", "2001:db8:a::2", "route_table = \"main\"\n");
    assert_eq!(valid(&text).tunnels[0].route_table, 254);
    let text = tunnel("home", "2001:db8:a::2", "route_table = 254\n");
    assert_eq!(valid(&text).tunnels[0].route_table, 254);
    for (bad, why) in [
        ("255", "`local` table"),
        ("0", "1..="),
        ("\"pppoe\"", "\"main\" or a routing table id"),
    ] {
        let text = tunnel("home", "2001:db8:a::2", &format!("route_table = {bad}\n"));
        only_problem(&text, "tunnel[0].route_table", why, "route_table");
    }
    let text = tunnel("home", "2001:db8:a::2", "route_table = 6464\n");
    only_problem(
        &text,
        "tunnel[0].route_table",
        "is gateway.pin_table",
        "route_table",
    );
}

#[test]
fn gateway_values() {
    only_problem(
        "[gateway]\npin_table = 254\n",
        "gateway.pin_table",
        "`main` table",
        "pin_table",
    );
    only_problem(
        "[gateway]\npin_rule_priority = 32766\n",
        "gateway.pin_rule_priority",
        "1..=32765",
        "pin_rule",
    );
    only_problem(
        "[gateway]\npin_rule_priority = 0\n",
        "gateway.pin_rule_priority",
        "before `main`",
        "pin_rule",
    );
    only_problem(
        "[gateway]\ncontrol_socket = \"v6gate.sock\"\n",
        "gateway.control_socket",
        "absolute path",
        "control_socket",
    );
    only_problem(
        "[gateway]\nroute_metric = -1\n",
        "gateway.route_metric",
        "0..=4294967295",
        "route_metric",
    );
    only_problem(
        "[gateway]\nipv4_forwarding = \"yes\"\n",
        "gateway.ipv4_forwarding",
        "expected a boolean",
        "ipv4_forwarding",
    );
}

#[test]
fn routes_must_not_overlap_between_tunnels() {
    let text = tunnel("a", "2001:db8:a::2", "routes = [\"203.0.113.0/24\"]\n")
        + &tunnel(
            "b",
            "2001:db8:a::3",
            "routes = [\"198.51.100.0/24\", \"203.0.113.128/25\"]\n",
        );
    let e = invalid(&text);
    let line = last_line_starting(&text, "routes");
    let d = has_problem(
        &e,
        "tunnel[1].routes[1]",
        line,
        "overlaps 203.0.113.0/24 of tunnel[0]",
    );
    assert!(d.message.contains("in table 254"), "{}", d.message);
    assert_eq!(e.diagnostics().len(), 1, "{e}");

    let same = tunnel("a", "2001:db8:a::2", "routes = [\"203.0.113.0/24\"]\n")
        + &tunnel("b", "2001:db8:a::3", "routes = [\"203.0.113.0/24\"]\n");
    assert_eq!(invalid(&same).key(), "tunnel[1].routes[0]");
}

#[test]
fn overlapping_routes_in_different_tables_are_fine() {
    let text = tunnel("a", "2001:db8:a::2", "routes = [\"203.0.113.0/24\"]\n")
        + &tunnel(
            "b",
            "2001:db8:a::3",
            "routes = [\"203.0.113.0/24\"]\nroute_table = 300\n",
        );
    valid(&text);
}

#[test]
fn a_default_route_beside_specific_routes_is_fine() {
    let text = tunnel("vps", "2001:db8:a::2", "routes = [\"0.0.0.0/0\"]\n")
        + &tunnel("site", "2001:db8:a::3", "routes = [\"203.0.113.0/24\"]\n");
    valid(&text);
    let two_defaults = tunnel("vps", "2001:db8:a::2", "routes = [\"0.0.0.0/0\"]\n")
        + &tunnel("vps2", "2001:db8:a::3", "routes = [\"0.0.0.0/0\"]\n");
    assert_eq!(invalid(&two_defaults).key(), "tunnel[1].routes[0]");
}

#[test]
fn disabled_tunnels_do_not_clash() {
    let text = tunnel("a", "2001:db8:a::2", "routes = [\"203.0.113.0/24\"]\n")
        + &tunnel(
            "b",
            "2001:db8:a::2",
            "routes = [\"203.0.113.0/24\"]\nenabled = false\n",
        );
    let c = valid(&text);
    assert_eq!(c.enabled_tunnels().count(), 1);
}

#[test]
fn one_tunnel_per_endpoint_pair() {
    let text = tunnel("a", "2001:db8:a::2", "") + &tunnel("b", "2001:db8:a::2", "");
    let e = invalid(&text);
    let line = last_line_starting(&text, "remote");
    has_problem(
        &e,
        "tunnel[1].remote",
        line,
        "already runs between 2001:db8:a::1 and 2001:db8:a::2",
    );
    assert_eq!(e.diagnostics().len(), 1, "{e}");
}

/// Scenario S0: the tunnel routes the prefix its own remote lives in. Endpoint pinning keeps the
/// outer packets on the underlay, so this is a valid config, not a loop.
#[test]
fn route_covering_own_remote_is_valid() {
    let text = tunnel(
        "office",
        "2001:db8:4000:22::1",
        "routes = [\"2001:db8:4000:22::/64\", \"::/0\"]\naddress = \"2001:db8:4000:22::10/64\"\n",
    )
    .replace("ipip6", "ip6ip6");
    let c = valid(&text);
    let t = &c.tunnels[0];
    assert!(t.routes[0].contains(&t.paths[0].remote));
}

#[test]
fn prefixes_are_checked() {
    let text = tunnel("home", "2001:db8:a::2", "routes = [\"203.0.113.1/24\"]\n");
    only_problem(
        &text,
        "tunnel[0].routes[0]",
        "host bits set; the prefix is 203.0.113.0/24",
        "routes",
    );
    let text = tunnel("home", "2001:db8:a::2", "routes = [\"203.0.113.0/33\"]\n");
    only_problem(&text, "tunnel[0].routes[0]", "expected a prefix", "routes");
    let text = tunnel(
        "home",
        "2001:db8:a::2",
        "routes = [\"203.0.113.0/24\", \"203.0.113.0/24\"]\n",
    );
    only_problem(
        &text,
        "tunnel[0].routes[1]",
        "already listed at [0]",
        "routes",
    );
    let text = tunnel("home", "2001:db8:a::2", "routes = [\"203.0.113.7\"]\n");
    assert_eq!(valid(&text).tunnels[0].routes, vec![net("203.0.113.7/32")]);
}

#[test]
fn addresses_are_checked() {
    for (bad, why) in [
        ("\"198.51.100.1/33\"", "address with prefix length"),
        ("\"x\"", "address with prefix length"),
        ("\"224.0.0.1/32\"", "cannot be an interface address"),
        ("\"0.0.0.0/0\"", "cannot be an interface address"),
        ("\"2001:db8::1/64\"", "does not carry"),
        ("7", "expected an address string"),
    ] {
        let text = tunnel("home", "2001:db8:a::2", &format!("address = {bad}\n"));
        only_problem(&text, "tunnel[0].address", why, "address =");
    }
    let text = tunnel(
        "home",
        "2001:db8:a::2",
        "address = [\"198.51.100.1/30\", \"bad\"]\n",
    );
    only_problem(
        &text,
        "tunnel[0].address[1]",
        "address with prefix length",
        "address =",
    );
    let text = tunnel(
        "home",
        "2001:db8:a::2",
        "address = [\"198.51.100.1/30\", \"198.51.100.5\"]\n",
    );
    assert_eq!(
        valid(&text).tunnels[0].addresses,
        vec![net("198.51.100.1/30"), net("198.51.100.5/32")]
    );
}

#[test]
fn unknown_keys_are_named() {
    let text = tunnel("home", "2001:db8:a::2", "encap = 4\n");
    only_problem(&text, "tunnel[0].encap", "unknown field `encap`", "encap =");
    only_problem(
        "[gateway]\nforwarding = true\n",
        "gateway.forwarding",
        "unknown field `forwarding`",
        "forwarding",
    );
    only_problem(
        "[[peer]]\nname = \"x\"\n",
        "peer",
        "unknown field `peer`",
        "[[peer]]",
    );
}

#[test]
fn missing_required_keys_are_named() {
    let text =
        "[gateway]\n\n[[tunnel]]\nname = \"home\"\nmode = \"ipip6\"\nlocal = \"2001:db8:a::1\"\n";
    only_problem(
        text,
        "tunnel[0].remote",
        "missing field `remote`",
        "[[tunnel]]",
    );
}

#[test]
fn wrong_types_are_named() {
    let text = tunnel("home", "2001:db8:a::2", "mtu = \"1400\"\n");
    only_problem(
        &text,
        "tunnel[0].mtu",
        "invalid type: string \"1400\", expected an integer",
        "mtu",
    );
    let text = tunnel("home", "2001:db8:a::2", "routes = \"203.0.113.0/24\"\n");
    only_problem(&text, "tunnel[0].routes", "invalid type: string", "routes");
    only_problem("gateway = 3\n", "gateway", "expected a table", "gateway");
}

#[test]
fn syntax_errors_have_a_line() {
    let text = "[gateway]\npin_table = 7\n[[tunnel]\n";
    let e = invalid(text);
    assert_eq!(e.line(), Some(3), "{e}");
    assert!(e.to_string().starts_with("test.toml:3:"), "{e}");
}

#[test]
fn all_problems_reported_at_once_in_file_order() {
    let text = tunnel("a", "2001:db8:a::2", "hop_limit = 0\nencap_limit = 300\n")
        + &tunnel("b", "2001:db8:a::2", "mtu = 10\n")
        + "\n[gateway]\npin_table = 255\n";
    let e = invalid(&text);
    let keys: Vec<&str> = e.diagnostics().iter().map(|d| d.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "tunnel[0].hop_limit",
            "tunnel[0].encap_limit",
            "tunnel[1].mtu",
            "gateway.pin_table"
        ],
        "{e}"
    );
    let lines: Vec<usize> = e
        .diagnostics()
        .iter()
        .map(|d| d.location.unwrap().0)
        .collect();
    assert!(lines.is_sorted(), "{lines:?}");
    assert_eq!(e.to_string().lines().count(), 4, "{e}");
    assert_eq!(e.key(), "tunnel[0].hop_limit");
}

#[test]
fn load_reads_a_file_and_names_it() {
    let dir = std::env::temp_dir().join(format!("control-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("v6gate.toml");
    std::fs::write(&path, tunnel("home", "2001:db8:a::2", "mtu = 1\n")).unwrap();
    let e = control::Config::load(&path).unwrap_err();
    assert!(
        e.to_string()
            .starts_with(&format!("{}:6:7: tunnel[0].mtu: ", path.display())),
        "{e}"
    );
    std::fs::write(&path, tunnel("home", "2001:db8:a::2", "")).unwrap();
    assert_eq!(control::Config::load(&path).unwrap().tunnels.len(), 1);
    std::fs::remove_dir_all(&dir).unwrap();

    let e = control::Config::load(&dir.join("absent.toml")).unwrap_err();
    assert!(e.to_string().contains("absent.toml: cannot read: "), "{e}");
    assert!(std::error::Error::source(&e).is_some());
    assert_eq!(e.line(), None);
}

#[test]
fn inline_and_dotted_forms_locate_the_same_keys() {
    let text = "gateway.pin_table = 255\n\
                tunnel = [\n  { name = \"a\", mode = \"ipip6\", local = \"2001:db8:a::1\", remote = \"2001:db8:a::2\" },\n  \
                { name = \"b\", mode = \"ipip6\", local = \"2001:db8:a::1\", remote = \"2001:db8:a::3\", hop_limit = 0 },\n]\n";
    let e = invalid(text);
    has_problem(&e, "gateway.pin_table", 1, "`local` table");
    let d = has_problem(&e, "tunnel[1].hop_limit", 4, "1..=255");
    let col = text.lines().nth(3).unwrap().find("0 }").unwrap() + 1;
    assert_eq!(d.location, Some((4, col)));
}
