//! End-to-end: two v6gate gateways in network namespaces, real TUN devices and raw sockets,
//! traffic between the LAN hosts, checked on the wire.

mod common;

use std::net::IpAddr;
use std::time::Duration;

use common::{
    Sites, assert_ping, counter, drops, outer_ipv6, pcap_packets, scapy, text, tunnel_packets,
    wait_until, wan_link,
};
use v6gate_lab::{Dataplane, GatewayConfig, LabOptions, MssClamp, Node, Site, addr, dev};

const HOST_B: IpAddr = IpAddr::V4(addr::HOST_B4);

/// Both sites with their tunnels on the TUN dataplane, which this file tests (its counters,
/// drops, clamping and ICMP), then `adjust`.
fn start(options: LabOptions, adjust: impl Fn(Site, &mut GatewayConfig)) -> Sites {
    Sites::start(options, |site, config| {
        config.tunnel_mut().dataplane = Some(Dataplane::Userspace);
        adjust(site, config);
    })
}

/// What siteA's tunnel and hostA saw of packets that `send` put on a wire.
struct Injected {
    /// siteA's tunnel status before and after.
    before: serde_json::Value,
    after: serde_json::Value,
    /// Whether `grown(before, now)` came to hold within 3 s.
    grown: bool,
    /// hostA's capture of ICMP from `inner_src`.
    seen: String,
}

/// With the tunnel up and neighbour caches warm, runs `send` while hostA captures ICMP from
/// `inner_src`, then waits for siteA's tunnel status to show it.
fn inject(
    sites: &Sites,
    inner_src: &str,
    send: impl FnOnce(),
    grown: impl Fn(&serde_json::Value, &serde_json::Value) -> bool,
) -> Injected {
    let lab = &sites.lab;
    let tunnel = || sites.gateway(Site::A).tunnel_status("ab").unwrap();
    assert_ping(
        lab,
        Node::HostA,
        HOST_B,
        1,
        &[sites.gateway(Site::A), sites.gateway(Site::B)],
    );
    let before = tunnel();
    let capture = lab
        .capture_text(
            Node::HostA,
            dev::LAN,
            &format!("icmp and src host {inner_src}"),
        )
        .unwrap();
    send();
    let grown = wait_until(Duration::from_secs(3), || grown(&before, &tunnel()));
    let seen = capture.finish().unwrap();
    Injected {
        after: tunnel(),
        before,
        grown,
        seen,
    }
}

#[test]
fn lan_hosts_ping_and_tcp_through_the_tunnel() {
    let sites = start(LabOptions::default(), |_, _| {});
    let lab = &sites.lab;
    let gateways = [sites.gateway(Site::A), sites.gateway(Site::B)];
    assert_ping(lab, Node::HostA, HOST_B, 5, &gateways);
    assert_ping(lab, Node::HostB, IpAddr::V4(addr::HOST_A4), 5, &gateways);

    let bytes = 4 * 1024 * 1024 + 123;
    common::assert_tcp_a_to_b(lab, bytes, Duration::from_secs(30), &gateways);

    for site in [Site::A, Site::B] {
        let tunnel = sites.gateway(site).tunnel_status("ab").unwrap();
        assert_eq!(tunnel["state"], "up", "{tunnel}");
        assert_eq!(tunnel["mode"], "ipip6", "{tunnel}");
        assert_eq!(tunnel["local"], site.wan6().to_string(), "{tunnel}");
        assert_eq!(tunnel["remote"], site.peer().wan6().to_string(), "{tunnel}");
        // Default MTU: 1500-byte underlay minus the 40-byte outer header.
        assert_eq!(tunnel["mtu"], 1460, "{tunnel}");
        // The TCP payload alone crossed in one direction.
        let (sent, received) = match site {
            Site::A => (counter(&tunnel, "tx_bytes"), counter(&tunnel, "rx_bytes")),
            Site::B => (counter(&tunnel, "rx_bytes"), counter(&tunnel, "tx_bytes")),
        };
        assert!(
            sent >= bytes,
            "{site:?} carried {sent} < {bytes} bytes: {tunnel}"
        );
        assert!(received > 0, "{tunnel}");
        assert!(counter(&tunnel, "tx_packets") >= 10 && counter(&tunnel, "rx_packets") >= 10);
    }
    let link = lab
        .ip(Node::SiteA, &["link", "show", "dev", "v6g-ab"])
        .unwrap();
    assert!(link.contains("mtu 1460"), "{link}");
    sites.stop();
}

#[test]
fn outer_header_is_plain_ipip6_without_encap_limit_by_default() {
    let sites = start(LabOptions::default(), |_, _| {});
    let lab = &sites.lab;
    let gateways = [sites.gateway(Site::A), sites.gateway(Site::B)];
    common::wait_ping(lab, Node::HostA, HOST_B, Duration::from_secs(10));
    let capture = lab.capture(Node::Wan, wan_link(Site::A), "ip6").unwrap();
    assert_ping(lab, Node::HostA, HOST_B, 3, &gateways);
    let packets = tunnel_packets(&capture.finish().unwrap());

    let a_to_b: Vec<_> = packets
        .iter()
        .filter(|o| o.source == Site::A.wan6())
        .collect();
    let b_to_a: Vec<_> = packets
        .iter()
        .filter(|o| o.source == Site::B.wan6())
        .collect();
    assert!(a_to_b.len() >= 3, "{packets:?}");
    assert!(b_to_a.len() >= 3, "{packets:?}");
    for outer in &packets {
        assert_eq!(
            outer.next_header, 4,
            "outer next header must be IPv4: {outer:?}"
        );
        assert!(outer.destination_options_len.is_none());
        let (source, destination, protocol) =
            common::ipv4_summary(&outer.upper).expect("inner IPv4");
        assert_eq!(protocol, 1, "inner ICMP");
        assert!(
            [source, destination] == [IpAddr::V4(addr::HOST_A4), HOST_B]
                || [source, destination] == [HOST_B, IpAddr::V4(addr::HOST_A4)],
            "{source} -> {destination}"
        );
    }
    sites.stop();
}

#[test]
fn encap_limit_4_sends_a_tunnel_encapsulation_limit_option() {
    let sites = start(LabOptions::default(), |_, config| {
        config.tunnel_mut().encap_limit = Some(Some(4));
    });
    let lab = &sites.lab;
    let gateways = [sites.gateway(Site::A), sites.gateway(Site::B)];
    common::wait_ping(lab, Node::HostA, HOST_B, Duration::from_secs(10));
    let capture = lab.capture(Node::Wan, wan_link(Site::A), "ip6").unwrap();
    let pcap_path = capture.path().to_owned();
    assert_ping(lab, Node::HostA, HOST_B, 3, &gateways);
    let packets = tunnel_packets(&capture.finish().unwrap());
    assert!(packets.len() >= 6, "{packets:?}");
    for outer in &packets {
        assert_eq!(
            outer.next_header, 60,
            "Destination Options expected: {outer:?}"
        );
        // RFC 2473 4.1.1: the option (type 4, length 1) padded to 8 bytes with PadN.
        assert_eq!(outer.destination_options_len, Some(8), "{outer:?}");
        assert_eq!(outer.destination_options[0], (4, vec![4]), "{outer:?}");
        assert!(
            outer.destination_options[1..]
                .iter()
                .all(|(kind, data)| *kind <= 1 && data.iter().all(|b| *b == 0)),
            "only padding may follow: {outer:?}"
        );
        assert_eq!(outer.upper_protocol, 4, "{outer:?}");
        assert!(common::ipv4_summary(&outer.upper).is_some());
    }

    // An independent decoder agrees: Wireshark's dissector reads the same option.
    let path = pcap_path.to_string_lossy();
    let tshark = lab.exec(
        Node::Wan,
        &[
            "tshark",
            "-n",
            "-r",
            &path,
            "-Y",
            "ipv6.opt.tel",
            "-T",
            "fields",
            "-e",
            "ipv6.nxt",
            "-e",
            "ipv6.opt.tel",
        ],
    );
    assert!(tshark.status.success(), "{}", text(&tshark));
    let lines: Vec<String> = String::from_utf8_lossy(&tshark.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(lines.len(), packets.len(), "{lines:?}");
    for line in &lines {
        let fields: Vec<&str> = line.split(['\t', ',']).collect();
        assert!(fields.contains(&"60") && fields.contains(&"4"), "{line}");
    }

    // With the 8-byte option the default tunnel MTU shrinks accordingly.
    let tunnel = sites.gateway(Site::A).tunnel_status("ab").unwrap();
    assert_eq!(tunnel["mtu"], 1452, "{tunnel}");
    assert_eq!(tunnel["encap_limit"], 4, "{tunnel}");
    sites.stop();
}

/// Sends an ipip6 packet with a Tunnel Encapsulation Limit option, built by scapy, from
/// siteB's address to siteA; hostA must receive the inner echo request.
const SEND_WITH_ENCAP_LIMIT: &str = r#"
import sys
from scapy.all import IPv6, IPv6ExtHdrDestOpt, HBHOptUnknown, PadN, IP, ICMP, Raw, send, conf
conf.verb = 0
src6, dst6, src4, dst4, marker = sys.argv[1:6]
opt = IPv6ExtHdrDestOpt(nh=4, options=[HBHOptUnknown(otype=4, optdata=b"\x04"), PadN(optdata=b"\x00")])
assert bytes(opt) == bytes([4, 0, 4, 1, 4, 1, 1, 0]), bytes(opt).hex()
pkt = IPv6(src=src6, dst=dst6) / opt / IP(src=src4, dst=dst4) / ICMP(id=0x6464, seq=1) / Raw(marker.encode())
for _ in range(3):
    send(pkt)
print("sent", len(bytes(pkt)))
"#;

#[test]
fn packet_with_encap_limit_option_from_the_peer_is_decapsulated() {
    let sites = start(LabOptions::default(), |_, _| {});
    let marker = "v6gate-encap-limit-probe";
    let send = || {
        scapy(
            &sites.lab,
            Node::SiteB,
            SEND_WITH_ENCAP_LIMIT,
            &[
                &Site::B.wan6().to_string(),
                &Site::A.wan6().to_string(),
                &addr::HOST_B4.to_string(),
                &addr::HOST_A4.to_string(),
                marker,
            ],
        );
    };
    let Injected {
        before,
        after,
        grown: arrived,
        seen,
    } = inject(&sites, "203.0.113.10", send, |before, now| {
        counter(now, "rx_packets") >= counter(before, "rx_packets") + 3
    });
    let requests = seen
        .lines()
        .filter(|l| l.contains("203.0.113.10 > 198.51.100.10: ICMP echo request, id 25700"))
        .count();
    assert!(
        arrived && requests >= 3,
        "decapsulated echo requests at hostA: {requests}\n{seen}\n{}",
        sites.gateway(Site::A).log()
    );
    assert_eq!(drops(&after, "malformed"), drops(&before, "malformed"));
    sites.stop();
}

/// ipip6 from the wan router with a source inside siteB's /64 that is not the peer.
const SEND_SPOOFED: &str = r#"
import sys
from scapy.all import IPv6, IP, ICMP, Raw, send, conf
conf.verb = 0
src6, dst6, src4, dst4, count = sys.argv[1:6]
pkt = IPv6(src=src6, dst=dst6, nh=4) / IP(src=src4, dst=dst4) / ICMP(id=0x5e5e) / Raw(b"spoofed")
for _ in range(int(count)):
    send(pkt)
"#;

#[test]
fn spoofed_outer_source_is_dropped_and_counted() {
    let sites = start(LabOptions::default(), |_, _| {});
    let sent = 4;
    let send = || {
        scapy(
            &sites.lab,
            Node::Wan,
            SEND_SPOOFED,
            &[
                "2001:db8:0:2::99",
                &Site::A.wan6().to_string(),
                &addr::HOST_B4.to_string(),
                &addr::HOST_A4.to_string(),
                &sent.to_string(),
            ],
        );
    };
    let Injected {
        before,
        after,
        grown: counted,
        seen,
    } = inject(&sites, "203.0.113.10", send, |before, now| {
        drops(now, "spoofed_outer_source") >= drops(before, "spoofed_outer_source") + sent
    });
    assert!(
        counted,
        "drops.spoofed_outer_source went {} -> {} after {sent} spoofed packets: {after}",
        drops(&before, "spoofed_outer_source"),
        drops(&after, "spoofed_outer_source")
    );
    assert!(
        !seen.contains("id 24158"),
        "a spoofed packet reached hostA:\n{seen}"
    );
    assert_eq!(
        counter(&after, "rx_packets"),
        counter(&before, "rx_packets")
    );
    sites.stop();
}

#[test]
fn mss_is_clamped_on_syn_to_the_tunnel_mtu() {
    let mtu = 1400u16;
    let sites = start(LabOptions::default(), |_, config| {
        let tunnel = config.tunnel_mut();
        tunnel.mtu = Some(mtu);
        tunnel.mss_clamp = Some(MssClamp::Auto);
    });
    let lab = &sites.lab;
    let gateways = [sites.gateway(Site::A), sites.gateway(Site::B)];
    assert_ping(lab, Node::HostA, HOST_B, 1, &gateways);
    let capture = lab
        .capture_text(Node::HostB, dev::LAN, "tcp[tcpflags] & tcp-syn != 0")
        .unwrap();
    common::assert_tcp_a_to_b(lab, 64 * 1024, Duration::from_secs(15), &gateways);
    let seen = capture.finish().unwrap();
    // hostA's own SYN offers 1460 (its LAN MTU is 1500); at hostB it must be <= mtu - 40.
    let syn_mss: Vec<u16> = seen
        .lines()
        .filter(|l| l.contains("198.51.100.10.") && l.contains("Flags [S]"))
        .filter_map(|l| {
            let rest = &l[l.find("mss ")? + 4..];
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .collect();
    assert!(
        !syn_mss.is_empty(),
        "no SYN from hostA seen at hostB:\n{seen}"
    );
    for mss in &syn_mss {
        assert!(*mss <= mtu - 40, "SYN mss {mss} > {}:\n{seen}", mtu - 40);
    }
    let tunnel = sites.gateway(Site::A).tunnel_status("ab").unwrap();
    assert!(counter(&tunnel, "mss_clamped") >= 1, "{tunnel}");
    sites.stop();
}

#[test]
fn df_packet_over_the_path_mtu_gets_frag_needed() {
    // siteA's own link is 1500, the far side of the wan router only 1400: the router tells
    // siteA with ICMPv6 Packet Too Big, and siteA must tell hostA with ICMP frag-needed.
    let sites = start(
        LabOptions {
            wan_b_mtu: Some(1400),
            ..LabOptions::default()
        },
        |_, _| {},
    );
    let lab = &sites.lab;
    let gateways = [sites.gateway(Site::A), sites.gateway(Site::B)];
    assert_ping(lab, Node::HostA, HOST_B, 1, &gateways);
    let fresh = sites.gateway(Site::A).tunnel_status("ab").unwrap();
    assert_eq!(fresh["path_mtu"], fresh["mtu"], "{fresh}");
    // 1400 bytes of ICMP payload = 1428-byte inner packet: fits the 1460 tunnel MTU but
    // not the 1400 path, once encapsulated (1468).
    let mut outputs = String::new();
    let reported = wait_until(Duration::from_secs(8), || {
        let out = lab.ping_output(Node::HostA, HOST_B, 3, &["-M", "do", "-s", "1400"]);
        let out = text(&out);
        let found = out.contains("Frag needed and DF set (mtu = 1360)");
        outputs.push_str(&out);
        found
    });
    let tunnel = sites.gateway(Site::A).tunnel_status("ab").unwrap();
    assert!(
        reported,
        "hostA never got frag-needed with mtu 1360:\n{outputs}\n{tunnel}\n{}",
        sites.gateway(Site::A).log()
    );
    // path_mtu is in the same unit as mtu (what fits inside): 1400 - 40.
    assert_eq!(tunnel["path_mtu"], 1360, "{tunnel}");
    assert!(counter(&tunnel, "icmp_sent") >= 1, "{tunnel}");
    // Packets that fit the discovered path still cross.
    let small = lab.ping_output(Node::HostA, HOST_B, 3, &["-M", "do", "-s", "1332"]);
    assert!(small.status.success(), "{}", text(&small));
    sites.stop();
}

#[test]
fn ip6ip6_and_ipip6_share_one_tunnel_in_mode_any() {
    let sites = start(LabOptions::default(), |site, config| {
        let tunnel = config.tunnel_mut();
        tunnel.mode = "any".to_owned();
        tunnel.routes = vec![site.peer().lan4().to_owned(), site.peer().lan6().to_owned()];
    });
    let lab = &sites.lab;
    let gateways = [sites.gateway(Site::A), sites.gateway(Site::B)];
    assert_ping(lab, Node::HostA, HOST_B, 1, &gateways);
    assert_ping(lab, Node::HostA, IpAddr::V6(addr::HOST_B6), 1, &gateways);
    let capture = lab.capture(Node::Wan, wan_link(Site::A), "ip6").unwrap();
    assert_ping(lab, Node::HostA, IpAddr::V6(addr::HOST_B6), 2, &gateways);
    assert_ping(lab, Node::HostA, HOST_B, 2, &gateways);
    let packets = tunnel_packets(&capture.finish().unwrap());
    let next_headers: Vec<u8> = packets.iter().map(|o| o.next_header).collect();
    assert!(
        next_headers.iter().filter(|n| **n == 41).count() >= 4,
        "{next_headers:?}"
    );
    assert!(
        next_headers.iter().filter(|n| **n == 4).count() >= 4,
        "{next_headers:?}"
    );
    for outer in packets.iter().filter(|o| o.next_header == 41) {
        let inner = outer_ipv6(&outer.upper).expect("inner IPv6");
        assert!(
            [inner.source, inner.destination].contains(&addr::HOST_A6),
            "{inner:?}"
        );
    }
    sites.stop();
}

#[test]
fn pcap_decoder_reads_a_tcpdump_capture() {
    // The decoder the tests rely on, checked against packets whose bytes are known.
    let lab = common::lab(LabOptions::default());
    let capture = lab
        .capture(Node::Wan, wan_link(Site::A), "ip6 and icmp6")
        .unwrap();
    assert!(lab.ping(Node::SiteA, IpAddr::V6(addr::WAN_A6), 2));
    let packets = pcap_packets(&capture.finish().unwrap());
    let echoes: Vec<_> = packets
        .iter()
        .filter_map(|p| outer_ipv6(p))
        .filter(|o| o.upper_protocol == 58 && o.upper.first() == Some(&128))
        .collect();
    assert_eq!(echoes.len(), 2, "{packets:?}");
    assert!(
        echoes
            .iter()
            .all(|o| o.source == addr::SITE_A_WAN6 && o.destination == addr::WAN_A6)
    );
}

#[test]
fn inner_source_outside_allowed_sources_is_dropped_and_counted() {
    let sites = start(LabOptions::default(), |_, _| {});
    // The right outer source (siteB itself), but an inner source siteB may not send for.
    let sent = 3;
    let send = || {
        scapy(
            &sites.lab,
            Node::SiteB,
            SEND_SPOOFED,
            &[
                &Site::B.wan6().to_string(),
                &Site::A.wan6().to_string(),
                "198.18.7.7",
                &addr::HOST_A4.to_string(),
                &sent.to_string(),
            ],
        );
    };
    let reason = "inner_source_not_allowed";
    let Injected {
        before,
        after,
        grown: counted,
        seen,
    } = inject(&sites, "198.18.7.7", send, |before, now| {
        drops(now, reason) >= drops(before, reason) + sent
    });
    assert!(counted, "drops.{reason} did not grow by {sent}: {after}");
    assert!(
        !seen.contains("198.18.7.7 >"),
        "a disallowed packet reached hostA:\n{seen}"
    );
    assert_eq!(
        drops(&after, "spoofed_outer_source"),
        drops(&before, "spoofed_outer_source")
    );
    sites.stop();
}
