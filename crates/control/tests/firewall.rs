//! `[firewall]`, `[[zone]]`, `[[allow]]`, `[[port_forward]]`, `[[table]]`, `[[rule]]` and
//! `[sysctl]`: what validates to what, what is refused with which key, and the ruleset and
//! policy routing a config renders to.

mod support;

use control::Config;
use control::firewall::routing;
use control::firewall::ruleset::ruleset;
use control::firewall::{AllowTarget, Family, POLICY_MARK_BASE, PortRange, Protocol, Verdict};
use serde_json::{Value, json};
use support::*;

/// The configuration of the field report (S2), as written there.
const S2: &str = r#"
[firewall]
input = "drop"
forward = "drop"
management = ["tcp/22"]

[[zone]]
name = "wan"
devices = ["eth0"]
[[zone]]
name = "wan_pppoe"
devices = ["ppp0"]
masquerade = true
mss_clamp = true
[[zone]]
name = "lan"
devices = ["br0"]
tunnels = ["home"]
input = "accept"
forward_to = ["wan", "wan_pppoe"]

[[allow]]
name = "server-https"
from = "wan"
to = "lan"
family = "ipv6"
proto = ["tcp", "udp"]
dest = ["2001:db8:1::5/128"]
ports = "80 443 8000:8999"

[[port_forward]]
name = "https-v4"
from = "wan_pppoe"
proto = ["tcp"]
port = 443
to = "198.51.100.5"
to_port = 443

[[table]]
name = "pppoe"
id = 300
routes = [{ dst = "0.0.0.0/0", device = "ppp0", metric = 10 }]

[[rule]]
name = "server-via-pppoe"
from = "198.51.100.5/32"
iif = "br0"
table = "pppoe"

[sysctl]
"net.ipv4.conf.all.accept_redirects" = "0"
"#;

fn s2() -> String {
    format!(
        "{}{S2}",
        tunnel("home", "2001:db8:b::1", "routes = [\"203.0.113.0/24\"]\n")
    )
}

#[test]
fn the_field_config_validates_to_its_model() {
    let c = valid(&s2());
    let f = c.firewall.as_ref().expect("a firewall");
    assert_eq!((f.input, f.forward), (Verdict::Drop, Verdict::Drop));
    assert_eq!(f.management[0].to_string(), "tcp/22");
    assert_eq!(f.zones.len(), 3);
    let lan = f.zone("lan").unwrap();
    assert_eq!(lan.tunnels, ["home"]);
    assert_eq!(lan.input, Some(Verdict::Accept));
    assert_eq!(lan.forward, None);
    assert!(f.zone("wan_pppoe").unwrap().masquerade);
    let a = &f.allows[0];
    assert_eq!(a.to, AllowTarget::Zone("lan".into()));
    assert_eq!(a.family, Family::Ipv6);
    assert_eq!(a.protocols, [Protocol::Tcp, Protocol::Udp]);
    assert_eq!(
        a.ports,
        [
            PortRange::single(80),
            PortRange::single(443),
            PortRange {
                first: 8000,
                last: 8999
            }
        ]
    );
    let p = &f.port_forwards[0];
    assert_eq!(
        (p.port, p.to.to_string(), p.to_port),
        (443, "198.51.100.5".into(), 443)
    );
    assert_eq!(c.routing.tables[0].id, 300);
    let rule = &c.routing.rules[0];
    assert_eq!((rule.table, rule.priority, rule.mark), (300, 1000, None));
    assert_eq!(rule.family, Family::Ipv4);
    assert_eq!(c.sysctls[0].key, "net/ipv4/conf/all/accept_redirects");
    // Zones are uplinks when forwarded to; the LAN is not.
    assert!(f.is_uplink(f.zone("wan").unwrap()));
    assert!(!f.is_uplink(lan));
}

#[test]
fn without_a_firewall_table_nothing_is_installed() {
    let c = valid(&tunnel("a", "2001:db8:b::1", ""));
    assert!(c.firewall.is_none());
    assert!(ruleset(&c, |_, _| None).is_none());
    let text = "[[zone]]\nname = \"wan\"\ndevices = [\"eth0\"]\n";
    only_problem(text, "zone[0]", "needs a [firewall] table", "[[zone]]");
}

/// Replaces the first occurrence of `from` in the S2 config by `to`.
fn s2_with(from: &str, to: &str) -> String {
    let text = s2();
    assert!(text.contains(from), "{from:?} not in the S2 config");
    text.replacen(from, to, 1)
}

#[test]
fn unknown_zone_names_are_refused_with_the_key() {
    let text = s2_with(
        "from = \"wan\"\nto = \"lan\"",
        "from = \"wna\"\nto = \"lan\"",
    );
    only_problem(
        &text,
        "allow[0].from",
        "no [[zone]] is named \"wna\"",
        "from = \"wna\"",
    );
    let text = s2_with(
        "forward_to = [\"wan\", \"wan_pppoe\"]",
        "forward_to = [\"wan\", \"pppoe\"]",
    );
    only_problem(
        &text,
        "zone[2].forward_to[1]",
        "no [[zone]] is named \"pppoe\"",
        "forward_to",
    );
    let text = s2_with("tunnels = [\"home\"]", "tunnels = [\"hom\"]");
    only_problem(
        &text,
        "zone[2].tunnels[0]",
        "no [[tunnel]] is named \"hom\"",
        "tunnels =",
    );
    let text = s2_with("from = \"wan_pppoe\"\nproto", "from = \"lan6\"\nproto");
    only_problem(
        &text,
        "port_forward[0].from",
        "no [[zone]]",
        "from = \"lan6\"",
    );
}

#[test]
fn ports_use_openwrt_syntax() {
    for (bad, needle) in [
        ("\"80,443\"", "not a port"),
        ("\"8000-8999\"", "ranges written with ':'"),
        ("\"9000:8000\"", "runs backwards"),
        ("\"0\"", "port 0"),
        ("70000", "expected a port 1-65535"),
        ("\"\"", "empty"),
    ] {
        let text = s2_with("ports = \"80 443 8000:8999\"", &format!("ports = {bad}"));
        only_problem(&text, "allow[0].ports", needle, "ports =");
    }
    let text = s2_with(
        "proto = [\"tcp\", \"udp\"]\ndest",
        "proto = [\"icmpv6\"]\ndest",
    );
    only_problem(&text, "allow[0].ports", "icmpv6 has no ports", "ports =");
}

#[test]
fn families_and_addresses_must_agree() {
    let text = s2_with("family = \"ipv6\"", "family = \"ipv4\"");
    only_problem(&text, "allow[0].dest[0]", "is not ipv4", "dest =");
    let text = s2_with("family = \"ipv6\"", "family = \"ip6\"");
    only_problem(
        &text,
        "allow[0].family",
        "expected \"ipv4\", \"ipv6\" or \"any\"",
        "family =",
    );
    let text = s2_with(
        "proto = [\"tcp\", \"udp\"]\ndest",
        "proto = [\"icmp\"]\ndest",
    );
    let e = invalid(&text);
    has_problem(
        &e,
        "allow[0].proto",
        line_of(&text, "proto = [\"icmp\"]"),
        "icmp exists only in ipv4",
    );
    let text = s2_with(
        "dest = [\"2001:db8:1::5/128\"]",
        "dest = [\"2001:db8:1::5/64\"]",
    );
    only_problem(
        &text,
        "allow[0].dest[0]",
        "host bits set; the prefix is 2001:db8:1::/64",
        "dest =",
    );
    let text = s2_with(
        "from = \"198.51.100.5/32\"",
        "from = \"198.51.100.5/32\"\nto = \"2001:db8::/32\"",
    );
    only_problem(
        &text,
        "rule[0].to",
        "not of the family of `from`",
        "to = \"2001:db8::/32\"",
    );
}

#[test]
fn ipip_by_name_is_refused_because_it_is_protocol_94() {
    let text = s2_with(
        "proto = [\"tcp\", \"udp\"]\ndest",
        "proto = [\"ipip\"]\ndest",
    );
    let e = invalid(&text);
    let d = has_problem(
        &e,
        "allow[0].proto[0]",
        line_of(&text, "proto = [\"ipip\"]"),
        "94",
    );
    assert!(d.message.contains("4 for IPv4 in IP"), "{}", d.message);
}

#[test]
fn zones_do_not_share_devices_or_tunnels() {
    let text = s2_with("devices = [\"ppp0\"]", "devices = [\"eth0\"]");
    let line = line_of(&text, "name = \"wan_pppoe\"") + 1;
    only_problem_on(&text, "zone[1].devices[0]", "already in zone \"wan\"", line);
}

#[test]
fn policy_tables_and_rules_are_checked() {
    let text = s2_with("id = 300", "id = 254");
    has_problem(
        &invalid(&text),
        "table[0].id",
        line_of(&text, "id = 254"),
        "kernel table",
    );
    let text = s2_with("id = 300", "id = 6464");
    has_problem(
        &invalid(&text),
        "table[0].id",
        line_of(&text, "id = 6464"),
        "pin table",
    );
    let text = s2_with("table = \"pppoe\"", "table = \"ppoe\"");
    only_problem(
        &text,
        "rule[0].table",
        "no [[table]] is named \"ppoe\"",
        "table = \"ppoe\"",
    );
    let text = s2_with("table = \"pppoe\"", "table = \"pppoe\"\npriority = 50");
    only_problem(
        &text,
        "rule[0].priority",
        "after the pin rule",
        "priority = 50",
    );
    let text = s2_with("table = \"pppoe\"", "table = \"pppoe\"\nports = \"500\"");
    only_problem(
        &text,
        "rule[0].ports",
        "ports need proto",
        "ports = \"500\"",
    );
    let text = s2_with("metric = 10 }", "}");
    let text = text.replacen("device = \"ppp0\", ", "", 1);
    only_problem(
        &text,
        "table[0].routes[0].dst",
        "needs `via`, `device` or both",
        "routes = [{",
    );
}

#[test]
fn rules_with_protocols_or_ports_get_their_own_mark() {
    let text = format!(
        "{}\n[[rule]]\nname = \"ike\"\nto = \"0.0.0.0/0\"\nproto = [\"udp\"]\nports = \"500 4500 1701\"\ntable = \"pppoe\"\n\
         [[rule]]\nname = \"esp\"\nproto = [\"esp\"]\ntable = 300\npriority = 2000\n",
        s2()
    );
    let c = valid(&text);
    let marks: Vec<Option<u32>> = c.routing.rules.iter().map(|r| r.mark).collect();
    assert_eq!(
        marks,
        [None, Some(POLICY_MARK_BASE + 1), Some(POLICY_MARK_BASE + 2)]
    );
    assert_eq!(c.routing.rules[1].priority, 1001);
    let rules: Vec<String> = routing::rules(&c).iter().map(ToString::to_string).collect();
    assert_eq!(
        rules,
        [
            "-4 priority 1000 from 198.51.100.5/32 iif br0 lookup 300",
            "-4 priority 1001 fwmark 0x76470001 lookup 300",
            "-4 priority 2000 fwmark 0x76470002 lookup 300",
            "-6 priority 2000 fwmark 0x76470002 lookup 300",
        ]
    );
    let routes: Vec<String> = routing::routes(&c)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(routes, ["0.0.0.0/0 dev ppp0 table 300 metric 10"]);
}

#[test]
fn sysctls_are_net_keys_set_in_one_place() {
    let text = s2_with(
        "\"net.ipv4.conf.all.accept_redirects\" = \"0\"",
        "\"net/ipv4/conf/eth0.100/rp_filter\" = 0\n\"net.ipv4.conf.all.send_redirects\" = false",
    );
    let c = valid(&text);
    let keys: Vec<(&str, &str)> = c
        .sysctls
        .iter()
        .map(|s| (s.key.as_str(), s.value.as_str()))
        .collect();
    assert!(
        keys.contains(&("net/ipv4/conf/eth0.100/rp_filter", "0")),
        "{keys:?}"
    );
    assert!(
        keys.contains(&("net/ipv4/conf/all/send_redirects", "0")),
        "{keys:?}"
    );
    let plan = control::plan(&c, |_, _| 1500);
    assert!(
        plan.sysctls
            .iter()
            .any(|s| s.key == "net/ipv4/conf/eth0.100/rp_filter")
    );
    for bad in ["kernel.panic", "net.ipv4..x", "net/../../etc"] {
        let text = s2_with(
            "\"net.ipv4.conf.all.accept_redirects\"",
            &format!("{bad:?}"),
        );
        only_problem(
            &text,
            &format!("sysctl.{bad}"),
            "expected a net.* sysctl",
            bad,
        );
    }
    let text = format!(
        "[gateway]\nipv4_forwarding = true\n{}",
        s2_with(
            "\"net.ipv4.conf.all.accept_redirects\"",
            "\"net.ipv4.ip_forward\""
        )
    );
    only_problem(
        &text,
        "sysctl.net.ipv4.ip_forward",
        "already set by gateway.ipv4_forwarding",
        "ip_forward\" =",
    );
}

// The rendered ruleset, as the JSON `nft -j -f` reads.

fn json_of(c: &Config, underlay: Option<&str>) -> Value {
    let r = ruleset(c, |_, _| underlay.map(str::to_owned)).expect("a firewall");
    let mut objects = vec![json!({"table": serde_json::to_value(&r.table).unwrap()})];
    objects.extend(r.content.iter().map(|o| serde_json::to_value(o).unwrap()));
    Value::Array(objects)
}

fn rules_of<'v>(json: &'v Value, chain: &str) -> Vec<&'v Value> {
    json.as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o.get("rule"))
        .filter(|r| r["chain"] == chain)
        .map(|r| &r["expr"])
        .collect()
}

fn chain<'v>(json: &'v Value, name: &str) -> Option<&'v Value> {
    json.as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o.get("chain"))
        .find(|c| c["name"] == name)
}

fn text(v: &Value) -> String {
    v.to_string()
}

#[test]
fn input_opens_with_management_then_conntrack() {
    let j = json_of(&valid(&s2()), None);
    assert_eq!(j[0]["table"], json!({"family": "inet", "name": "v6gate"}));
    let input = chain(&j, "input").unwrap();
    assert_eq!(
        (
            input["hook"].as_str(),
            input["policy"].as_str(),
            input["type"].as_str()
        ),
        (Some("input"), Some("drop"), Some("filter"))
    );
    let rules = rules_of(&j, "input");
    assert!(
        text(rules[0]).contains("\"dport\"") && text(rules[0]).contains("22"),
        "{}",
        rules[0]
    );
    assert!(text(rules[1]).contains("\"vmap\""), "{}", rules[1]);
    for state in ["established", "related", "invalid"] {
        assert!(text(rules[1]).contains(state));
    }
    // Ends in its counted policy.
    assert!(text(rules.last().unwrap()).contains("\"drop\""));
}

/// Numbers from the RFCs and IANA registries, written here independently of the renderer.
#[test]
fn rfc_4890_icmpv6_and_pmtu_pass() {
    let j = json_of(&valid(&s2()), None);
    let all = text(&j);
    let input = rules_of(&j, "input")
        .into_iter()
        .map(text)
        .collect::<Vec<_>>();
    // RFC 4890 4.3.1/4.4.1: unreachable 1, too big 2, time exceeded 3, parameter problem 4,
    // echo 128/129, both to the gateway and through it.
    for chain_name in ["input", "forward"] {
        let rules = rules_of(&j, chain_name)
            .into_iter()
            .map(text)
            .collect::<Vec<_>>();
        assert!(
            rules.iter().any(|r| r.contains("\"protocol\":\"icmpv6\"")
                && r.contains("{\"set\":[1,2,3,4,128,129]}")),
            "{chain_name}"
        );
        // ICMPv4 type 3 code 4 (RFC 1191).
        assert!(
            rules.iter().any(|r| r
                .contains("\"type\",\"protocol\":\"icmp\"}},\"op\":\"==\",\"right\":3}")
                && r.contains("\"code\",\"protocol\":\"icmp\"}},\"op\":\"==\",\"right\":4}")),
            "{chain_name}"
        );
    }
    // Neighbour discovery 133-136 only with hop limit 255 (RFC 4861 7.1.1), MLD 130-132 and
    // 143 only from link-local sources.
    assert!(input.iter().any(|r| r.contains("[133,134,135,136]")
        && r.contains("\"hoplimit\",\"protocol\":\"ip6\"}},\"op\":\"==\",\"right\":255")));
    assert!(
        input.iter().any(
            |r| r.contains("[130,131,132,143]") && r.contains("\"addr\":\"fe80::\",\"len\":10")
        )
    );
    // Neither is accepted in transit.
    assert!(
        !text(&Value::Array(
            rules_of(&j, "forward").into_iter().cloned().collect()
        ))
        .contains("133")
    );
    // DHCPv6 replies, server port 547 to client port 546 (RFC 8415 7.2), on uplinks only.
    let dhcp = |zone: &str| {
        rules_of(&j, &format!("input_{zone}"))
            .iter()
            .any(|r| text(r).contains("546"))
    };
    assert!(dhcp("wan") && dhcp("wan_pppoe") && !dhcp("lan"));
    assert!(all.contains("\"mangle_forward\""));
}

#[test]
fn tunnel_underlay_is_accepted_from_its_peer_only() {
    let j = json_of(&valid(&s2()), Some("eth0"));
    let rules: Vec<String> = rules_of(&j, "input").into_iter().map(text).collect();
    let underlay: Vec<&String> = rules
        .iter()
        .filter(|r| r.contains("2001:db8:b::1"))
        .collect();
    assert_eq!(underlay.len(), 1, "{rules:#?}");
    let r = underlay[0];
    // RFC 2473 IPv4-in-IPv6 is protocol 4 (IANA), not "ipip" (94).
    assert!(
        r.contains("\"l4proto\"}},\"op\":\"==\",\"right\":4}"),
        "{r}"
    );
    assert!(
        r.contains("\"saddr\",\"protocol\":\"ip6\"}},\"op\":\"==\",\"right\":\"2001:db8:b::1\""),
        "{r}"
    );
    assert!(
        r.contains("\"daddr\",\"protocol\":\"ip6\"}},\"op\":\"==\",\"right\":\"2001:db8:a::1\""),
        "{r}"
    );
    assert!(
        r.contains("\"iifname\"}},\"op\":\"==\",\"right\":\"eth0\""),
        "{r}"
    );

    let ipsec = "[[tunnel]]\nname = \"vps\"\nmode = \"ipsec\"\nlocal = \"198.18.0.1\"\nremote = \"198.18.0.2\"\n\
         local_subnets = [\"198.51.100.0/24\"]\nroutes = [\"203.0.113.0/24\"]\n[tunnel.ike]\npsk = \"x\"\n\
         [[tunnel]]\nname = \"off\"\nmode = \"ipip6\"\nlocal = \"2001:db8:a::1\"\nremote = \"2001:db8:f::1\"\nenabled = false\n\
         [firewall]\n";
    let j = json_of(&valid(ipsec), None);
    let rules: Vec<String> = rules_of(&j, "input").into_iter().map(text).collect();
    let peer: Vec<&String> = rules.iter().filter(|r| r.contains("198.18.0.2")).collect();
    assert_eq!(peer.len(), 2, "{rules:#?}");
    // IKE and NAT-T on UDP 500/4500 (RFC 7296 2, RFC 3948), ESP is protocol 50.
    assert!(
        peer[0].contains("[500,4500]") && peer[0].contains("\"udp\""),
        "{}",
        peer[0]
    );
    assert!(
        peer[1].contains("\"l4proto\"}},\"op\":\"==\",\"right\":50}"),
        "{}",
        peer[1]
    );
    assert!(!peer[0].contains("iifname"));
    assert!(
        !rules.iter().any(|r| r.contains("2001:db8:f::1")),
        "a disabled tunnel is open"
    );
}

#[test]
fn nat_and_port_forwards() {
    let j = json_of(&valid(&s2()), None);
    let dnat = rules_of(&j, "dstnat");
    assert_eq!(dnat.len(), 1);
    let d = text(dnat[0]);
    assert!(
        d.contains("\"iifname\"}},\"op\":\"==\",\"right\":\"ppp0\""),
        "{d}"
    );
    assert!(
        d.contains("{\"dnat\":{\"addr\":\"198.51.100.5\",\"family\":\"ip\",\"port\":443}}"),
        "{d}"
    );
    assert_eq!(chain(&j, "dstnat").unwrap()["prio"], -100);
    let forward: Vec<String> = rules_of(&j, "forward").into_iter().map(text).collect();
    assert!(
        forward
            .iter()
            .any(|r| r.contains("\"status\"") && r.contains("dnat") && r.contains("198.51.100.5"))
    );
    let masq: Vec<String> = rules_of(&j, "srcnat").into_iter().map(text).collect();
    assert_eq!(masq.len(), 1, "only the masquerading zone's device");
    assert!(masq[0].contains("ppp0") && masq[0].contains("ipv4") && masq[0].contains("masquerade"));
    // The pinhole goes out to the LAN's devices, for its family and ports.
    let pinhole: Vec<String> = rules_of(&j, "forward_wan").into_iter().map(text).collect();
    assert_eq!(pinhole.len(), 2, "br0 and the tunnel's device");
    assert!(
        pinhole[0].contains("\"oifname\"}},\"op\":\"==\",\"right\":\"br0\"")
            && pinhole[0].contains("2001:db8:1::5")
    );
    assert!(pinhole[0].contains("{\"range\":[8000,8999]}"));
    // forward_to accepts per target device; the LAN's tunnel devices are in the LAN zone.
    let lan: Vec<String> = rules_of(&j, "forward_lan").into_iter().map(text).collect();
    assert_eq!(lan.len(), 2);
    let dispatch: Vec<String> = rules_of(&j, "forward").into_iter().map(text).collect();
    assert!(
        dispatch
            .iter()
            .any(|r| r.contains("v6g-home") && r.contains("forward_lan"))
    );
}

#[test]
fn mixed_family_pinholes_split_by_family() {
    let text = s2_with(
        "family = \"ipv6\"\nproto = [\"tcp\", \"udp\"]\ndest = [\"2001:db8:1::5/128\"]",
        "proto = [\"tcp\"]\nsource = [\"2001:db8:9::/48\"]\ndest = [\"2001:db8:1::5\", \"198.51.100.5\"]",
    );
    let j = json_of(&valid(&text), None);
    let pinholes: Vec<String> = rules_of(&j, "forward_wan")
        .into_iter()
        .map(text_of)
        .collect();
    // IPv4 has a destination but no source of its family: nothing to match, no rule. One
    // IPv6 rule per LAN device (br0 and the tunnel's).
    assert_eq!(pinholes.len(), 2, "{pinholes:#?}");
    assert!(
        pinholes
            .iter()
            .all(|r| r.contains("\"ip6\"") && !r.contains("198.51.100.5"))
    );
}

fn text_of(v: &Value) -> String {
    v.to_string()
}

#[test]
fn marks_for_policy_rules_only_touch_unmarked_packets() {
    let config = format!(
        "{}\n[[rule]]\nname = \"esp\"\nproto = [\"esp\"]\ntable = \"pppoe\"\n",
        s2()
    );
    let j = json_of(&valid(&config), None);
    for name in ["mangle_prerouting", "mangle_output"] {
        let rules = rules_of(&j, name);
        assert_eq!(rules.len(), 1, "{name}");
        let r = text(rules[0]);
        assert!(
            r.starts_with(
                "[{\"match\":{\"left\":{\"meta\":{\"key\":\"mark\"}},\"op\":\"==\",\"right\":0}}"
            ),
            "{r}"
        );
        assert!(
            r.contains(&format!("\"value\":{}", POLICY_MARK_BASE + 1)),
            "{r}"
        );
    }
    assert_eq!(chain(&j, "mangle_output").unwrap()["type"], "route");
    // Without marked rules there are no mark chains.
    assert!(chain(&json_of(&valid(&s2()), None), "mangle_output").is_none());
}

#[test]
fn uplinks_are_zones_forwarded_to_or_masquerading() {
    // A lone VPS with one zone: it forwards nowhere, so its zone is the uplink.
    let vps = valid("[firewall]\n[[zone]]\nname = \"wan\"\ndevices = [\"eth0\"]\n");
    let f = vps.firewall.unwrap();
    assert!(f.is_uplink(&f.zones[0]));
    assert_eq!((f.input, f.forward), (Verdict::Drop, Verdict::Drop));
    assert!(vps.warnings.iter().any(|w| w.key == "firewall.management"));
    let c = valid(&s2());
    let f = c.firewall.unwrap();
    assert!(f.is_uplink(f.zone("wan_pppoe").unwrap()));
}
