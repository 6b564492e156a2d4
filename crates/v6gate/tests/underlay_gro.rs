//! End-to-end: the underlay links merge the tunnel's packets with GRO, as physical NICs do by
//! default, so the receiving gateway's raw socket reads inner TCP packets of up to 64 KiB
//! with a partial checksum. A TCP transfer through the ipip6 tunnel must still arrive whole.

mod common;

use std::net::IpAddr;
use std::time::Duration;

use common::{Sites, assert_ping, counter};
use v6gate_lab::{Dataplane, Lab, LabOptions, Node, Site, addr, dev};

const HOST_B: IpAddr = IpAddr::V4(addr::HOST_B4);

/// How long GRO holds packets for more of their flow before it hands them up, like a NIC's
/// interrupt moderation: without it a veth's NAPI poll sees one packet at a time and GRO has
/// nothing to merge.
const GRO_FLUSH_TIMEOUT_NS: u32 = 50_000;

/// Turns the underlay veths into NIC-like receivers: GRO on at each end (the gateways'
/// uplinks and the wan router's links), with a flush timeout. A veth only runs GRO for a
/// peer that does not segment itself, so the sending ends lose TSO, as a NIC's link partner
/// is a wire.
fn underlay_gro(lab: &Lab) {
    let links = [
        (Node::SiteA, dev::WAN6, Node::Wan, dev::WAN_TO_A6),
        (Node::Wan, dev::WAN_TO_A6, Node::SiteA, dev::WAN6),
        (Node::Wan, dev::WAN_TO_B6, Node::SiteB, dev::WAN6),
        (Node::SiteB, dev::WAN6, Node::Wan, dev::WAN_TO_B6),
    ];
    for (node, device, peer, peer_device) in links {
        lab.exec_ok(node, &["ethtool", "-K", device, "gro", "on"])
            .unwrap_or_else(|e| panic!("GRO on {device} in {node}: {e}"));
        lab.exec_ok(peer, &["ethtool", "-K", peer_device, "tso", "off"])
            .unwrap_or_else(|e| panic!("TSO off on {peer_device} in {peer}: {e}"));
        // `ip netns exec` mounts the namespace's own /sys.
        let knob =
            format!("echo {GRO_FLUSH_TIMEOUT_NS} > /sys/class/net/{device}/gro_flush_timeout");
        lab.exec_ok(node, &["sh", "-c", &knob])
            .unwrap_or_else(|e| panic!("gro_flush_timeout on {device} in {node}: {e}"));
    }
    let features = lab
        .exec_ok(Node::SiteB, &["ethtool", "-k", dev::WAN6])
        .unwrap();
    assert!(
        features.contains("generic-receive-offload: on"),
        "{features}"
    );
}

#[test]
fn tcp_through_ipip6_arrives_whole_when_the_underlay_merges_with_gro() {
    // The TUN dataplane's receive path is what is tested: `auto` would take the kernel path.
    let sites = Sites::start(LabOptions::default(), |_, config| {
        config.tunnel_mut().dataplane = Some(Dataplane::Userspace);
    });
    let lab = &sites.lab;
    let gateways = [sites.gateway(Site::A), sites.gateway(Site::B)];
    assert_ping(lab, Node::HostA, HOST_B, 3, &gateways);
    underlay_gro(lab);

    let before = sites.gateway(Site::B).tunnel_status("ab").unwrap();
    let bytes = 48 * 1024 * 1024 + 321;
    common::assert_tcp_a_to_b(lab, bytes, Duration::from_secs(90), &gateways);

    let after = sites.gateway(Site::B).tunnel_status("ab").unwrap();
    let packets = counter(&after, "rx_packets") - counter(&before, "rx_packets");
    let delivered = counter(&after, "rx_bytes") - counter(&before, "rx_bytes");
    let mtu = counter(&after, "mtu");
    assert!(delivered >= bytes, "{delivered} < {bytes}: {after}");
    // Every inner packet read from the raw socket counts once: on average longer than the
    // tunnel MTU, they can only be what GRO merged.
    assert!(
        delivered / packets > mtu,
        "{packets} packets of {delivered} bytes: no super-packets reached siteB's raw socket \
         ({after})"
    );
    assert!(counter(&after, "underlay_gro_packets") > 0, "{after}");
    // They were delivered, not refused as too big: no ICMP back to hostA, no drops.
    assert_eq!(counter(&after, "icmp_sent"), counter(&before, "icmp_sent"));
    let dropped: u64 = after["drops"]
        .as_object()
        .map_or(0, |d| d.values().filter_map(|v| v.as_u64()).sum());
    assert_eq!(dropped, 0, "{after}");
    assert_eq!(counter(&after, "path_mtu"), mtu);
    sites.stop();
}
