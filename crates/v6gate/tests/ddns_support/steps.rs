//! What several DDNS tests do alike: `[[ddns]]` entries for the HTTP providers, the lab
//! server's answers for them, and siteA's IPv6 address changing under the runner.

use std::net::IpAddr;
use std::path::Path;

use std::time::{Duration, Instant};

use v6gate_lab::{Lab, Node, addr, dev};

use super::Knot;
use super::https::Seen;

/// An HTTP provider's `[[ddns]]` entry on `address` (device, family), trusting `ca`.
pub fn http_entry(
    name: &str,
    provider: &str,
    hostname: &str,
    credentials: &Path,
    (device, family): (&str, &str),
    server: &str,
    ca: &Path,
) -> String {
    format!(
        r#"
[[ddns]]
name = "{name}"
provider = "{provider}"
hostname = "{hostname}"
credentials_file = "{}"
address = {{ device = "{device}", family = "{family}" }}
server = "{server}"
ca_file = "{}"
"#,
        credentials.display(),
        ca.display()
    )
}

/// An RFC 2136 entry for siteA's stable IPv6 address, sent to Knot on siteB, keyed by
/// `secret`.
pub fn rfc2136_entry(name: &str, hostname: &str, secret: &Path) -> String {
    format!(
        r#"
[[ddns]]
name = "{name}"
provider = "rfc2136"
hostname = "{hostname}"
credentials_file = "{}"
address = {{ device = "{}", family = "ipv6", select = "stable" }}
server = "[{}]:53"
"#,
        secret.display(),
        dev::WAN6,
        addr::SITE_B_WAN6
    )
}

/// Three AAAA entries against the server at `base`, in this order: `vd` (Value Domain, its
/// password in `vd`) which [`backoff_stop_nochg`] answers with 503, `bad` (dyndns2, `dd`)
/// answered `badauth`, and `ok` (dyndns2, `dd`) answered `nochg`.
pub fn backoff_stop_nochg_entries(base: &str, vd: &Path, dd: &Path, ca: &Path) -> String {
    let wan = (dev::WAN6, "ipv6");
    let dyndns2 = |name: &str| {
        let entry = http_entry(
            name,
            "dyndns2",
            &format!("{name}.example.org"),
            dd,
            wan,
            &format!("{base}/{name}"),
            ca,
        );
        format!("{entry}min_interval = \"1s\"\n")
    };
    let vd = http_entry(
        "vd",
        "value-domain",
        "www.example.jp",
        vd,
        wan,
        &format!("{base}/cgi-bin/dyn.fcg"),
        ca,
    );
    format!("{vd}{}{}", dyndns2("bad"), dyndns2("ok"))
}

/// The server's answer to the entries of [`backoff_stop_nochg_entries`]; `None` for any
/// other request.
pub fn backoff_stop_nochg(seen: &Seen) -> Option<(u16, String)> {
    if seen.target.starts_with("/cgi-bin/dyn.fcg") {
        Some((503, "Service Unavailable".into()))
    } else if seen.target.starts_with("/bad/") {
        Some((200, "badauth".into()))
    } else if seen.target.starts_with("/ok/") {
        Some((200, format!("nochg {}", addr::SITE_A_WAN6)))
    } else {
        None
    }
}

/// Runs `ip -6 addr ARGS dev wan` in siteA.
fn wan6_addr(lab: &Lab, args: &[&str]) {
    let mut all = vec!["ip", "-6", "addr"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["dev", dev::WAN6]);
    lab.exec_ok(Node::SiteA, &all)
        .unwrap_or_else(|e| panic!("{all:?}: {e}"));
}

/// Address events that must leave a runner's choice alone: a ULA and an address of the
/// global prefix that is deprecated from the start (`2001:db8:0:1::77`).
pub fn add_addresses_not_chosen(lab: &Lab) {
    wan6_addr(lab, &["add", "fd00:1::1/64"]);
    wan6_addr(lab, &["add", "2001:db8:0:1::77/64", "preferred_lft", "0"]);
}

/// The deprecated address [`add_addresses_not_chosen`] adds.
pub const DEPRECATED: &str = "2001:db8:0:1::77";

/// The prefix moves on siteA's WAN: `to` (in the lab's /64) appears and siteA's own address
/// is deprecated.
pub fn move_wan6(lab: &Lab, to: IpAddr) {
    wan6_addr(lab, &["add", &format!("{to}/64")]);
    let own = format!("{}/64", addr::SITE_A_WAN6);
    wan6_addr(lab, &["change", &own, "preferred_lft", "0"]);
}

/// Where [`move_and_follow`] moves siteA's address.
pub const MOVED: &str = "2001:db8:0:1::99";

/// The prefix moves to [`MOVED`] while the AAAA of `www.example.jp` at `knot` is watched for
/// up to 5 s: what it served, in order, and how long that took.
pub fn move_and_follow(lab: &Lab, knot: &Knot) -> (Vec<Option<IpAddr>>, Duration) {
    let moved: IpAddr = MOVED.parse().unwrap();
    let started = Instant::now();
    move_wan6(lab, moved);
    let seen = knot.follow(lab, "www.example.jp", "AAAA", moved, Duration::from_secs(5));
    (seen, started.elapsed())
}

/// The client's address as IPv4 or IPv6, unmapping what a dual-stack listener saw.
pub fn peer_ip(seen: &Seen) -> IpAddr {
    match seen.peer.ip() {
        IpAddr::V6(a) => a.to_ipv4_mapped().map_or(IpAddr::V6(a), IpAddr::V4),
        a => a,
    }
}
