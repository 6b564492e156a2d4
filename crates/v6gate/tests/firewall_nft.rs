//! Every ruleset v6gate renders loads into the real kernel: fed to `nft --check -j -f -`, then
//! installed and read back, inside a private network namespace (the host's ruleset is never
//! touched).

use std::path::{Path, PathBuf};

use control::Config;
use control::firewall::ruleset::{FAMILY, Ruleset, TABLE, ruleset};

fn examples() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    files
}

/// Configs that reach every branch of the renderer: reject policies, pinholes of each family
/// and none, to the gateway and through it, wildcards, IPv6 port forwards, marks on the
/// gateway's own traffic.
const EXTRA: &[&str] = &[
    r#"
    [[tunnel]]
    name = "any"
    mode = "any"
    local = "2001:db8:a::1"
    remote = "2001:db8:b::1"
    [[tunnel]]
    name = "v4"
    mode = "ip6ip6"
    local = "198.18.0.1"
    remote = "198.18.0.2"
    [firewall]
    input = "reject"
    forward = "reject"
    management = ["tcp/22 2222", "udp/53", "sctp/9000:9010"]
    [[zone]]
    name = "wan"
    devices = ["ppp*", "eth0"]
    input = "drop"
    forward = "reject"
    [[zone]]
    name = "lan"
    devices = ["br0"]
    tunnels = ["any", "v4"]
    input = "accept"
    forward = "accept"
    forward_to = ["wan", "lan"]
    mss_clamp = true
    [[allow]]
    name = "mixed"
    from = "wan"
    to = "lan"
    source = ["2001:db8:9::/48", "203.0.113.0/24"]
    dest = ["2001:db8:1::5", "198.51.100.0/25"]
    proto = ["tcp"]
    ports = "80 443 8000:8999"
    [[allow]]
    name = "ping-v4"
    from = "wan"
    to = "gateway"
    family = "ipv4"
    proto = ["icmp"]
    [[allow]]
    name = "gre"
    from = "wan"
    to = "lan"
    proto = ["gre", "4", "41"]
    [[port_forward]]
    name = "v6"
    from = "wan"
    proto = ["tcp", "udp", "sctp"]
    port = 8443
    to = "2001:db8:1::5"
    to_port = 443
    [[table]]
    name = "t1"
    id = 301
    routes = [{ dst = "::/0", via = "2001:db8::ff", metric = 5 }]
    [[rule]]
    name = "marked"
    proto = ["udp", "esp"]
    table = "t1"
    [[rule]]
    name = "marked-iif"
    iif = "br0"
    from = "2001:db8:1::/64"
    proto = ["tcp"]
    ports = 25
    table = 301
    "#,
    r#"
    [firewall]
    input = "accept"
    [[zone]]
    name = "only"
    devices = ["eth0"]
    "#,
];

fn rulesets() -> Vec<(String, Ruleset)> {
    let mut out = Vec::new();
    for path in examples() {
        let config = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
        if let Some(r) = ruleset(&config, |_, _| Some("eth0".into())) {
            out.push((path.display().to_string(), r));
        }
    }
    for (i, text) in EXTRA.iter().enumerate() {
        let config = Config::from_toml_str(text, "extra.toml").unwrap_or_else(|e| panic!("{e}"));
        // Once with known underlay devices, once without.
        for (j, device) in [Some("wan0"), None].into_iter().enumerate() {
            let r = ruleset(&config, |_, _| device.map(str::to_owned)).unwrap();
            out.push((format!("extra {i}/{j}"), r));
        }
    }
    out
}

fn root() -> bool {
    v6gate_lab::is_root()
}

#[test]
fn every_rendered_ruleset_passes_nft_check_and_reads_back_the_same() {
    assert!(root(), "needs root for a private network namespace and nft");
    let all = rulesets();
    assert!(all.len() >= 7, "only {} rulesets", all.len());
    for (name, r) in all {
        let result = sys::netns::in_private_netns(move || {
            sys::nft::check_table(&r.table, &r.content)?;
            sys::nft::replace_table(&r.table, &r.content)?;
            let first = sys::nft::installed(FAMILY, TABLE)?.expect("installed");
            // A replacement with the same ruleset is invisible to drift detection, and the
            // table holds every rule rendered.
            sys::nft::replace_table(&r.table, &r.content)?;
            let second = sys::nft::installed(FAMILY, TABLE)?.expect("installed");
            let rules = r
                .content
                .iter()
                .filter(|o| matches!(o, nftables::schema::NfListObject::Rule(_)))
                .count();
            sys::nft::delete_table(FAMILY, TABLE)?;
            let gone = sys::nft::installed(FAMILY, TABLE)?;
            Ok::<_, sys::nft::NftError>((first == second, first.rule_count(), rules, gone))
        })
        .expect("private namespace");
        let (same, installed, rendered, gone) = result.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            same,
            "{name}: reading back after the same replacement differs"
        );
        assert_eq!(installed, rendered, "{name}: rules installed vs rendered");
        assert!(gone.is_none(), "{name}: table still there after delete");
    }
}

/// nft names the numbers the renderer writes: its protocol and ICMP tables are an independent
/// check that 4 is IPv4-in-IP, 50 ESP, and that the RFC 4890 sets hold the intended types.
#[test]
fn nft_names_the_numbers_as_the_rfcs_do() {
    assert!(root(), "needs root for a private network namespace and nft");
    let config = Config::from_toml_str(EXTRA[0], "extra.toml").unwrap();
    let r = ruleset(&config, |_, _| None).unwrap();
    let listing = sys::netns::in_private_netns(move || {
        sys::nft::replace_table(&r.table, &r.content)?;
        sys::nft::listing(FAMILY, TABLE)
    })
    .unwrap()
    .unwrap()
    .unwrap();
    for expected in [
        "icmpv6 type { destination-unreachable, packet-too-big, time-exceeded, parameter-problem, echo-request, echo-reply } accept",
        "icmpv6 type { nd-router-solicit, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert } ip6 hoplimit 255 accept",
        "icmpv6 type { mld-listener-query, mld-listener-report, mld-listener-done, mld2-listener-report } ip6 saddr fe80::/10 accept",
        "icmp type destination-unreachable icmp code frag-needed accept",
        "meta l4proto { ipencap, ipv6 } counter packets 0 bytes 0 accept",
        "tcp dport { 22, 2222 } accept",
        "meta l4proto { ipencap, ipv6, gre }",
        "fib daddr type local meta nfproto ipv6 tcp dport 8443 dnat ip6 to [2001:db8:1::5]:443",
        "tcp flags syn / syn,rst tcp option maxseg size set rt mtu",
        "meta mark 0x00000000 meta l4proto { udp, esp } meta mark set 0x76470001",
    ] {
        assert!(
            listing.contains(expected),
            "{expected:?} not in:\n{listing}"
        );
    }
}
