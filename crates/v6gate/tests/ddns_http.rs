//! DDNS over HTTPS against lab servers speaking Value Domain's and dyndns2's protocols, with
//! a private CA given as `ca_file`: 503 backs off, `badauth` stops the entry, `nochg` counts
//! as published.

mod common;
mod ddns_support;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use common::lab;
use ddns_support::https::HttpsServer;
use ddns_support::{RunnerInNetns, entries, key_file};
use v6gate::lab::{LabOptions, Node, addr, dev};

#[test]
fn http_providers_back_off_stop_and_accept_nochg() {
    let lab = lab(LabOptions::default());
    let server_ip = IpAddr::from(addr::SITE_B_WAN6);
    let published = IpAddr::from(addr::SITE_A_WAN6);
    let server = HttpsServer::start(
        &lab,
        Node::SiteB,
        SocketAddr::new(server_ip, 8443),
        &[server_ip],
        Arc::new(|seen| {
            if seen.target.starts_with("/cgi-bin/dyn.fcg") {
                (503, "Service Unavailable".into())
            } else if seen.target.starts_with("/bad/") {
                (200, "badauth".into())
            } else if seen.target.starts_with("/ok/") {
                (200, format!("nochg {}", addr::SITE_A_WAN6))
            } else {
                (404, String::new())
            }
        }),
    );
    let vd = key_file(&lab, "vd", "vd-password");
    let dd = key_file(&lab, "dd", "user:pass word");
    let base = format!("https://[{server_ip}]:8443");
    let config = format!(
        r#"
[[ddns]]
name = "vd"
provider = "value-domain"
hostname = "www.example.jp"
credentials_file = "{vd}"
address = {{ device = "{wan}", family = "ipv6" }}
server = "{base}/cgi-bin/dyn.fcg"
ca_file = "{ca}"

[[ddns]]
name = "bad"
provider = "dyndns2"
hostname = "bad.example.org"
credentials_file = "{dd}"
address = {{ device = "{wan}", family = "ipv6" }}
server = "{base}/bad"
ca_file = "{ca}"
min_interval = "1s"

[[ddns]]
name = "ok"
provider = "dyndns2"
hostname = "ok.example.org"
credentials_file = "{dd}"
address = {{ device = "{wan}", family = "ipv6" }}
server = "{base}/ok"
ca_file = "{ca}"
min_interval = "1s"
"#,
        vd = vd.display(),
        dd = dd.display(),
        wan = dev::WAN6,
        ca = server.ca_file().display(),
    );
    let state = lab.dir().join("state");
    let runner = RunnerInNetns::start(&lab, Node::SiteA, entries(&config), &state);
    let settled = runner.wait(Duration::from_secs(5), |s| {
        s.len() == 3 && s.iter().all(|e| e.last_result.is_some())
    });
    let status = runner.status();
    assert!(settled, "{status:#?}");

    // Value Domain: the 503 is a retry no sooner than 60 s (its own rule), visible in status.
    let vd_status = &status[0];
    assert_eq!(vd_status.failures, 1, "{vd_status:?}");
    assert!(
        vd_status
            .last_result
            .as_deref()
            .unwrap()
            .contains("HTTP 503"),
        "{vd_status:?}"
    );
    assert!(vd_status.next_attempt_secs.unwrap() >= 55, "{vd_status:?}");
    assert_eq!(vd_status.published, None);
    let vd_seen = server.seen("/cgi-bin/dyn.fcg");
    assert_eq!(vd_seen.len(), 1);
    assert_eq!(
        vd_seen[0].target,
        format!(
            "/cgi-bin/dyn.fcg?d=example.jp&p=vd-password&h=www&i={}",
            addr::SITE_A_WAN6.to_string().replace(':', "%3A")
        )
    );

    // dyndns2 badauth: stopped until reload, loudly in status.
    let bad = &status[1];
    assert!(bad.stopped, "{bad:?}");
    assert!(
        bad.last_result.as_deref().unwrap().contains("badauth"),
        "{bad:?}"
    );
    assert_eq!(bad.next_attempt_secs, None);

    // dyndns2 nochg: the record holds the address already.
    let ok = &status[2];
    assert_eq!(ok.published, Some(published), "{ok:?}");
    assert!(!ok.stopped);
    let ok_seen = server.seen("/ok/");
    assert_eq!(ok_seen.len(), 1);
    assert_eq!(
        ok_seen[0].target,
        format!(
            "/ok/nic/update?hostname=ok.example.org&myip={}",
            addr::SITE_A_WAN6.to_string().replace(':', "%3A")
        )
    );
    // "user:pass word" in base64 (RFC 7617).
    assert_eq!(
        ok_seen[0].authorization.as_deref(),
        Some("Basic dXNlcjpwYXNzIHdvcmQ=")
    );
    // The update for an AAAA record left over IPv6.
    assert!(ok_seen[0].peer.is_ipv6());

    // A new address: the working entry follows, the stopped one stays silent, and Value
    // Domain is not called again inside its 60 s.
    lab.exec_ok(
        Node::SiteA,
        &[
            "ip",
            "-6",
            "addr",
            "add",
            "2001:db8:0:1::42/64",
            "dev",
            dev::WAN6,
        ],
    )
    .unwrap();
    lab.exec_ok(
        Node::SiteA,
        &[
            "ip",
            "-6",
            "addr",
            "change",
            "2001:db8:0:1::1/64",
            "dev",
            dev::WAN6,
            "preferred_lft",
            "0",
        ],
    )
    .unwrap();
    let moved: IpAddr = "2001:db8:0:1::42".parse().unwrap();
    assert!(
        runner.wait(Duration::from_secs(5), |s| s[2].published == Some(moved)),
        "{:#?}",
        runner.status()
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(server.seen("/bad/").len(), 1, "a stopped entry sent again");
    assert_eq!(
        server.seen("/cgi-bin/").len(),
        1,
        "Value Domain called within 60 s"
    );
    assert_eq!(server.seen("/ok/").len(), 2);
    drop(runner);
}
