//! Peers by name and paths that follow a device, through the daemon (scenario S4): each site
//! publishes its own address with `[[ddns]]` (RFC 2136 to Knot DNS on the wan router, TTL 5 s)
//! and finds the other by name. When a site's address moves, its own daemon follows the
//! device, publishes the new address, and the other daemon, once its probes declare the peer
//! gone, asks again, re-pins, re-points the path and (ipsec) re-initiates IKE. Traffic between
//! the LAN hosts must resume within the bounds: 15 s for a moved peer, 5 s for a
//! PPPoE-style change of the local device.

mod common;
mod ddns_support;

use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{BIN, lab, wait_ping, wait_until};
use ddns_support::{Knot, key_file};
use v6gate_lab::strongswan::LAB_PSK;
use v6gate_lab::{Gateway, Lab, LabOptions, Node, Site, addr, dev};

const KEY: &str = "hmac-sha256:ddns-key:c2VjcmV0LWtleS1mb3ItdGVzdHMtMDEyMzQ1Njc4OWFiY2RlZg==";

/// One site's config: the tunnel "ab" to the other site's LAN with one path, and optionally
/// a `[[ddns]]` entry publishing `publish = (hostname, address)`, `address` being the entry's
/// `address` table.
struct SiteConfig {
    site: Site,
    ipsec: Option<&'static str>,
    path: String,
    publish: Option<(&'static str, String)>,
}

fn write_config(lab: &Lab, s: &SiteConfig) -> (std::path::PathBuf, std::path::PathBuf) {
    let tag = format!("names-{:?}", s.site).to_lowercase();
    let dir = lab.dir();
    let socket = dir.join(format!("{tag}.sock"));
    let mut text = format!(
        "[gateway]\ncontrol_socket = \"{}\"\nstate_dir = \"{}\"\nipv4_forwarding = true\n\
         resolvers = [\"[{}]:53\"]\n",
        socket.display(),
        dir.join(format!("{tag}-state")).display(),
        addr::WAN_B6
    );
    if let Some((hostname, address)) = &s.publish {
        let secret = key_file(lab, &format!("{tag}-tsig"), KEY);
        text.push_str(&format!(
            "\n[[ddns]]\nname = \"self\"\nprovider = \"rfc2136\"\nhostname = \"{hostname}\"\n\
             credentials_file = \"{}\"\naddress = {address}\nserver = \"[{}]:53\"\nmin_interval = \"1s\"\n",
            secret.display(),
            addr::WAN_B6
        ));
    }
    let mode = if s.ipsec.is_some() { "ipsec" } else { "ipip6" };
    text.push_str(&format!(
        "\n[[tunnel]]\nname = \"ab\"\nmode = \"{mode}\"\nroutes = [\"{}\"]\n",
        s.site.peer().lan4()
    ));
    if s.ipsec.is_some() {
        text.push_str(&format!("local_subnets = [\"{}\"]\n", s.site.lan4()));
    }
    text.push_str(&s.path);
    if let Some(start) = s.ipsec {
        let psk = dir.join(format!("{tag}.psk"));
        std::fs::write(&psk, LAB_PSK).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&psk, std::fs::Permissions::from_mode(0o600)).unwrap();
        text.push_str(&format!(
            "\n[tunnel.ike]\npsk_file = \"{}\"\nstart = \"{start}\"\n",
            psk.display()
        ));
    }
    let path = dir.join(format!("{tag}.toml"));
    std::fs::write(&path, text).unwrap();
    (path, socket)
}

fn start(lab: &Lab, s: &SiteConfig) -> Gateway {
    let (config, socket) = write_config(lab, s);
    lab.start_gateway_with(Path::new(BIN), s.site.node(), &config, &socket)
        .unwrap_or_else(|e| panic!("starting {:?}: {e}", s.site))
}

fn ip(lab: &Lab, node: Node, args: &[&str]) {
    let mut all = vec!["ip"];
    all.extend_from_slice(args);
    lab.exec_ok(node, &all).unwrap();
}

/// The `names.endpoints` entry of `end` (`remote` or `local_device`).
fn endpoint(gateway: &Gateway, end: &str) -> serde_json::Value {
    let status = gateway.status().unwrap();
    status["names"]["endpoints"]
        .as_array()
        .and_then(|l| l.iter().find(|e| e["end"] == end).cloned())
        .unwrap_or_else(|| panic!("no {end} endpoint in {status}"))
}

/// Pings hostA -> hostB until one is answered; how long after `since` that was.
fn resumed_within(lab: &Lab, since: Instant, limit: Duration) -> Option<Duration> {
    while since.elapsed() < limit {
        if lab.ping(Node::HostA, IpAddr::V4(addr::HOST_B4), 1) {
            return Some(since.elapsed());
        }
    }
    None
}

/// The tunnel key that keeps [`peer_moves`] on the TUN dataplane: traffic stopping at the
/// move is what shows the move, and on the kernel path siteB's programs go on decapsulating
/// for its old address while the wan router still knows it.
const USERSPACE: &str = "dataplane = \"userspace\"\n";

/// siteB moves from 2001:db8:0:2::1 to ::2; siteA finds it again by name.
fn peer_moves(ipsec: bool) {
    let lab = lab(LabOptions::default());
    let knot = Knot::start_on(&lab, Node::Wan, KEY, addr::WAN_B6);
    let old = IpAddr::from(addr::SITE_B_WAN6);
    knot.update(&lab, KEY, "site-b.example.jp", "AAAA", old);
    let b = start(
        &lab,
        &SiteConfig {
            site: Site::B,
            ipsec: ipsec.then_some("respond"),
            path: format!(
                "{USERSPACE}\n[[tunnel.path]]\nname = \"ipoe\"\nlocal_device = \"{}\"\nremote = \"{}\"\n",
                dev::WAN6,
                addr::SITE_A_WAN6
            ),
            publish: Some((
                "site-b.example.jp",
                format!("{{ device = \"{}\", family = \"ipv6\" }}", dev::WAN6),
            )),
        },
    );
    let a = start(
        &lab,
        &SiteConfig {
            site: Site::A,
            ipsec: ipsec.then_some("auto"),
            path: format!(
                "{USERSPACE}\n[[tunnel.path]]\nname = \"ipoe\"\nlocal = \"{}\"\nremote = \
                 \"site-b.example.jp\"\n",
                addr::SITE_A_WAN6
            ),
            publish: None,
        },
    );
    assert!(
        wait_ping(
            &lab,
            Node::HostA,
            IpAddr::V4(addr::HOST_B4),
            Duration::from_secs(20)
        ),
        "no traffic before the move\n--- A ---\n{}\n--- B ---\n{}",
        a.log(),
        b.log()
    );
    let peer = endpoint(&a, "remote");
    assert_eq!(peer["name"], "site-b.example.jp", "{peer}");
    assert_eq!(peer["address"], old.to_string(), "{peer}");
    assert!(peer["resolved_at"].as_u64().is_some(), "{peer}");
    assert_eq!(endpoint(&b, "local_device")["address"], old.to_string());

    // Settled: siteA's probes say the peer answers, so only the move takes the path down.
    assert!(
        wait_until(
            Duration::from_secs(10),
            || a.tunnel_status("ab").unwrap()["paths"][0]["state"] == "up"
        ),
        "{}",
        a.tunnel_status("ab").unwrap()
    );

    let new: IpAddr = "2001:db8:0:2::2".parse().unwrap();
    ip(
        &lab,
        Node::SiteB,
        &[
            "-6",
            "addr",
            "add",
            "2001:db8:0:2::2/64",
            "dev",
            dev::WAN6,
            "nodad",
        ],
    );
    let moved = Instant::now();
    ip(
        &lab,
        Node::SiteB,
        &["-6", "addr", "del", "2001:db8:0:2::1/64", "dev", dev::WAN6],
    );
    let took = resumed_within(&lab, moved, Duration::from_secs(15));
    let kind = if ipsec { "ipsec" } else { "ipip6" };
    assert!(
        took.is_some(),
        "{kind}: traffic did not resume within 15 s of the peer's move; record {:?}\n\
         --- A ---\n{}\n--- B ---\n{}\n--- knot ---\n{}",
        knot.lookup(&lab, "site-b.example.jp", "AAAA"),
        a.log(),
        b.log(),
        knot.log()
    );
    eprintln!(
        "{kind}: traffic resumed {} ms after the peer's address moved",
        took.unwrap().as_millis()
    );
    assert_eq!(knot.lookup(&lab, "site-b.example.jp", "AAAA"), Some(new));
    assert!(
        wait_until(Duration::from_secs(2), || endpoint(&a, "remote")["address"]
            == new.to_string()),
        "{}",
        endpoint(&a, "remote")
    );
    let tunnel = a.tunnel_status("ab").unwrap();
    assert_eq!(tunnel["remote"], new.to_string(), "{tunnel}");
    assert!(
        a.log()
            .contains("an address changed: rebuilding the tunnel"),
        "{}",
        a.log()
    );
    a.stop().unwrap();
    b.stop().unwrap();
}

#[test]
fn a_moved_ipip6_peer_is_found_again_by_name() {
    peer_moves(false);
}

#[test]
fn a_moved_ipsec_peer_is_found_again_by_name() {
    peer_moves(true);
}

#[test]
fn a_pppoe_style_change_of_the_local_device_reroutes_the_tunnel() {
    let lab = lab(LabOptions {
        ipv4_underlay: true,
        ..LabOptions::default()
    });
    let knot = Knot::start_on(&lab, Node::Wan, KEY, addr::WAN_B6);
    let old = IpAddr::from(addr::SITE_A_WAN4);
    knot.update(&lab, KEY, "site-a4.example.jp", "A", old);
    let a = start(
        &lab,
        &SiteConfig {
            site: Site::A,
            ipsec: None,
            path: format!(
                "\n[[tunnel.path]]\nname = \"pppoe\"\nlocal_device = \"{}\"\nremote = \"{}\"\n",
                dev::WAN4,
                addr::SITE_B_WAN4
            ),
            // The address of the tunnel's own path, which follows the device.
            publish: Some((
                "site-a4.example.jp",
                "{ tunnel = \"ab\", path = \"pppoe\" }".to_owned(),
            )),
        },
    );
    let b = start(
        &lab,
        &SiteConfig {
            site: Site::B,
            ipsec: None,
            path: format!(
                "\n[[tunnel.path]]\nname = \"pppoe\"\nlocal = \"{}\"\nremote = \
                 \"site-a4.example.jp\"\n",
                addr::SITE_B_WAN4
            ),
            publish: None,
        },
    );
    assert!(
        wait_ping(
            &lab,
            Node::HostA,
            IpAddr::V4(addr::HOST_B4),
            Duration::from_secs(10)
        ),
        "no traffic before the change\n--- A ---\n{}\n--- B ---\n{}",
        a.log(),
        b.log()
    );
    assert_eq!(endpoint(&a, "local_device")["address"], old.to_string());

    // A PPPoE reconnect: the address goes, a new one comes with its route.
    let changed = Instant::now();
    ip(
        &lab,
        Node::SiteA,
        &["-4", "addr", "flush", "dev", dev::WAN4],
    );
    ip(
        &lab,
        Node::SiteA,
        &["-4", "addr", "add", "198.18.1.2/24", "dev", dev::WAN4],
    );
    ip(
        &lab,
        Node::SiteA,
        &[
            "-4",
            "route",
            "replace",
            "198.18.2.0/24",
            "via",
            &addr::WAN_A4.to_string(),
        ],
    );
    let took = resumed_within(&lab, changed, Duration::from_secs(5));
    assert!(
        took.is_some(),
        "traffic did not resume within 5 s of the change ({} ms of commands); record {:?}\n\
         --- A ---\n{}\n--- B ---\n{}",
        changed.elapsed().as_millis(),
        knot.lookup(&lab, "site-a4.example.jp", "A"),
        a.log(),
        b.log()
    );
    eprintln!(
        "pppoe: traffic resumed {} ms after the local address changed",
        took.unwrap().as_millis()
    );
    let new: IpAddr = "198.18.1.2".parse().unwrap();
    assert_eq!(endpoint(&a, "local_device")["address"], new.to_string());
    assert_eq!(a.tunnel_status("ab").unwrap()["local"], new.to_string());
    assert_eq!(knot.lookup(&lab, "site-a4.example.jp", "A"), Some(new));
    a.stop().unwrap();
    b.stop().unwrap();
}

/// The S4 example as shipped, on siteA's devices (its MAP-E watch left out: the lab has no
/// MAP-E device): the daemon accepts its names and `local_device`, holds the tunnel back
/// while the peer's names do not resolve (saying why), and starts it once they do.
#[test]
fn the_s4_example_waits_for_its_peers_names_then_runs() {
    let lab = lab(LabOptions {
        ipv4_underlay: true,
        ..LabOptions::default()
    });
    let knot = Knot::start_on(&lab, Node::Wan, KEY, addr::WAN_B6);
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/s4-two-paths.toml"
    );
    let text = std::fs::read_to_string(example).unwrap();
    let watch = text.find("[[watch]]").expect("the example's watch");
    let ddns = text
        .find("# This site's own names")
        .expect("the example's ddns");
    let socket = lab.dir().join("s4.sock");
    let text = format!("{}{}", &text[..watch], &text[ddns..])
        .replace("\"eth0\"", &format!("\"{}\"", dev::WAN6))
        .replace("\"ppp0\"", &format!("\"{}\"", dev::WAN4))
        .replace("\"2001:db8:1::1\"", &format!("\"{}\"", addr::SITE_A_WAN6))
        .replace(
            "[gateway]\n",
            &format!(
                "[gateway]\ncontrol_socket = \"{}\"\nstate_dir = \"{}\"\nresolvers = \
                 [\"[{}]:53\"]\n",
                socket.display(),
                lab.dir().join("s4-state").display(),
                addr::WAN_B6
            ),
        );
    // A tunnel by address beside it, which must not wait for the other's names.
    let text = format!(
        "{text}\n[[tunnel]]\nname = \"other\"\nmode = \"ipip6\"\nlocal = \"{}\"\nremote = \
         \"{}\"\nroutes = [\"203.0.113.128/25\"]\n",
        addr::SITE_A_WAN6,
        "2001:db8:0:2::7"
    );
    let config = lab.dir().join("s4-two-paths.toml");
    std::fs::write(&config, text).unwrap();
    // Beside the config, as the example names it.
    key_file(&lab, "s4-ddns", "user:password");
    let a = lab
        .start_gateway_with(Path::new(BIN), Node::SiteA, &config, &socket)
        .unwrap_or_else(|e| panic!("the S4 example does not run: {e}"));

    let names = || a.status().unwrap()["names"].clone();
    assert!(
        wait_until(Duration::from_secs(5), || {
            names()["waiting"][0]["reason"]
                .as_str()
                .is_some_and(|r| r.contains("siteb-v6.example.jp"))
        }),
        "{}\n{}",
        names(),
        a.log()
    );
    let running: Vec<serde_json::Value> = a.status().unwrap()["tunnels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].clone())
        .collect();
    assert_eq!(running, ["other"], "only the tunnel by address runs");
    let pppoe = endpoint(&a, "local_device");
    assert_eq!(pppoe["name"], dev::WAN4);
    assert_eq!(pppoe["address"], addr::SITE_A_WAN4.to_string(), "{pppoe}");
    assert_eq!(names()["ddns"].as_array().map(Vec::len), Some(2));

    knot.update(
        &lab,
        KEY,
        "siteb-v6.example.jp",
        "AAAA",
        IpAddr::from(addr::SITE_B_WAN6),
    );
    knot.update(
        &lab,
        KEY,
        "siteb-v4.example.jp",
        "A",
        IpAddr::from(addr::SITE_B_WAN4),
    );
    let started = Instant::now();
    assert!(
        wait_until(Duration::from_secs(15), || {
            a.tunnel_status("siteb")
                .is_ok_and(|t| t["paths"].as_array().map(Vec::len) == Some(2))
        }),
        "{}\n{}",
        names(),
        a.log()
    );
    eprintln!(
        "s4: tunnel started {} ms after its names resolved",
        started.elapsed().as_millis()
    );
    let t = a.tunnel_status("siteb").unwrap();
    assert_eq!(
        t["paths"][0]["remote"],
        addr::SITE_B_WAN6.to_string(),
        "{t}"
    );
    assert_eq!(t["paths"][1]["local"], addr::SITE_A_WAN4.to_string(), "{t}");
    assert_eq!(
        t["paths"][1]["remote"],
        addr::SITE_B_WAN4.to_string(),
        "{t}"
    );
    assert!(names()["waiting"].as_array().unwrap().is_empty());

    // A reload that changes nothing leaves the followed tunnel running as it is.
    let starts = |log: &str| log.matches("starting with").count();
    let before = starts(&a.log());
    a.reload().unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || a.log().contains("reloaded:")),
        "{}",
        a.log()
    );
    assert_eq!(starts(&a.log()), before, "{}", a.log());
    assert_eq!(
        a.tunnel_status("siteb").unwrap()["paths"][0]["remote"],
        addr::SITE_B_WAN6.to_string()
    );
    a.stop().unwrap();
}
