//! `[[ddns]]` through the daemon (`v6gate run`): the runner starts with the daemon, follows
//! netlink address changes, keeps its state in `gateway.state_dir`, shows every entry in
//! `status`, and a reload adds, changes and removes entries in place.
//!
//! RFC 2136 against Knot DNS in siteB; the HTTP providers against the lab's TLS server with a
//! private CA.

mod common;
mod ddns_support;

use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::{BIN, lab, wait_until};
use ddns_support::https::HttpsServer;
use ddns_support::steps::{
    self, DEPRECATED, MOVED, add_addresses_not_chosen, backoff_stop_nochg,
    backoff_stop_nochg_entries, move_and_follow, move_wan6, peer_ip,
};
use ddns_support::{Knot, key_file};
use v6gate_lab::{Gateway, Lab, LabOptions, Node, addr, dev};

const KEY: &str = "hmac-sha256:ddns-key:c2VjcmV0LWtleS1mb3ItdGVzdHMtMDEyMzQ1Njc4OWFiY2RlZg==";

/// Writes `body` after a `[gateway]` table to `NAME.toml` in the lab dir and starts the daemon
/// on it in siteA.
fn start(lab: &Lab, name: &str, body: &str) -> Gateway {
    let socket = lab.dir().join(format!("{name}.sock"));
    let path = lab.dir().join(format!("{name}.toml"));
    write_config(&path, &socket, lab, body);
    lab.start_gateway_with(BIN.as_ref(), Node::SiteA, &path, &socket)
        .unwrap_or_else(|e| panic!("starting the daemon: {e}"))
}

fn write_config(path: &Path, socket: &Path, lab: &Lab, body: &str) {
    let state = lab.dir().join("state");
    let text = format!(
        "[gateway]\ncontrol_socket = \"{}\"\nstate_dir = \"{}\"\n{body}",
        socket.display(),
        state.display()
    );
    std::fs::write(path, text).unwrap();
}

fn ddns(gateway: &Gateway) -> Vec<serde_json::Value> {
    let status = gateway.status().unwrap();
    status["names"]["ddns"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// An RFC 2136 entry to Knot in siteB that may send again after a second.
fn rfc2136_entry(name: &str, hostname: &str, secret: &Path) -> String {
    let entry = steps::rfc2136_entry(name, hostname, secret);
    format!("{entry}min_interval = \"1s\"\n")
}

/// `v6gate status` as a person reads it.
fn status_text(lab: &Lab, gateway: &Gateway) -> String {
    let socket = gateway.control_socket().to_str().unwrap();
    common::text(&lab.exec(Node::SiteA, &[BIN, "status", "--socket", socket]))
}

#[test]
fn the_daemon_publishes_by_rfc2136_and_reloads_entries_in_place() {
    let lab = lab(LabOptions::default());
    let knot = Knot::start(&lab, Node::SiteB, KEY);
    let secret = key_file(&lab, "tsig", KEY);
    let entry = rfc2136_entry("www", "www.example.jp", &secret);
    let first = IpAddr::from(addr::SITE_A_WAN6);

    let gateway = start(&lab, "ddns", &entry);
    assert!(
        knot.wait_for(
            &lab,
            "www.example.jp",
            "AAAA",
            Some(first),
            Duration::from_secs(5)
        ),
        "{first} not published: {:?}\n{}\n{}",
        ddns(&gateway),
        gateway.log(),
        knot.log()
    );
    let state = lab.dir().join("state");
    let mode = std::fs::metadata(&state).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "the state directory is root's alone");
    assert!(wait_until(Duration::from_secs(2), || {
        ddns(&gateway)[0]["published"] == first.to_string()
    }));
    let text = status_text(&lab, &gateway);
    assert!(
        text.contains(&format!(
            "ddns www (rfc2136, AAAA www.example.jp): published {first}"
        )),
        "{text}"
    );
    let serial = knot.serial(&lab);

    // Address events that leave the choice alone send nothing.
    add_addresses_not_chosen(&lab);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        knot.serial(&lab),
        serial,
        "an unchanged choice sent an update"
    );

    // A restart reads what was published from the state directory and sends nothing.
    let config_path = gateway.config_path().to_owned();
    let socket = gateway.control_socket().to_owned();
    gateway.stop().unwrap();
    let gateway = lab
        .start_gateway_with(BIN.as_ref(), Node::SiteA, &config_path, &socket)
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(knot.serial(&lab), serial, "a restart sent the same address");
    assert_eq!(ddns(&gateway)[0]["published"], first.to_string());

    // The prefix moves: the record follows within 5 s, never showing a deprecated address.
    let moved: IpAddr = MOVED.parse().unwrap();
    let (seen, took) = move_and_follow(&lab, &knot);
    assert_eq!(
        seen.last(),
        Some(&Some(moved)),
        "record after 5 s: {seen:?}\n{}",
        gateway.log()
    );
    let deprecated: IpAddr = DEPRECATED.parse().unwrap();
    assert!(!seen.contains(&Some(deprecated)), "{seen:?}");
    eprintln!(
        "daemon: record followed the device in {} ms",
        took.as_millis()
    );

    // Reload: `www` unchanged keeps its state (nothing sent), `api` is added and published.
    let serial = knot.serial(&lab);
    let both = format!("{entry}{}", rfc2136_entry("api", "api.example.jp", &secret));
    write_config(&config_path, &socket, &lab, &both);
    gateway.reload().unwrap();
    assert!(
        knot.wait_for(
            &lab,
            "api.example.jp",
            "AAAA",
            Some(moved),
            Duration::from_secs(5)
        ),
        "added entry not published: {:?}\n{}",
        ddns(&gateway),
        gateway.log()
    );
    assert_eq!(
        knot.serial(&lab),
        serial + 1,
        "only the added entry sent an update"
    );
    assert_eq!(ddns(&gateway).len(), 2);

    // Reload without entries: the section leaves status.
    write_config(&config_path, &socket, &lab, "");
    gateway.reload().unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || {
            gateway.status().unwrap()["names"].is_null()
        }),
        "{}",
        gateway.status().unwrap()
    );
    gateway.stop().unwrap();
}

#[test]
fn the_daemon_backs_off_after_503_stops_after_badauth_and_accepts_nochg() {
    let lab = lab(LabOptions::default());
    let server_ip = IpAddr::from(addr::SITE_B_WAN6);
    let server = HttpsServer::start(
        &lab,
        Node::SiteB,
        SocketAddr::new(server_ip, 8443),
        &[server_ip],
        Arc::new(|seen| backoff_stop_nochg(seen).unwrap_or((404, String::new()))),
    );
    let vd = key_file(&lab, "vd", "vd-password");
    let dd = key_file(&lab, "dd", "user:password");
    let base = format!("https://[{server_ip}]:8443");
    let body = backoff_stop_nochg_entries(&base, &vd, &dd, server.ca_file());
    let gateway = start(&lab, "http", &body);
    let settled = wait_until(Duration::from_secs(5), || {
        let list = ddns(&gateway);
        list.len() == 3 && list.iter().all(|e| !e["last_result"].is_null())
    });
    let list = ddns(&gateway);
    assert!(settled, "{list:#?}\n{}", gateway.log());

    // 503: a retry no sooner than Value Domain's 60 s, visible in status.
    let vd = &list[0];
    assert_eq!(vd["failures"], 1, "{vd}");
    assert!(
        vd["last_result"].as_str().unwrap().contains("HTTP 503"),
        "{vd}"
    );
    assert!(vd["next_attempt_secs"].as_u64().unwrap() >= 55, "{vd}");
    assert!(vd["published"].is_null());

    // badauth: stopped until reload.
    let bad = &list[1];
    assert_eq!(bad["stopped"], true, "{bad}");
    assert!(bad["next_attempt_secs"].is_null(), "{bad}");

    // nochg: published.
    assert_eq!(list[2]["published"], addr::SITE_A_WAN6.to_string());

    // A new address: the working entry follows, the stopped one and the backed-off one stay
    // silent.
    move_wan6(&lab, "2001:db8:0:1::42".parse().unwrap());
    assert!(
        wait_until(Duration::from_secs(5), || ddns(&gateway)[2]["published"]
            == "2001:db8:0:1::42"),
        "{:#?}",
        ddns(&gateway)
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(server.seen("/bad/").len(), 1, "a stopped entry sent again");
    assert_eq!(
        server.seen("/cgi-bin/").len(),
        1,
        "Value Domain within 60 s"
    );

    // A reload starts the stopped entry again (its credentials may have been fixed); the
    // backed-off one keeps waiting.
    gateway.reload().unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || server.seen("/bad/").len() == 2),
        "the stopped entry did not start again on reload: {:#?}",
        ddns(&gateway)
    );
    assert_eq!(
        server.seen("/cgi-bin/").len(),
        1,
        "Value Domain within 60 s"
    );
    let text = status_text(&lab, &gateway);
    assert!(text.contains("stopped until reload"), "{text}");
    gateway.stop().unwrap();
}

/// The S2 example as shipped, on siteA's devices and with Value Domain's URL pointed at the
/// lab's TLS server: both records of www.example.jp are published by the daemon, the AAAA
/// over IPv6 and the A over IPv4, and kept apart in status.
#[test]
fn the_s2_example_publishes_both_families_through_the_daemon() {
    let lab = lab(LabOptions {
        ipv4_underlay: true,
        ..LabOptions::default()
    });
    let (v6, v4) = (
        IpAddr::from(addr::SITE_B_WAN6),
        IpAddr::from(addr::SITE_B_WAN4),
    );
    let server = HttpsServer::start(
        &lab,
        Node::SiteB,
        SocketAddr::new(IpAddr::from(std::net::Ipv6Addr::UNSPECIFIED), 8443),
        &[v6, v4],
        Arc::new(|seen| {
            if seen.target.starts_with("/cgi-bin/dyn.fcg") {
                (200, "status=0\nOK".into())
            } else {
                (404, String::new())
            }
        }),
    );
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/s2-server.toml");
    let text = std::fs::read_to_string(example).unwrap();
    let ca = server.ca_file().display().to_string();
    let point = |line: &str, device: &str, base: String| {
        let with = line.replace(
            if line.contains("eth0") {
                "eth0"
            } else {
                "ppp0"
            },
            device,
        );
        format!("{with}\nserver = \"{base}/cgi-bin/dyn.fcg\"\nca_file = \"{ca}\"")
    };
    let line6 = r#"address = { device = "eth0", family = "ipv6", select = "stable" }"#;
    let line4 = r#"address = { device = "ppp0", family = "ipv4" }"#;
    assert!(text.contains(line6) && text.contains(line4), "{text}");
    let body = text
        .replace(
            line6,
            &point(line6, dev::WAN6, format!("https://[{v6}]:8443")),
        )
        .replace(
            line4,
            &point(line4, dev::WAN4, format!("https://{v4}:8443")),
        );
    key_file(&lab, "s2-ddns", "vd-password");
    let gateway = start(&lab, "s2-server", &body);

    assert!(
        wait_until(Duration::from_secs(5), || {
            let list = ddns(&gateway);
            list.len() == 2 && list.iter().all(|e| !e["published"].is_null())
        }),
        "{:#?}\n{}",
        ddns(&gateway),
        gateway.log()
    );
    let list = ddns(&gateway);
    assert_eq!(list[0]["name"], "www-v6");
    assert_eq!(list[0]["family"], "ipv6");
    assert_eq!(list[0]["published"], addr::SITE_A_WAN6.to_string());
    assert_eq!(list[1]["name"], "www-v4");
    assert_eq!(list[1]["family"], "ipv4");
    assert_eq!(list[1]["published"], addr::SITE_A_WAN4.to_string());

    let seen = server.seen("/cgi-bin/dyn.fcg");
    assert_eq!(seen.len(), 2, "one update per record");
    for s in &seen {
        let published = if peer_ip(s).is_ipv6() {
            addr::SITE_A_WAN6.to_string().replace(':', "%3A")
        } else {
            addr::SITE_A_WAN4.to_string()
        };
        assert_eq!(
            s.target,
            format!("/cgi-bin/dyn.fcg?d=example.jp&p=vd-password&h=www&i={published}"),
            "each update leaves from the family it publishes"
        );
    }
    gateway.stop().unwrap();
}
