//! End-to-end: a reload that changes `[gateway] resolvers` makes the named peers ask the new
//! servers.
//!
//! Two Knot servers on the wan router serve `example.jp` with different answers for
//! `site-b.example.jp`: server A (2001:db8:0:2::ff) a dead address, server B
//! (2001:db8:0:1::ff) siteB's second address 2001:db8:0:2::2, where siteB's tunnel ends. siteA
//! finds its peer by name through server A; the reload to server B moves the tunnel to B's
//! answer and traffic flows. A reload back to server A, which now gives the same answer,
//! asks again but leaves the running tunnel as it is.

mod common;
mod ddns_support;

use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

use ddns_support::Knot;
use v6gate_lab::{Gateway, Lab, LabOptions, Node, Site, addr, dev};

const KEY: &str = "hmac-sha256:ddns-key:c2VjcmV0LWtleS1mb3ItdGVzdHMtMDEyMzQ1Njc4OWFiY2RlZg==";

const PEER: &str = "site-b.example.jp";

/// What the daemon logs for every answer of a name task, the first included.
const ANSWERED: &str = "peer site-b.example.jp is at";

/// siteA's config: the lab's `[gateway]` asking `resolver`, and the tunnel `ab` to siteB's
/// LAN whose remote is [`PEER`].
fn site_a_toml(lab: &Lab, resolver: Ipv6Addr) -> String {
    let mut config = lab.site_config(Site::A);
    config.tunnels.clear();
    config
        .extra
        .push(format!("resolvers = [\"[{resolver}]:53\"]"));
    config.to_toml()
        + &format!(
            "[[tunnel]]\nname = \"ab\"\nmode = \"ipip6\"\nlocal = \"{}\"\nremote = \"{PEER}\"\n\
             routes = [\"{}\"]\n",
            addr::SITE_A_WAN6,
            addr::LAN_B4
        )
}

fn remote_is(gateway: &Gateway, a: Ipv6Addr) -> bool {
    gateway
        .tunnel_status("ab")
        .is_ok_and(|s| s["remote"] == a.to_string())
}

#[test]
fn daemon_reload_with_new_resolvers_follows_their_answers() {
    let dead: Ipv6Addr = "2001:db8:0:2::99".parse().unwrap();
    let peer: Ipv6Addr = "2001:db8:0:2::2".parse().unwrap();
    let lab = common::lab(LabOptions::default());
    ddns_support::add_address(&lab, Node::SiteB, dev::WAN6, peer);
    let server_a = Knot::answering(&lab, KEY, addr::WAN_B6, "knot-a", PEER, dead);
    let server_b = Knot::answering(&lab, KEY, addr::WAN_A6, "knot-b", PEER, peer);
    assert_eq!(
        (
            server_a.lookup(&lab, PEER, "AAAA"),
            server_b.lookup(&lab, PEER, "AAAA")
        ),
        (Some(IpAddr::V6(dead)), Some(IpAddr::V6(peer))),
        "the two servers must answer differently"
    );

    let mut b = lab.site_config(Site::B);
    b.tunnel_mut().local = peer;
    let b = common::start_gateway(&lab, Site::B, &b);
    let path = lab.dir().join("names-reload.toml");
    let ask = |resolver| std::fs::write(&path, site_a_toml(&lab, resolver)).unwrap();
    ask(addr::WAN_B6);
    let a = lab
        .start_gateway_with(
            common::BIN.as_ref(),
            Node::SiteA,
            &path,
            &lab.site_config(Site::A).control_socket,
        )
        .unwrap_or_else(|e| panic!("starting siteA: {e}"));
    assert!(
        common::wait_until(Duration::from_secs(10), || remote_is(&a, dead)),
        "siteA did not take server A's answer:\n{}",
        a.log()
    );

    // Server B's answer is where siteB is: the tunnel goes there and carries traffic.
    ask(addr::WAN_A6);
    a.reload().unwrap();
    assert!(
        common::wait_until(Duration::from_secs(10), || remote_is(&a, peer)),
        "the tunnel did not follow the new resolvers: {}\n{}",
        a.tunnel_status("ab").unwrap(),
        a.log()
    );
    assert!(
        common::wait_ping(
            &lab,
            Node::HostA,
            IpAddr::V4(addr::HOST_B4),
            Duration::from_secs(10)
        ),
        "no traffic through the moved tunnel:\n{}\n{}",
        a.log(),
        b.log()
    );

    // Back to server A, which now agrees with B: the name is asked again, the tunnel stays.
    server_a.update(&lab, KEY, PEER, "AAAA", IpAddr::V6(peer));
    let device = common::ifindex(&lab, Node::SiteA, "v6g-ab");
    let answers = a.log().matches(ANSWERED).count();
    ask(addr::WAN_B6);
    a.reload().unwrap();
    assert!(
        common::wait_until(Duration::from_secs(10), || {
            a.log().matches(ANSWERED).count() > answers
        }),
        "the name was not asked again after the reload:\n{}",
        a.log()
    );
    assert!(remote_is(&a, peer), "{}", a.tunnel_status("ab").unwrap());
    assert_eq!(
        common::ifindex(&lab, Node::SiteA, "v6g-ab"),
        device,
        "the tunnel was rebuilt"
    );
    common::assert_ping(&lab, Node::HostA, IpAddr::V4(addr::HOST_B4), 3, &[&a, &b]);
    a.stop().unwrap();
    b.stop().unwrap();
}
