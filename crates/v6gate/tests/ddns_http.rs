//! DDNS over HTTPS against a lab server speaking Value Domain's, dyndns2's, Cloudflare's and a
//! URL template's protocols, with a private CA given as `ca_file`: 503 backs off, `badauth`
//! stops the entry, `nochg` counts as published, Cloudflare looks up once and patches, and an
//! A record's update leaves over IPv4.

mod common;
mod ddns_support;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use common::lab;
use ddns_support::https::HttpsServer;
use ddns_support::steps::{
    backoff_stop_nochg, backoff_stop_nochg_entries, http_entry, move_wan6, peer_ip,
};
use ddns_support::{RunnerInNetns, entries, key_file};
use v6gate_lab::{LabOptions, Node, addr, dev};

// Ids in the shape of Cloudflare's API reference examples.
const ZONE: &str = "023e105f4ecef8ad9ca31a8372d0c353";
const RECORD: &str = "372e67954025e0ba6aaa6d586b9e0b59";

#[test]
fn http_providers_back_off_stop_and_accept_nochg() {
    let lab = lab(LabOptions {
        ipv4_underlay: true,
        ..LabOptions::default()
    });
    let server_ip = IpAddr::from(addr::SITE_B_WAN6);
    let published = IpAddr::from(addr::SITE_A_WAN6);
    let server_ip4 = IpAddr::from(addr::SITE_B_WAN4);
    let server = HttpsServer::start(
        &lab,
        Node::SiteB,
        // Both families: [::] takes IPv4 connections as mapped addresses.
        SocketAddr::new(IpAddr::from(std::net::Ipv6Addr::UNSPECIFIED), 8443),
        &[server_ip, server_ip4],
        Arc::new(|seen| {
            let cf = "/client/v4/zones";
            if seen.target == format!("{cf}?name=example.com") {
                (
                    200,
                    format!(r#"{{"success":true,"errors":[],"result":[{{"id":"{ZONE}"}}]}}"#),
                )
            } else if seen.target
                == format!("{cf}/{ZONE}/dns_records?type=AAAA&name=cf.example.com")
            {
                (
                    200,
                    format!(r#"{{"success":true,"errors":[],"result":[{{"id":"{RECORD}"}}]}}"#),
                )
            } else if seen.target == format!("{cf}/{ZONE}/dns_records/{RECORD}")
                && seen.method == "PATCH"
            {
                (200, r#"{"success":true,"errors":[],"result":{}}"#.into())
            } else if seen.target.starts_with("/u?") {
                (200, "OK".into())
            } else {
                backoff_stop_nochg(seen).unwrap_or((404, String::new()))
            }
        }),
    );
    let vd = key_file(&lab, "vd", "vd-password");
    let dd = key_file(&lab, "dd", "user:pass word");
    let token = key_file(&lab, "token", "t0k/en");
    let base = format!("https://[{server_ip}]:8443");
    let base4 = format!("https://{server_ip4}:8443");
    let ca = server.ca_file();
    let config = [
        backoff_stop_nochg_entries(&base, &vd, &dd, ca),
        http_entry(
            "cf",
            "cloudflare",
            "cf.example.com",
            &token,
            (dev::WAN6, "ipv6"),
            &format!("{base}/client/v4"),
            ca,
        ),
        http_entry(
            "v4",
            "url",
            "v4.example.net",
            &token,
            (dev::WAN4, "ipv4"),
            &format!("{base4}/u?host={{hostname}}&ip={{ip}}&token={{token}}"),
            ca,
        ),
    ]
    .concat();
    let state = lab.dir().join("state");
    let runner = RunnerInNetns::start(&lab, Node::SiteA, entries(&config), &state);
    let settled = runner.wait(Duration::from_secs(5), |s| {
        s.len() == 5 && s.iter().all(|e| e.last_result.is_some())
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
    let line = bad.to_string();
    assert!(
        line.starts_with("bad (dyndns2, AAAA bad.example.org): nothing published; stopped until reload: the provider answered badauth"),
        "{line}"
    );

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

    // Cloudflare: zone and record looked up, then one PATCH with the bearer token.
    assert_eq!(status[3].published, Some(published), "{:?}", status[3]);
    let cf: Vec<(String, String)> = server
        .seen("/client/v4/")
        .iter()
        .map(|s| (s.method.clone(), s.target.clone()))
        .collect();
    assert_eq!(cf.len(), 3, "{cf:?}");
    assert_eq!(cf[2].0, "PATCH");
    let patch = &server.seen("/client/v4/")[2];
    assert_eq!(
        patch.body,
        format!(r#"{{"content":"{}"}}"#, addr::SITE_A_WAN6)
    );
    assert_eq!(patch.authorization.as_deref(), Some("Bearer t0k/en"));

    // The URL template, for an A record: sent over IPv4, from siteA's IPv4 underlay.
    let v4 = &status[4];
    assert_eq!(
        v4.published,
        Some(IpAddr::from(addr::SITE_A_WAN4)),
        "{v4:?}"
    );
    let u = &server.seen("/u?")[0];
    assert_eq!(
        u.target,
        format!(
            "/u?host=v4.example.net&ip={}&token=t0k%2Fen",
            addr::SITE_A_WAN4
        )
    );
    assert_eq!(peer_ip(u), IpAddr::from(addr::SITE_A_WAN4));

    // A new address: the working entry follows, the stopped one stays silent, and Value
    // Domain is not called again inside its 60 s.
    let moved: IpAddr = "2001:db8:0:1::42".parse().unwrap();
    move_wan6(&lab, moved);
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
    assert_eq!(
        server.seen("/client/v4/").len(),
        3,
        "Cloudflare within its 5 min"
    );
    drop(runner);
}
