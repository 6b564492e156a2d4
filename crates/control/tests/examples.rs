//! Every shipped example config parses and validates, and rejects an unknown key in any table.

mod support;

use std::path::{Path, PathBuf};

use control::ddns::{AddressSource, Family, Provider, Select, Server};
use control::softwire::{Aftr, Facts, MapRule, SoftwireKind, lower};
use control::{Config, Mode, Probe};
use ipnet::IpNet;

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// Every `*.toml` in examples/, so a new example is covered without touching this file.
fn examples() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(examples_dir())
        .expect("examples/ exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    files
}

fn load(name: &str) -> Config {
    Config::load(&examples_dir().join(name)).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn the_scenario_examples_are_shipped() {
    let names: Vec<String> = examples()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for wanted in [
        "minimal.toml",
        "s1-vps.toml",
        "s1-home.toml",
        "s4-two-paths.toml",
        "s2-server.toml",
        "s3-vps.toml",
        "s3-home.toml",
        "s2-home.toml",
        "v6plus.toml",
        "ocn.toml",
        "transix.toml",
    ] {
        assert!(
            names.iter().any(|n| n == wanted),
            "{wanted} missing from {names:?}"
        );
    }
}

#[test]
fn every_example_validates() {
    for path in examples() {
        let config = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            !config.tunnels.is_empty()
                || !config.softwires.is_empty()
                || !config.ddns.is_empty()
                || config.firewall.is_some(),
            "{} has no tunnel, softwire, ddns entry or firewall",
            path.display()
        );
        // On a common underlay every example yields MTUs its inner families can live with.
        let plan = control::plan(&config, |_, _| 1500);
        for (t, p) in config.enabled_tunnels().zip(&plan.tunnels) {
            let floor = if t.inner_families.ipv6 { 1280 } else { 68 };
            for d in &p.devices {
                assert!(
                    d.mtu >= floor,
                    "{}: {} mtu {}",
                    path.display(),
                    d.name,
                    d.mtu
                );
            }
        }
    }
}

/// Examples are copied into real configs; they must not name real networks.
#[test]
fn examples_use_documentation_prefixes_only() {
    let doc: [IpNet; 4] = [
        "2001:db8::/32",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "198.18.0.0/15",
    ]
    .map(|s| s.parse().unwrap());
    let is_doc = |net: &IpNet| net.prefix_len() == 0 || doc.iter().any(|d| d.contains(net));
    for path in examples() {
        let config = Config::load(&path).unwrap();
        for t in &config.tunnels {
            let probes = t.paths.iter().flat_map(|p| match p.probe {
                Probe::Icmp { target, source } => vec![Some(target), source],
                Probe::Keepalive | Probe::None => vec![],
            });
            // A name or a device leaves the unspecified address until resolved.
            let endpoints = t
                .paths
                .iter()
                .flat_map(|p| [p.local, p.remote])
                .filter(|a| !a.is_unspecified());
            for addr in endpoints.chain(probes.flatten()) {
                assert!(is_doc(&IpNet::from(addr)), "{}: {addr}", path.display());
            }
            for net in t.paths.iter().flat_map(|p| &p.addresses) {
                assert!(is_doc(&net.trunc()), "{}: {net}", path.display());
            }
            for net in t
                .routes
                .iter()
                .chain(&t.allowed_sources)
                .chain(&t.addresses)
            {
                assert!(is_doc(&net.trunc()), "{}: {net}", path.display());
            }
        }
        for w in &config.watches {
            let addrs = [Some(w.target), w.source, w.route.via];
            for addr in addrs.into_iter().flatten() {
                assert!(is_doc(&IpNet::from(addr)), "{}: {addr}", path.display());
            }
            assert!(is_doc(&w.route.dst), "{}: {}", path.display(), w.route.dst);
        }
        let firewall = config.firewall.iter().flat_map(|f| {
            let allows = f
                .allows
                .iter()
                .flat_map(|a| a.sources.iter().chain(&a.dest));
            let forwards = f.port_forwards.iter().map(|p| IpNet::from(p.to));
            allows.copied().chain(forwards).collect::<Vec<_>>()
        });
        let routes = config.routing.tables.iter().flat_map(|t| &t.routes);
        let rules = config
            .routing
            .rules
            .iter()
            .flat_map(|r| r.from.iter().chain(&r.to));
        for net in firewall.chain(routes.map(|r| r.dst)).chain(rules.copied()) {
            assert!(is_doc(&net), "{}: {net}", path.display());
        }
    }
}

/// Inserts an unknown key at the top level and right under every table header; each time the
/// error must name that key (with its table path) and the line it was put on.
#[test]
fn unknown_key_in_any_table_is_named() {
    const KEY: &str = "v6gate_unknown_key";
    for path in examples() {
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        // (line index to insert before, expected key path)
        let mut spots = vec![(0, KEY.to_owned())];
        let (mut tunnels, mut paths, mut watches, mut ddns) = (0, 0, 0, 0);
        let mut arrays: std::collections::HashMap<&str, usize> = Default::default();
        for (i, line) in lines.iter().enumerate() {
            let header = line.split('#').next().unwrap().trim();
            // Tables below a tunnel belong to the last one opened.
            let tunnel = tunnels.max(1) - 1;
            match header {
                "[gateway]" => spots.push((i + 1, format!("gateway.{KEY}"))),
                "[[tunnel]]" => {
                    spots.push((i + 1, format!("tunnel[{tunnels}].{KEY}")));
                    tunnels += 1;
                    paths = 0;
                }
                "[[tunnel.path]]" => {
                    spots.push((i + 1, format!("tunnel[{tunnel}].path[{paths}].{KEY}")));
                    paths += 1;
                }
                "[tunnel.health]" => spots.push((i + 1, format!("tunnel[{tunnel}].health.{KEY}"))),
                "[tunnel.ike]" => spots.push((i + 1, format!("tunnel[{tunnel}].ike.{KEY}"))),
                "[[watch]]" => {
                    spots.push((i + 1, format!("watch[{watches}].{KEY}")));
                    watches += 1;
                }
                "[firewall]" => spots.push((i + 1, format!("firewall.{KEY}"))),
                "[[zone]]" | "[[allow]]" | "[[port_forward]]" | "[[table]]" | "[[rule]]" => {
                    let name = header.trim_matches(['[', ']']);
                    let n = arrays.entry(name).or_default();
                    spots.push((i + 1, format!("{name}[{n}].{KEY}")));
                    *n += 1;
                }
                // Its keys are sysctl names: an unknown one is a bad sysctl, checked elsewhere.
                "[sysctl]" => {}
                "[[ddns]]" => {
                    spots.push((i + 1, format!("ddns[{ddns}].{KEY}")));
                    ddns += 1;
                }
                h if h.starts_with('[') => {
                    panic!("{}: test does not know table {h}", path.display())
                }
                _ => {}
            }
        }
        assert!(tunnels + ddns > 0 || arrays.contains_key("zone"));
        for (at, key) in spots {
            let mut mutated = lines.clone();
            mutated.insert(at, "v6gate_unknown_key = 1");
            let mutated = mutated.join("\n");
            let e = Config::from_toml_str(&mutated, "mutated.toml").expect_err(&format!(
                "{}: unknown key accepted at line {}",
                path.display(),
                at + 1
            ));
            // Every problem is reported; the unknown key is one of them, on its own line.
            let d = e
                .diagnostics()
                .iter()
                .find(|d| d.key == key)
                .unwrap_or_else(|| panic!("{}: {key} not named:\n{e}", path.display()));
            assert_eq!(
                d.location.map(|(l, _)| l),
                Some(at + 1),
                "{}:\n{e}",
                path.display()
            );
            assert!(d.message.contains(&format!("unknown field `{KEY}`")), "{e}");
        }
    }
}

/// The two S1 files describe the two ends of one tunnel; they must agree with each other.
#[test]
fn s1_ends_match() {
    let vps = load("s1-vps.toml");
    let home = load("s1-home.toml");
    let (v, h) = (&vps.tunnels[0], &home.tunnels[0]);
    assert_eq!((v.mode, h.mode), (Mode::Ipip6, Mode::Ipip6));
    let (vp, hp) = (&v.paths[0], &h.paths[0]);
    assert_eq!((vp.local, vp.remote), (hp.remote, hp.local));
    // The S1 trap: neither end sends the encap-limit option.
    assert_eq!((v.encap_limit, h.encap_limit), (None, None));
    // Home sends all IPv4 into the tunnel.
    assert_eq!(h.routes, vec!["0.0.0.0/0".parse::<IpNet>().unwrap()]);
    // Both ends of the tunnel link are in one subnet, and each accepts the other's address.
    let (va, ha) = (v.addresses[0], h.addresses[0]);
    assert_eq!(va.network(), ha.network());
    assert!(v.allowed_sources.iter().any(|n| n.contains(&ha.addr())));
    assert!(h.allowed_sources.iter().any(|n| n.contains(&va.addr())));
    // What the VPS routes to home is what home's LAN is: inside home's accepted sources.
    for route in &v.routes {
        assert!(h.allowed_sources.iter().any(|n| n.contains(route)));
    }
    assert_eq!(vps.gateway.ipv4_forwarding, Some(true));
    assert_eq!(home.gateway.ipv4_forwarding, Some(true));
    let plan = control::plan(&home, |_, _| 1500);
    assert_eq!(plan.tunnels[0].devices[0].mtu, 1460);
}

/// S4: an IPv6 primary and an IPv4 backup path to one peer, and a watched MAP-E default route.
#[test]
fn s4_two_paths() {
    let c = load("s4-two-paths.toml");
    let t = &c.tunnels[0];
    let families: Vec<(&str, bool, u32)> = t
        .paths
        .iter()
        .map(|p| (p.name.as_str(), p.is_ipv6(), p.cost))
        .collect();
    assert_eq!(families, [("ipoe", true, 10), ("pppoe", false, 100)]);
    assert!(t.paths.iter().all(|p| p.probe == Probe::Keepalive));
    // Within a second, as the scenario asks.
    assert!(t.health.worst_detection() < std::time::Duration::from_secs(1));
    // The tunnel's one device fits the PPPoE path: 1454 - 20.
    let plan = control::plan(&c, |_, p| {
        assert_eq!(p.name, "ipoe");
        1500
    });
    assert_eq!(plan.tunnels[0].devices[0].mtu, 1434);
    // Everything the tunnel routes comes back from an accepted source.
    for route in &t.routes {
        assert!(t.allowed_sources.contains(route));
    }
    let w = c.watch("mape").unwrap();
    assert_eq!(w.route.dst, "0.0.0.0/0".parse::<IpNet>().unwrap());
    assert_eq!(w.route.device.as_deref(), Some(w.device.as_str()));
    // Below the PPPoE default route's metric 100, so that one is the fallback.
    assert!(w.route.metric < 100);
    let hooks = [&w.on_down, &w.on_up].map(|h| h.as_ref().unwrap().args.clone());
    assert_eq!(hooks, [["on"], ["off"]]);
    // The peer by its two DDNS names; the PPPoE path follows ppp0's address.
    let names: Vec<Option<&str>> = t.paths.iter().map(|p| p.remote_name.as_deref()).collect();
    assert_eq!(
        names,
        [Some("siteb-v6.example.jp"), Some("siteb-v4.example.jp")]
    );
    assert_eq!(t.paths[1].local_device.as_deref(), Some("ppp0"));
    assert!(!t.paths[1].is_resolved());
    // And publishes its own two names, one per family.
    let own: Vec<(&str, Option<Family>)> = c
        .ddns
        .iter()
        .map(|d| (d.hostname.as_str(), d.family()))
        .collect();
    assert_eq!(
        own,
        [
            ("sitea-v6.example.jp", Some(Family::Ipv6)),
            ("sitea-v4.example.jp", Some(Family::Ipv4))
        ]
    );
}

/// S2: the server's stable IPv6 address and the PPPoE IPv4 address under one name, through
/// Value Domain, spaced by its 60 s rule.
#[test]
fn s2_publishes_both_families_through_value_domain() {
    let c = load("s2-server.toml");
    assert!(c.tunnels.is_empty());
    let [v6, v4] = &c.ddns[..] else {
        panic!("two entries: {:?}", c.ddns)
    };
    assert_eq!(
        (v6.provider, v4.provider),
        (Provider::ValueDomain, Provider::ValueDomain)
    );
    assert_eq!(v6.hostname, v4.hostname);
    assert_eq!(
        v6.address,
        AddressSource::Device {
            device: "eth0".into(),
            family: Family::Ipv6,
            select: Select::Stable
        }
    );
    assert_eq!(v4.family(), Some(Family::Ipv4));
    assert_eq!(
        v6.server,
        Server::Https("https://dyn.value-domain.com/cgi-bin/dyn.fcg".into())
    );
    for d in [v6, v4] {
        assert_eq!(d.min_interval, std::time::Duration::from_secs(60));
        assert!(
            d.credentials_file.is_absolute(),
            "resolved beside the config"
        );
    }
}

/// S3: the two ends of one IPsec tunnel agree on endpoints, selectors, identities and suites.
#[test]
fn s3_ends_match() {
    use control::{Encap, IkeStart};
    let vps = load("s3-vps.toml");
    let home = load("s3-home.toml");
    let (v, h) = (&vps.tunnels[0], &home.tunnels[0]);
    assert_eq!((v.mode, h.mode), (Mode::Ipsec, Mode::Ipsec));
    let (vp, hp) = (&v.paths[0], &h.paths[0]);
    assert_eq!((vp.local, vp.remote), (hp.remote, hp.local));
    assert_eq!(v.local_subnets, h.routes);
    assert_eq!(h.local_subnets, v.routes);
    let (vi, hi) = (v.ipsec.as_ref().unwrap(), h.ipsec.as_ref().unwrap());
    assert_eq!(vi.local_id, hi.remote_id);
    assert_eq!(hi.local_id, vi.remote_id);
    assert_eq!(vi.proposals, hi.proposals);
    assert_eq!(vi.esp_proposals, hi.esp_proposals);
    assert_eq!(vi.psk.read().unwrap(), hi.psk.read().unwrap());
    // One end starts, so the two never race each other's IKE_SA_INIT.
    assert_eq!((vi.start, hi.start), (IkeStart::Respond, IkeStart::Auto));
    assert_eq!(hi.encap, Encap::Auto);
    assert!(!v.inner_families.ipv6 && v.inner_families.ipv4);
    // 1500 - 40 - 8 (UDP reserved) - 8 - 8 - 16 (GCM) - 2 (trailer).
    let plan = control::plan(&home, |_, _| 1500);
    assert_eq!(plan.tunnels[0].devices[0].mtu, 1418);
    // The only thing worth a warning is a key file left readable by others.
    for w in vps.warnings.iter().chain(&home.warnings) {
        assert!(w.key.ends_with("ike.psk_file"), "{w:?}");
    }
}

/// The ISP softwires: MAP-E with the v6plus and OCN rule sets, DS-Lite to transix by name.
#[test]
fn isp_softwire_examples() {
    for (file, set, ports) in [("v6plus.toml", "v6plus", 240), ("ocn.toml", "ocn", 1008)] {
        let c = load(file);
        assert!(c.tunnels.is_empty(), "{file}");
        let sw = &c.softwires[0];
        assert!(sw.default_route, "{file}");
        let SoftwireKind::MapE(m) = &sw.kind else {
            panic!("{file}: {sw:?}")
        };
        assert_eq!(m.device_prefix, "eth0");
        let MapRule::Builtin(rules) = m.rule else {
            panic!("{file}: {m:?}")
        };
        assert_eq!(rules.name, set);
        // Any prefix its rules cover lowers to an ipip6 tunnel with that many ports.
        let covered = rules.rules().next().unwrap().ipv6_prefix();
        let prefix = ipnet::Ipv6Net::new(covered.network(), 56).unwrap();
        let facts = Facts {
            prefix: Some(prefix),
            ..Facts::default()
        };
        let low = lower(sw, &facts).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(low.tunnel.mode, Mode::Ipip6);
        assert_eq!(low.map.unwrap().1.ports.len(), ports, "{file}");
    }
    let c = load("transix.toml");
    let SoftwireKind::DsLite(d) = &c.softwires[0].kind else {
        panic!("{:?}", c.softwires)
    };
    assert_eq!(d.aftr, Aftr::Name("gw.transix.jp".into()));
    assert_eq!(d.local, None);
}
