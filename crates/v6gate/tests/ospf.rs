//! Scenario S4's design with a routing daemon: one TUN device per path (`device_per_path`),
//! BIRD 2 running OSPF over both with cost 10 on the IPv6 path and 100 on the IPv4 backup,
//! over RFC 2473/2003 paths and over ipsec paths (each its own IKE SA and CHILD SAs). The
//! adjacencies form, the LAN route follows the cheaper path, and moves to the backup when the
//! primary underlay goes silent.

use std::fs;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use v6gate_lab::{Lab, LabOptions, Node, Process, Site, is_root};

const BINARY: &str = env!("CARGO_BIN_EXE_v6gate");

struct SiteAddrs {
    local6: &'static str,
    remote6: &'static str,
    local4: &'static str,
    remote4: &'static str,
    ipoe: &'static str,
    pppoe: &'static str,
    peer_ipoe: &'static str,
    peer_pppoe: &'static str,
    peer_lan: &'static str,
    router_id: &'static str,
}

fn addrs(site: Site) -> SiteAddrs {
    match site {
        Site::A => SiteAddrs {
            local6: "2001:db8:0:1::1",
            remote6: "2001:db8:0:2::1",
            local4: "198.18.1.1",
            remote4: "198.18.2.1",
            ipoe: "198.18.101.1/30",
            pppoe: "198.18.102.1/30",
            peer_ipoe: "198.18.101.2",
            peer_pppoe: "198.18.102.2",
            peer_lan: "203.0.113.0/24",
            router_id: "198.18.101.1",
        },
        Site::B => SiteAddrs {
            local6: "2001:db8:0:2::1",
            remote6: "2001:db8:0:1::1",
            local4: "198.18.2.1",
            remote4: "198.18.1.1",
            ipoe: "198.18.101.2/30",
            pppoe: "198.18.102.2/30",
            peer_ipoe: "198.18.101.1",
            peer_pppoe: "198.18.102.1",
            peer_lan: "198.51.100.0/24",
            router_id: "198.18.101.2",
        },
    }
}

/// The tunnel's kind: RFC 2473/2003, or ipsec with this key file.
enum Kind<'a> {
    Ipip,
    Ipsec(&'a Path),
}

fn gateway_config(site: Site, socket: &Path, kind: &Kind<'_>) -> String {
    let a = addrs(site);
    let mode = match kind {
        Kind::Ipip => "mode = \"ipip6\"\n".to_owned(),
        // The selectors carry OSPF (224.0.0.5 and the link subnets) and the LANs; the routes
        // go to a table of their own, since OSPF owns the main table's.
        Kind::Ipsec(psk) => format!(
            "mode = \"ipsec\"\nroute_table = 100\n\
             local_subnets = [\"{own_lan}\", \"198.18.101.0/30\", \"198.18.102.0/30\", \"224.0.0.0/24\"]\n\
             routes = [\"{peer_lan}\", \"198.18.101.0/30\", \"198.18.102.0/30\", \"224.0.0.0/24\"]\n\
             [tunnel.ike]\npsk_file = \"{psk}\"\nstart = \"{start}\"\n",
            own_lan = addrs(site.peer()).peer_lan,
            peer_lan = a.peer_lan,
            psk = psk.display(),
            start = if site == Site::A { "auto" } else { "respond" },
        ),
    };
    format!(
        r#"[gateway]
control_socket = "{socket}"
ipv4_forwarding = true

[[tunnel]]
name = "ab"
device_per_path = true
# OSPF owns the routes; the peer's link addresses and LAN may come out of the tunnel.
allowed_sources = ["{peer_ipoe}/32", "{peer_pppoe}/32", "{peer_lan}"]
{mode}
[[tunnel.path]]
name = "ipoe"
local = "{local6}"
remote = "{remote6}"
cost = 10
address = "{ipoe}"

[[tunnel.path]]
name = "pppoe"
local = "{local4}"
remote = "{remote4}"
cost = 100
address = "{pppoe}"
"#,
        socket = socket.display(),
        peer_ipoe = a.peer_ipoe,
        peer_pppoe = a.peer_pppoe,
        peer_lan = a.peer_lan,
        local6 = a.local6,
        remote6 = a.remote6,
        local4 = a.local4,
        remote4 = a.remote4,
        ipoe = a.ipoe,
        pppoe = a.pppoe,
    )
}

fn bird_config(site: Site) -> String {
    let a = addrs(site);
    format!(
        r#"router id {router_id};
protocol device {{ scan time 1; }}
protocol kernel {{
    ipv4 {{ export where source = RTS_OSPF; }};
    learn off;
}}
protocol ospf v2 {{
    ipv4 {{ import all; export none; }};
    area 0 {{
        interface "lan0" {{ stub yes; }};
        interface "v6g-ab-ipoe" {{ type ptp; cost 10; hello 1; dead 4; }};
        interface "v6g-ab-pppoe" {{ type ptp; cost 100; hello 1; dead 4; }};
    }};
}}
"#,
        router_id = a.router_id
    )
}

fn start_bird(lab: &Lab, site: Site) -> (Process, PathBuf) {
    let dir = lab.dir();
    let conf = dir.join(format!("bird-{site:?}.conf"));
    let ctl = dir.join(format!("bird-{site:?}.ctl"));
    fs::write(&conf, bird_config(site)).unwrap();
    let process = lab
        .spawn(
            site.node(),
            "bird",
            &[
                "bird",
                "-f",
                "-c",
                &conf.to_string_lossy(),
                "-s",
                &ctl.to_string_lossy(),
                "-P",
                &dir.join(format!("bird-{site:?}.pid")).to_string_lossy(),
            ],
        )
        .expect("starting bird");
    (process, ctl)
}

fn birdc(lab: &Lab, site: Site, ctl: &Path, cmd: &str) -> String {
    let out = lab.exec(
        site.node(),
        &["timeout", "5", "birdc", "-s", &ctl.to_string_lossy(), cmd],
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn wait_until(within: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < within {
        if done() {
            return true;
        }
        thread::sleep(Duration::from_millis(200));
    }
    false
}

#[test]
fn ospf_over_a_device_per_path_follows_the_cost() {
    ospf_follows_the_cost(false);
}

/// The same with ipsec paths: each path its own IKE SA, CHILD SAs and device (S4's IX2215
/// pair with `mtu-ignore` and cost 100 on the backup tunnel).
#[test]
fn ospf_over_ipsec_paths_follows_the_cost() {
    ospf_follows_the_cost(true);
}

fn ospf_follows_the_cost(ipsec: bool) {
    assert!(is_root(), "end-to-end tests need root");
    let lab = Lab::two_sites(LabOptions {
        ipv4_underlay: true,
        ..LabOptions::default()
    })
    .expect("building the lab");
    let psk = lab.dir().join("ospf.psk");
    fs::write(&psk, "ospf over both paths").unwrap();
    fs::set_permissions(&psk, fs::Permissions::from_mode(0o600)).unwrap();
    let kind = if ipsec { Kind::Ipsec(&psk) } else { Kind::Ipip };
    let mut gateways = Vec::new();
    for site in [Site::A, Site::B] {
        let socket = lab.dir().join(format!("ospf-{site:?}.sock"));
        let path = lab.dir().join(format!("ospf-{site:?}.toml"));
        fs::write(&path, gateway_config(site, &socket, &kind)).unwrap();
        gateways.push(
            lab.start_gateway_with(Path::new(BINARY), site.node(), &path, &socket)
                .expect("gateway"),
        );
    }
    let (_bird_a, ctl_a) = start_bird(&lab, Site::A);
    let (_bird_b, ctl_b) = start_bird(&lab, Site::B);

    let full = wait_until(Duration::from_secs(30), || {
        let n = birdc(&lab, Site::A, &ctl_a, "show ospf neighbors");
        n.matches("Full").count() >= 2
    });
    assert!(
        full,
        "OSPF adjacencies did not form over both path devices:\n{}\n{}",
        birdc(&lab, Site::A, &ctl_a, "show ospf neighbors"),
        gateways[0].log()
    );
    if ipsec {
        // Status shows both paths' IKE SAs, each established with its CHILD SA.
        let t = gateways[0].tunnel_status("ab").expect("status");
        let paths = t["ipsec_paths"].as_array().cloned().unwrap_or_default();
        let names: Vec<&str> = paths.iter().filter_map(|p| p["path"].as_str()).collect();
        assert_eq!(names, ["ipoe", "pppoe"], "{t}");
        for p in &paths {
            assert_eq!(p["ike_state"], "established", "{p}");
            assert_eq!(p["children"].as_array().map(Vec::len), Some(1), "{p}");
        }
        assert_ne!(paths[0]["ike_spis"], paths[1]["ike_spis"], "{t}");
    }
    let via_ipoe = wait_until(Duration::from_secs(15), || {
        lab.ip(Node::SiteA, &["route", "show", Site::B.lan4()])
            .map(|r| r.contains("dev v6g-ab-ipoe"))
            .unwrap_or(false)
    });
    assert!(
        via_ipoe,
        "LAN B is not routed over the cheaper path: {:?}",
        lab.ip(Node::SiteA, &["route", "show", Site::B.lan4()])
    );
    // The replies need siteB's route to LAN A, which its own SPF run installs a moment later.
    let back_via_ipoe = wait_until(Duration::from_secs(15), || {
        lab.ip(Node::SiteB, &["route", "show", Site::A.lan4()])
            .map(|r| r.contains("dev v6g-ab-ipoe"))
            .unwrap_or(false)
    });
    assert!(
        back_via_ipoe,
        "siteB does not route LAN A over the cheaper path"
    );
    assert!(
        wait_until(Duration::from_secs(10), || lab.ping(
            Node::HostA,
            IpAddr::V4(Site::B.host4()),
            1
        )),
        "no traffic over the cheaper path"
    );

    // The IPv6 underlay goes silent: OSPF's dead interval expires on the ipoe device and the
    // route moves to the pppoe one.
    let cut = Instant::now();
    for script in [
        "add table inet cut",
        "add chain inet cut cut { type filter hook forward priority 0; }",
        "add rule inet cut cut meta nfproto ipv6 drop",
    ] {
        let out = lab.exec(Node::Wan, &["nft", script]);
        assert!(out.status.success(), "nft {script}");
    }
    let via_pppoe = wait_until(Duration::from_secs(20), || {
        lab.ip(Node::SiteA, &["route", "show", Site::B.lan4()])
            .map(|r| r.contains("dev v6g-ab-pppoe"))
            .unwrap_or(false)
    });
    assert!(
        via_pppoe,
        "the route did not follow to the backup: {:?}",
        lab.ip(Node::SiteA, &["route", "show", Site::B.lan4()])
    );
    // siteB's own dead interval may end a moment later; until then the replies still take
    // the silent path.
    let back_via_pppoe = wait_until(Duration::from_secs(20), || {
        lab.ip(Node::SiteB, &["route", "show", Site::A.lan4()])
            .map(|r| r.contains("dev v6g-ab-pppoe"))
            .unwrap_or(false)
    });
    assert!(back_via_pppoe, "siteB's route did not follow to the backup");
    let moved = cut.elapsed();
    assert!(
        wait_until(Duration::from_secs(10), || lab.ping(
            Node::HostA,
            IpAddr::V4(Site::B.host4()),
            1
        )),
        "no traffic over the backup path"
    );
    eprintln!(
        "OSPF over {} paths: routes on the backup {moved:?} after the cut, traffic {:?}",
        if ipsec { "ipsec" } else { "RFC 2473" },
        cut.elapsed()
    );
    let _ = ctl_b;
    for gw in gateways {
        gw.stop().expect("gateway stops cleanly");
    }
}
