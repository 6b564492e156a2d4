use super::*;
use crate::esp::Suite;

const A: &str = "2001:db8:a::2";
const B: &str = "2001:db8:a::1";
const KEY_AB: [u8; 20] = [0x11; 20];
const KEY_BA: [u8; 20] = [0x22; 20];
const GCM: Suite = Suite::AesGcm16 { key_bits: 128 };

fn nets(list: &[&str]) -> Vec<IpNet> {
    list.iter().map(|s| s.parse().unwrap()).collect()
}

fn config(local: &str, remote: &str, ours: &str, theirs: &str) -> EspTunnelConfig {
    EspTunnelConfig {
        local: local.parse().unwrap(),
        remote: remote.parse().unwrap(),
        local_subnets: nets(&[ours]),
        routes: nets(&[theirs]),
        allowed_sources: nets(&[theirs]),
        mtu: 1400,
        mss_clamp: MssClamp::Auto,
        hop_limit: 64,
        icmp_source_v4: Some("203.0.113.1".parse().unwrap()),
        icmp_source_v6: None,
    }
}

/// Site A (203.0.113.0/24) and site B (198.51.100.0/24), each with the SA pair for `spi`
/// (A -> B uses `spi`, B -> A `spi + 1`).
fn pair() -> (EspTunnel, EspTunnel) {
    let mut a = EspTunnel::new(config(A, B, "203.0.113.0/24", "198.51.100.0/24"));
    let mut b = EspTunnel::new(config(B, A, "198.51.100.0/24", "203.0.113.0/24"));
    install(&mut a, &mut b, 0x100);
    (a, b)
}

fn install(a: &mut EspTunnel, b: &mut EspTunnel, spi: u32) {
    let sa = |spi, key: &[u8]| OutboundSa::new(spi, GCM, key, &[], false).unwrap();
    let rx = |spi, key: &[u8]| InboundSa::new(spi, GCM, key, &[], false).unwrap();
    a.install_outbound(sa(spi, &KEY_AB));
    b.install_inbound(rx(spi, &KEY_AB));
    b.install_outbound(sa(spi + 1, &KEY_BA));
    a.install_inbound(rx(spi + 1, &KEY_BA));
}

/// An IPv4 UDP packet of `len` bytes from `src` to `dst`, DF set.
fn udp4(src: &str, dst: &str, len: usize) -> Vec<u8> {
    let mut p = vec![0u8; len];
    Ipv4Repr {
        src_addr: src.parse().unwrap(),
        dst_addr: dst.parse().unwrap(),
        protocol: ip_proto::UDP,
        payload_len: len - ipv4::HEADER_LEN,
        ttl: 63,
        dscp_ecn: 0,
        ident: 7,
        dont_frag: true,
    }
    .emit(&mut Ipv4Packet::new_unchecked(&mut p[..]));
    for (i, b) in p[ipv4::HEADER_LEN..].iter_mut().enumerate() {
        *b = i as u8;
    }
    p
}

/// A TCP SYN announcing MSS 1460.
fn syn4(src: &str, dst: &str) -> Vec<u8> {
    let mut p = udp4(src, dst, ipv4::HEADER_LEN + 24);
    let mut ip = Ipv4Packet::new_unchecked(&mut p[..]);
    ip.set_protocol(ip_proto::TCP);
    ip.fill_checksum();
    let tcp = [
        0x30, 0x39, 0x00, 0x50, 0, 0, 0, 1, 0, 0, 0, 0, 0x60, 0x02, 0xff, 0xff, 0, 0, 0, 0, 2, 4,
        0x05, 0xb4,
    ];
    p[ipv4::HEADER_LEN..].copy_from_slice(&tcp);
    p
}

fn mss_of(packet: &[u8]) -> u16 {
    u16::from_be_bytes([packet[ipv4::HEADER_LEN + 22], packet[ipv4::HEADER_LEN + 23]])
}

/// Seals `packet` at `from` and returns the one thing it produced.
fn seal(from: &mut EspTunnel, packet: &[u8]) -> (EspDestination, Vec<u8>) {
    let mut out = EspBatch::new(2048);
    let mut p = packet.to_vec();
    from.handle_inner(Instant::now(), &mut p, &mut out).unwrap();
    assert_eq!(out.len(), 1);
    let (d, bytes) = out.get(0).unwrap();
    (d, bytes.to_vec())
}

/// The ESP part of what `seal` produced.
fn esp_of((d, bytes): &(EspDestination, Vec<u8>)) -> Vec<u8> {
    match d {
        EspDestination::Raw { .. } => bytes[ipv6::HEADER_LEN..].to_vec(),
        EspDestination::Udp { .. } => bytes.clone(),
        EspDestination::Tun | EspDestination::Local => panic!("sealed to the host side"),
    }
}

fn open(to: &mut EspTunnel, esp: &[u8]) -> Result<Vec<u8>, EspDrop> {
    let mut out = EspBatch::new(2048);
    let from = to.config.remote;
    to.handle_esp(Instant::now(), esp, from, &mut out)?;
    assert_eq!(out.len(), 1);
    let (d, bytes) = out.get(0).unwrap();
    assert_eq!(d, EspDestination::Tun);
    Ok(bytes.to_vec())
}

#[test]
fn raw_round_trip_over_ipv6() {
    let (mut a, mut b) = pair();
    let packet = udp4("203.0.113.5", "198.51.100.9", 300);
    let sealed = seal(&mut a, &packet);
    assert_eq!(
        sealed.0,
        EspDestination::Raw {
            remote: B.parse().unwrap()
        }
    );
    let outer = Ipv6Packet::new_checked(&sealed.1[..]).unwrap();
    assert_eq!(outer.next_header(), ip_proto::ESP);
    assert_eq!(outer.src_addr(), A.parse::<Ipv6Addr>().unwrap());
    assert_eq!(outer.dst_addr(), B.parse::<Ipv6Addr>().unwrap());
    assert_eq!(outer.hop_limit(), 64);
    assert_eq!(
        usize::from(outer.payload_len()),
        sealed.1.len() - ipv6::HEADER_LEN
    );
    let esp = esp_of(&sealed);
    assert_eq!(&esp[..4], &0x100u32.to_be_bytes());
    assert_ne!(
        &esp[24..64],
        &packet[16..56],
        "the payload is not encrypted"
    );
    assert_eq!(open(&mut b, &esp).unwrap(), packet);
    assert_eq!(b.poll_event(), Some(EspEvent::EspReceived { spi: 0x100 }));
    assert_eq!(b.poll_event(), None);
    assert_eq!((a.stats().tx_packets, a.stats().tx_bytes), (1, 300));
    assert_eq!((b.stats().rx_packets, b.stats().rx_bytes), (1, 300));
    // And back.
    let back = udp4("198.51.100.9", "203.0.113.5", 100);
    let esp = esp_of(&seal(&mut b, &back));
    assert_eq!(open(&mut a, &esp).unwrap(), back);
}

#[test]
fn raw_round_trip_over_ipv4_sets_df_and_checksum() {
    let mut a = EspTunnel::new(config(
        "198.18.0.1",
        "198.18.0.2",
        "203.0.113.0/24",
        "198.51.100.0/24",
    ));
    let mut b = EspTunnel::new(config(
        "198.18.0.2",
        "198.18.0.1",
        "198.51.100.0/24",
        "203.0.113.0/24",
    ));
    install(&mut a, &mut b, 0x200);
    let packet = udp4("203.0.113.5", "198.51.100.9", 64);
    let (d, bytes) = seal(&mut a, &packet);
    assert_eq!(
        d,
        EspDestination::Raw {
            remote: "198.18.0.2".parse().unwrap()
        }
    );
    let outer = Ipv4Packet::new_checked(&bytes[..]).unwrap();
    assert!(outer.verify_checksum());
    assert!(outer.dont_frag());
    assert_eq!(outer.protocol(), ip_proto::ESP);
    assert_eq!(usize::from(outer.total_len()), bytes.len());
    assert_eq!(open(&mut b, &bytes[ipv4::HEADER_LEN..]).unwrap(), packet);
}

#[test]
fn udp_encapsulation_emits_bare_esp_to_the_peer_port() {
    let (mut a, mut b) = pair();
    a.set_udp_encap(Instant::now(), Some(4501));
    let packet = udp4("203.0.113.5", "198.51.100.9", 80);
    let sealed = seal(&mut a, &packet);
    assert_eq!(
        sealed.0,
        EspDestination::Udp {
            remote: SocketAddr::new(B.parse().unwrap(), 4501)
        }
    );
    assert_eq!(classify_udp(&sealed.1), UdpKind::Esp);
    assert_eq!(open(&mut b, &sealed.1).unwrap(), packet);
}

#[test]
fn a_run_of_sealed_packets_spans_one_slice_in_order() {
    let (mut a, mut b) = pair();
    a.set_udp_encap(Instant::now(), Some(4500));
    let mut out = EspBatch::new(8192);
    let packets: Vec<Vec<u8>> = [1200, 1200, 1200, 300]
        .iter()
        .map(|&len| udp4("203.0.113.5", "198.51.100.9", len))
        .collect();
    for p in &packets {
        a.handle_inner(Instant::now(), &mut p.clone(), &mut out)
            .unwrap();
    }
    assert_eq!(out.len(), 4);
    let whole = out.span(0..4).unwrap();
    let sizes: Vec<usize> = out.iter().map(|(_, p)| p.len()).collect();
    assert_eq!(whole.len(), sizes.iter().sum::<usize>());
    // Same inner size, same ESP size: the run can leave as one UDP train.
    assert_eq!(sizes[0], sizes[1]);
    let mut rest = whole;
    for (p, &size) in packets.iter().zip(&sizes) {
        let (esp, tail) = rest.split_at(size);
        assert_eq!(&open(&mut b, esp).unwrap(), p);
        rest = tail;
    }
    assert_eq!(out.span(1..3).unwrap().len(), sizes[1] + sizes[2]);
    assert_eq!(out.span(2..2), None);
    assert_eq!(out.span(3..5), None);
}

const ROUTER6: &str = "2001:db8:ff::1";

/// A Packet Too Big from a router to A, quoting `invoking` as far as it fits.
fn ptb(mtu: u32, invoking: &[u8]) -> Vec<u8> {
    let quote = &invoking[..invoking.len().min(1232)];
    let repr = wire::Icmpv6Repr::PacketTooBig { mtu, data: quote };
    let mut buf = vec![0xA5; repr.buffer_len()];
    repr.emit(
        &ROUTER6.parse().unwrap(),
        &A.parse().unwrap(),
        &mut wire::Icmpv6Packet::new_unchecked(&mut buf[..]),
    );
    buf
}

/// The whole IPv6 packet a UDP-encapsulated seal would leave as (the kernel adds these
/// headers; a router quotes them).
fn as_udp_on_the_wire(esp: &[u8], src_port: u16) -> Vec<u8> {
    let mut udp = Vec::new();
    udp.extend_from_slice(&src_port.to_be_bytes());
    udp.extend_from_slice(&4500u16.to_be_bytes());
    udp.extend_from_slice(&((esp.len() + 8) as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(esp);
    let repr = Ipv6Repr {
        src_addr: A.parse().unwrap(),
        dst_addr: B.parse().unwrap(),
        next_header: ip_proto::UDP,
        payload_len: udp.len(),
        hop_limit: 64,
        traffic_class: 0,
        flow_label: 0,
    };
    let mut packet = vec![0u8; ipv6::HEADER_LEN + udp.len()];
    repr.emit(&mut Ipv6Packet::new_unchecked(&mut packet[..]));
    packet[ipv6::HEADER_LEN..].copy_from_slice(&udp);
    packet
}

#[test]
fn packet_too_big_about_our_esp_lowers_the_inner_mtu() {
    let (mut a, _b) = pair();
    let t0 = Instant::now();
    let (_, sent) = seal(&mut a, &udp4("203.0.113.5", "198.51.100.9", 1300));
    let report = super::super::too_big_v6(
        ROUTER6.parse().unwrap(),
        A.parse().unwrap(),
        &ptb(1400, &sent),
    )
    .expect("a PTB about our raw ESP");
    assert_eq!(
        (report.local, report.remote, report.link_mtu),
        (A.parse().unwrap(), B.parse().unwrap(), 1400)
    );
    // 1400 - IPv6 40 - UDP 8 = 1352 of room; GCM: 1352 - 8 - 8 - 16 = 1320, aligned to 4,
    // less the 2-byte trailer.
    assert_eq!(a.lower_path_mtu(t0, report.link_mtu), Some(1318));
    assert_eq!(a.mtu(), 1318);
    assert_eq!(a.lower_path_mtu(t0, 1450), None, "never raised by a report");
    // A DF packet over the new MTU goes back to its sender with 1318 in it.
    let mut out = EspBatch::new(4096);
    let mut big = udp4("203.0.113.5", "198.51.100.9", 1319);
    assert_eq!(a.handle_inner(t0, &mut big, &mut out), Err(EspDrop::TooBig));
    let (d, icmp) = out.get(0).unwrap();
    assert_eq!(d, EspDestination::Local);
    assert_eq!(
        wire::Icmpv4Packet::new_checked(&icmp[ipv4::HEADER_LEN..])
            .unwrap()
            .next_hop_mtu(),
        1318
    );
    // It ages out.
    assert_eq!(a.poll_timeout(), Some(t0 + crate::PMTU_EXPIRY));
    assert!(a.expire_path_mtu(t0 + crate::PMTU_EXPIRY));
    assert_eq!(a.mtu(), 1400);
    assert_eq!(a.poll_timeout(), None);
}

#[test]
fn only_reports_about_our_esp_count() {
    let (mut a, _b) = pair();
    let router: Ipv6Addr = ROUTER6.parse().unwrap();
    let me: Ipv6Addr = A.parse().unwrap();
    let (_, raw) = seal(&mut a, &udp4("203.0.113.5", "198.51.100.9", 200));
    let esp = &raw[ipv6::HEADER_LEN..];
    // ESP in UDP from our 4500: ours; from another port: someone else's UDP.
    let ours = as_udp_on_the_wire(esp, 4500);
    assert!(super::super::too_big_v6(router, me, &ptb(1300, &ours)).is_some());
    let theirs = as_udp_on_the_wire(esp, 5353);
    assert_eq!(
        super::super::too_big_v6(router, me, &ptb(1300, &theirs)),
        None
    );
    // Below 1280 reads as 1280.
    let low = super::super::too_big_v6(router, me, &ptb(1000, &raw)).unwrap();
    assert_eq!(low.link_mtu, 1280);
    // A broken checksum, another ICMPv6 type, a quote too short for a header.
    let mut corrupt = ptb(1300, &raw);
    corrupt[9] ^= 1;
    assert_eq!(super::super::too_big_v6(router, me, &corrupt), None);
    let mut other = ptb(1300, &raw);
    other[0] = 1;
    assert_eq!(super::super::too_big_v6(router, me, &other), None);
    assert_eq!(
        super::super::too_big_v6(router, me, &ptb(1300, &raw[..30])),
        None
    );
    assert_eq!(super::super::too_big_v6(router, me, &[2, 0]), None);
}

#[test]
fn fragmentation_needed_about_esp_over_ipv4() {
    let quoted = {
        let mut p = udp4("198.18.1.1", "198.18.2.1", 60);
        let mut view = Ipv4Packet::new_unchecked(&mut p[..]);
        view.set_protocol(ip_proto::ESP);
        view.fill_checksum();
        p
    };
    let report = |mtu: u16, quote: &[u8]| {
        let repr = wire::Icmpv4Repr::DstUnreachable {
            code: wire::icmpv4::CODE_FRAG_NEEDED,
            next_hop_mtu: mtu,
            data: &quote[..28],
        };
        let mut icmp = vec![0u8; repr.buffer_len()];
        repr.emit(&mut wire::Icmpv4Packet::new_unchecked(&mut icmp[..]));
        let mut datagram = udp4("198.18.9.1", "198.18.1.1", 20 + icmp.len());
        let mut view = Ipv4Packet::new_unchecked(&mut datagram[..]);
        view.set_protocol(ip_proto::ICMP);
        view.fill_checksum();
        datagram[ipv4::HEADER_LEN..].copy_from_slice(&icmp);
        super::super::too_big_v4(&datagram)
    };
    let found = report(1454, &quoted).expect("a frag-needed about our ESP");
    assert_eq!(
        (found.local, found.remote, found.link_mtu),
        (
            "198.18.1.1".parse().unwrap(),
            "198.18.2.1".parse().unwrap(),
            1454
        )
    );
    assert_eq!(report(0, &quoted), None, "no next-hop MTU");
    let not_esp = udp4("198.18.1.1", "198.18.2.1", 60);
    assert_eq!(report(1454, &not_esp), None);
}

#[test]
fn classify_udp_follows_rfc_3948() {
    assert_eq!(classify_udp(&[0xff]), UdpKind::Keepalive);
    assert_eq!(classify_udp(&[0, 0, 0, 0, 1, 2]), UdpKind::Ike);
    assert_eq!(classify_udp(&[0, 0, 1, 0, 0, 0, 0, 1]), UdpKind::Esp);
    assert_eq!(classify_udp(&[1, 2, 3]), UdpKind::Malformed);
    assert_eq!(classify_udp(&[]), UdpKind::Malformed);
}

#[test]
fn replayed_packet_is_dropped_and_counted() {
    let (mut a, mut b) = pair();
    let esp = esp_of(&seal(&mut a, &udp4("203.0.113.5", "198.51.100.9", 60)));
    open(&mut b, &esp).unwrap();
    assert_eq!(open(&mut b, &esp), Err(EspDrop::Replay));
    assert_eq!(b.stats().drops(EspDrop::Replay), 1);
    assert_eq!(b.stats().rx_packets, 1);
}

#[test]
fn unknown_spi_forgery_and_spoofed_source_are_dropped() {
    let (mut a, mut b) = pair();
    let mut esp = esp_of(&seal(&mut a, &udp4("203.0.113.5", "198.51.100.9", 60)));
    let mut out = EspBatch::new(256);
    let spoof: IpAddr = "2001:db8:666::1".parse().unwrap();
    let r = b.handle_esp(Instant::now(), &esp, spoof, &mut out);
    assert_eq!(r, Err(EspDrop::SpoofedOuterSource));
    esp[20] ^= 1;
    assert_eq!(open(&mut b, &esp), Err(EspDrop::AuthFailed));
    esp[..4].copy_from_slice(&0x999u32.to_be_bytes());
    assert_eq!(open(&mut b, &esp), Err(EspDrop::UnknownSpi));
    assert_eq!(open(&mut b, &esp[..6]), Err(EspDrop::Malformed));
    assert!(out.is_empty(), "nothing half-written stays in the batch");
    // None of them proves the peer alive.
    assert_eq!(b.poll_event(), None);
    assert_eq!(b.stats().total_drops(), 4);
}

#[test]
fn outbound_filters_follow_the_traffic_selectors() {
    let (mut a, _) = pair();
    let mut out = EspBatch::new(2048);
    let now = Instant::now();
    let mut stray = udp4("203.0.113.5", "198.18.9.9", 60);
    assert_eq!(
        a.handle_inner(now, &mut stray, &mut out),
        Err(EspDrop::NotRouted)
    );
    let mut foreign = udp4("198.18.7.7", "198.51.100.9", 60);
    assert_eq!(
        a.handle_inner(now, &mut foreign, &mut out),
        Err(EspDrop::SourceNotLocal)
    );
    let mut junk = vec![0x45, 0, 0];
    assert_eq!(
        a.handle_inner(now, &mut junk, &mut out),
        Err(EspDrop::Malformed)
    );
    assert!(out.is_empty());
    assert_eq!(a.stats().drops(EspDrop::NotRouted), 1);
}

#[test]
fn inbound_filters_follow_the_traffic_selectors() {
    let (mut a, mut b) = pair();
    // A lets more through than B accepts: B must still refuse it.
    a.config.local_subnets = nets(&["0.0.0.0/0"]);
    a.config.routes = nets(&["0.0.0.0/0"]);
    let esp = esp_of(&seal(&mut a, &udp4("198.18.7.7", "198.51.100.9", 60)));
    assert_eq!(open(&mut b, &esp), Err(EspDrop::InnerSourceNotAllowed));
    let esp = esp_of(&seal(&mut a, &udp4("203.0.113.5", "198.18.9.9", 60)));
    assert_eq!(open(&mut b, &esp), Err(EspDrop::DestinationNotLocal));
    // Genuine ESP from the peer all the same.
    assert_eq!(b.poll_event(), Some(EspEvent::EspReceived { spi: 0x100 }));
}

#[test]
fn syn_is_clamped_to_the_tunnel_mtu() {
    let (mut a, mut b) = pair();
    let syn = syn4("203.0.113.5", "198.51.100.9");
    let esp = esp_of(&seal(&mut a, &syn));
    let got = open(&mut b, &esp).unwrap();
    assert_eq!(mss_of(&got), 1400 - 40);
    assert_eq!(a.stats().mss_clamped, 1);
    a.config.mss_clamp = MssClamp::Off;
    let esp = esp_of(&seal(&mut a, &syn));
    b.config.mss_clamp = MssClamp::Fixed(1200);
    assert_eq!(mss_of(&open(&mut b, &esp).unwrap()), 1200);
}

#[test]
fn too_big_gets_an_icmp_error_back() {
    let (mut a, _) = pair();
    let mut out = EspBatch::new(4096);
    let mut big = udp4("203.0.113.5", "198.51.100.9", 1401);
    let r = a.handle_inner(Instant::now(), &mut big, &mut out);
    assert_eq!(r, Err(EspDrop::TooBig));
    let (d, icmp) = out.get(0).unwrap();
    assert_eq!(d, EspDestination::Local);
    let ip = Ipv4Packet::new_checked(icmp).unwrap();
    assert_eq!(ip.protocol(), ip_proto::ICMP);
    assert_eq!(ip.dst_addr(), "203.0.113.5".parse::<Ipv4Addr>().unwrap());
    // Type 3 code 4, next-hop MTU in bytes 6..8 of the ICMP header.
    let body = &icmp[ipv4::HEADER_LEN..];
    assert_eq!((body[0], body[1]), (3, 4));
    assert_eq!(u16::from_be_bytes([body[6], body[7]]), 1400);
    assert_eq!(a.stats().icmp_sent, 1);
    // Exactly the MTU still goes.
    let mut fits = udp4("203.0.113.5", "198.51.100.9", 1400);
    out.clear();
    a.handle_inner(Instant::now(), &mut fits, &mut out).unwrap();
}

#[test]
fn nothing_is_sent_without_an_sa() {
    let mut a = EspTunnel::new(config(A, B, "203.0.113.0/24", "198.51.100.0/24"));
    let mut out = EspBatch::new(2048);
    let mut p = udp4("203.0.113.5", "198.51.100.9", 60);
    assert_eq!(
        a.handle_inner(Instant::now(), &mut p, &mut out),
        Err(EspDrop::NoSa)
    );
    assert!(out.is_empty());
}

#[test]
fn rekey_is_make_before_break() {
    let (mut a, mut b) = pair();
    let p = |n: usize| udp4("203.0.113.5", "198.51.100.9", 60 + n);
    // In flight on the old SA while the new one comes up.
    let old = esp_of(&seal(&mut a, &p(0)));
    install(&mut a, &mut b, 0x300);
    assert_eq!(a.active_outbound(), Some(0x300));
    let new = esp_of(&seal(&mut a, &p(1)));
    assert_eq!(&new[..4], &0x300u32.to_be_bytes());
    // The new one arrives first; the old one is still opened.
    assert_eq!(open(&mut b, &new).unwrap(), p(1));
    assert_eq!(open(&mut b, &old).unwrap(), p(0));
    assert_eq!(b.inbound_count(), 2);
    // Once IKE deletes the old CHILD SA, its packets are unknown.
    let late = {
        let mut c = EspTunnel::new(a.config.clone());
        c.install_outbound(OutboundSa::new(0x100, GCM, &KEY_AB, &[], false).unwrap());
        c.outbound[0].set_seq(5);
        esp_of(&seal(&mut c, &p(2)))
    };
    b.remove_sa(0x100, 0x101);
    assert_eq!(open(&mut b, &late), Err(EspDrop::UnknownSpi));
    assert_eq!(b.active_outbound(), Some(0x301));
    // Removing the newest outbound SA falls back to the one before.
    a.remove_sa(0x301, 0x300);
    assert_eq!(a.active_outbound(), Some(0x100));
    a.clear_sas();
    assert_eq!((a.active_outbound(), a.inbound_count()), (None, 0));
}

#[test]
fn liveness_is_reported_once_a_second_per_sa() {
    let (mut a, mut b) = pair();
    let t0 = Instant::now();
    let mut out = EspBatch::new(8192);
    let from = b.config.remote;
    for ms in [0u64, 10, 500, 999, 1000, 1500, 2100] {
        let esp = esp_of(&seal(&mut a, &udp4("203.0.113.5", "198.51.100.9", 60)));
        b.handle_esp(t0 + Duration::from_millis(ms), &esp, from, &mut out)
            .unwrap();
    }
    let mut n = 0;
    while let Some(e) = b.poll_event() {
        assert_eq!(e, EspEvent::EspReceived { spi: 0x100 });
        n += 1;
    }
    assert_eq!(n, 3, "at 0, 1000 and 2100 ms");
}

#[test]
fn nat_keepalives_fill_silence_only() {
    let (mut a, _) = pair();
    let t0 = Instant::now();
    let mut out = EspBatch::new(2048);
    assert_eq!(a.poll_timeout(), None, "no keepalives for raw ESP");
    a.set_udp_encap(t0, Some(NAT_T_PORT));
    assert_eq!(a.poll_timeout(), Some(t0 + KEEPALIVE_INTERVAL));
    a.handle_timeout(t0 + Duration::from_secs(19), &mut out);
    assert!(out.is_empty());
    a.handle_timeout(t0 + KEEPALIVE_INTERVAL, &mut out);
    let remote = SocketAddr::new(B.parse().unwrap(), NAT_T_PORT);
    assert_eq!(
        out.get(0),
        Some((EspDestination::Udp { remote }, &KEEPALIVE[..]))
    );
    // Traffic pushes the next keepalive back.
    let t1 = t0 + Duration::from_secs(30);
    let mut p = udp4("203.0.113.5", "198.51.100.9", 60);
    out.clear();
    a.handle_inner(t1, &mut p, &mut out).unwrap();
    assert_eq!(a.poll_timeout(), Some(t1 + KEEPALIVE_INTERVAL));
    a.handle_timeout(t0 + Duration::from_secs(40), &mut out);
    assert_eq!(out.len(), 1, "only the data packet");
    assert_eq!(a.stats().keepalives_sent, 1);
    a.set_udp_encap(t1, None);
    assert_eq!(a.poll_timeout(), None);
}

#[test]
fn drop_names_are_unique() {
    let mut names: Vec<&str> = EspDrop::ALL.iter().map(|d| d.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), EspDrop::ALL.len());
    for (i, d) in EspDrop::ALL.iter().enumerate() {
        assert_eq!(*d as usize, i);
    }
}
