use std::time::Duration;

use wire::{Icmpv6Packet, Icmpv6Repr};

use super::*;
use crate::{DropReason, EncapLimit, Event, PMTU_EXPIRY, PathId, PathMtuReason, Verdict};

const ROUTER: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0xff, 0, 0, 0, 1);

fn icmpv6(repr: &Icmpv6Repr<'_>, src: Ipv6Addr, dst: Ipv6Addr) -> Vec<u8> {
    let mut buf = vec![0xA5; repr.buffer_len()];
    repr.emit(&src, &dst, &mut Icmpv6Packet::new_unchecked(&mut buf[..]));
    buf
}

/// A Packet Too Big from a router on the path, quoting `invoking`.
fn ptb(mtu: u32, invoking: &[u8]) -> Vec<u8> {
    let quote = &invoking[..invoking.len().min(1232)];
    icmpv6(
        &Icmpv6Repr::PacketTooBig { mtu, data: quote },
        ROUTER,
        LOCAL,
    )
}

/// An outer packet this tunnel sent, as a router would quote it.
fn sent_packet(dp: &mut Dataplane, id: TunnelId) -> Vec<u8> {
    let mut out = Batch::new(2048);
    let _ = dp.handle_inner(now(), id, &mut udp4(NEAR4, FAR4, 1400, true), &mut out);
    packets(&out).remove(0).1
}

#[test]
fn packet_too_big_lowers_the_path_mtu() {
    let (mut dp, id) = dataplane(config(Mode::Ipip6));
    let quoted = sent_packet(&mut dp, id);
    let t0 = now();
    let v = dp.handle_icmpv6(t0, ROUTER, LOCAL, &ptb(1400, &quoted));
    assert_eq!(v, Verdict::Consumed);
    assert_eq!(dp.stats(id).unwrap().path_mtu, 1360);
    assert_eq!(
        dp.poll_event(),
        Some(Event::PathMtuChanged {
            tunnel: id,
            path: PathId(0),
            mtu: 1360,
            reason: PathMtuReason::PacketTooBig {
                from: ROUTER,
                reported: 1400
            },
        })
    );
    assert_eq!(dp.poll_event(), None);
    assert_eq!(dp.poll_timeout(), Some(t0 + PMTU_EXPIRY));
}

#[test]
fn the_option_costs_eight_more_bytes() {
    let mut c = config(Mode::Ipip6);
    c.encap_limit = EncapLimit::Limit(4);
    c.mtu = 1452;
    let (mut dp, id) = dataplane(c);
    let quoted = sent_packet(&mut dp, id);
    assert_eq!(quoted[6], ip_proto::DSTOPTS);
    let _ = dp.handle_icmpv6(now(), ROUTER, LOCAL, &ptb(1400, &quoted));
    assert_eq!(dp.stats(id).unwrap().path_mtu, 1352);
}

#[test]
fn never_raises_and_never_goes_below_the_ipv6_minimum() {
    let (mut dp, id) = dataplane(config(Mode::Ipip6));
    let quoted = sent_packet(&mut dp, id);
    let t0 = now();
    assert_eq!(
        dp.handle_icmpv6(t0, ROUTER, LOCAL, &ptb(1500, &quoted)),
        Verdict::Consumed
    );
    assert_eq!(dp.stats(id).unwrap().path_mtu, 1460);
    assert_eq!(dp.poll_event(), None);
    assert_eq!(dp.poll_timeout(), None);

    let _ = dp.handle_icmpv6(t0, ROUTER, LOCAL, &ptb(1400, &quoted));
    let _ = dp.handle_icmpv6(t0, ROUTER, LOCAL, &ptb(1450, &quoted));
    assert_eq!(dp.stats(id).unwrap().path_mtu, 1360);

    // Below 1280 is not an IPv6 link: taken as 1280.
    let _ = dp.handle_icmpv6(t0, ROUTER, LOCAL, &ptb(576, &quoted));
    assert_eq!(dp.stats(id).unwrap().path_mtu, 1240);
    let _ = dp.handle_icmpv6(t0, ROUTER, LOCAL, &ptb(0, &quoted));
    assert_eq!(dp.stats(id).unwrap().path_mtu, 1240);
    let mtus: Vec<_> = std::iter::from_fn(|| dp.poll_event())
        .filter_map(|e| match e {
            Event::PathMtuChanged { mtu, .. } => Some(mtu),
            _ => None,
        })
        .collect();
    assert_eq!(mtus, vec![1360, 1240]);
}

#[test]
fn ipv6_inner_packets_keep_1280() {
    let (mut dp, id) = dataplane(config(Mode::Any));
    let quoted = sent_packet(&mut dp, id);
    let _ = dp.handle_icmpv6(now(), ROUTER, LOCAL, &ptb(1280, &quoted));
    assert_eq!(dp.stats(id).unwrap().path_mtu, 1240);
    let mut out = Batch::new(4096);
    // 1280 bytes of IPv6 still go through, 1260 of IPv4 do not.
    let v = dp.handle_inner(now(), id, &mut udp6(NEAR6, FAR6, 1232), &mut out);
    assert_eq!(v, Verdict::Forwarded);
    let v = dp.handle_inner(now(), id, &mut udp4(NEAR4, FAR4, 1232, true), &mut out);
    assert_eq!(v, Verdict::Dropped(DropReason::TooBig));
}

#[test]
fn expires_back_to_the_configured_mtu() {
    let (mut dp, id) = dataplane(config(Mode::Ipip6));
    let quoted = sent_packet(&mut dp, id);
    let t0 = now();
    let _ = dp.handle_icmpv6(t0, ROUTER, LOCAL, &ptb(1400, &quoted));
    let _ = dp.poll_event();
    // The same report again keeps the value alive.
    let t1 = t0 + Duration::from_secs(120);
    let _ = dp.handle_icmpv6(t1, ROUTER, LOCAL, &ptb(1400, &quoted));
    assert_eq!(dp.poll_event(), None);
    assert_eq!(dp.poll_timeout(), Some(t1 + PMTU_EXPIRY));

    dp.handle_timeout(t0 + PMTU_EXPIRY, &mut Batch::new(0));
    assert_eq!(dp.stats(id).unwrap().path_mtu, 1360);
    assert_eq!(dp.poll_event(), None);

    dp.handle_timeout(t1 + PMTU_EXPIRY, &mut Batch::new(0));
    assert_eq!(dp.stats(id).unwrap().path_mtu, 1460);
    assert_eq!(
        dp.poll_event(),
        Some(Event::PathMtuChanged {
            tunnel: id,
            path: PathId(0),
            mtu: 1460,
            reason: PathMtuReason::Expired
        })
    );
    assert_eq!(dp.poll_timeout(), None);
}

#[test]
fn mss_auto_follows_the_path_mtu() {
    let mut c = config(Mode::Ipip6);
    c.mss_clamp = MssClamp::Auto;
    let (mut dp, id) = dataplane(c);
    let quoted = sent_packet(&mut dp, id);
    let _ = dp.handle_icmpv6(now(), ROUTER, LOCAL, &ptb(1400, &quoted));
    let mut out = Batch::new(2048);
    let mut packet = tcp4(NEAR4, FAR4, &syn(wire::tcp::flags::SYN, 1460));
    let _ = dp.handle_inner(now(), id, &mut packet, &mut out);
    let outer = packets(&out).remove(0).1;
    assert_eq!(
        TcpPacket::new_checked(&outer[60..]).unwrap().mss(),
        Ok(Some(1320))
    );
}

#[test]
fn ignores_packet_too_big_for_other_traffic() {
    let (mut dp, id) = dataplane(config(Mode::Ipip6));
    let quoted = sent_packet(&mut dp, id);

    // Our own host's traffic to the same remote, e.g. SSH: not tunnel packets.
    let mut ssh = quoted.clone();
    ssh[6] = ip_proto::TCP;
    // Tunnel packets of someone else's tunnel.
    let mut other = quoted.clone();
    other[8..24].copy_from_slice(&"2001:db8:0:9::1".parse::<Ipv6Addr>().unwrap().octets());
    // A quote too short to hold an IPv6 header, and one that is not IPv6.
    let short = quoted[..39].to_vec();
    let mut not_v6 = quoted.clone();
    not_v6[0] = 0x45;

    for (message, reason) in [
        (ptb(1400, &ssh), DropReason::NoTunnel),
        (ptb(1400, &other), DropReason::NoTunnel),
        (ptb(1400, &short), DropReason::NoTunnel),
        (ptb(1400, &not_v6), DropReason::NoTunnel),
    ] {
        assert_eq!(
            dp.handle_icmpv6(now(), ROUTER, LOCAL, &message),
            Verdict::Dropped(reason)
        );
    }
    assert_eq!(dp.stats(id).unwrap().path_mtu, 1460);
    assert_eq!(dp.poll_event(), None);
    assert_eq!(dp.unattributed_drops().no_tunnel, 4);
}

#[test]
fn other_icmpv6_and_bad_checksums_are_not_acted_on() {
    let (mut dp, id) = dataplane(config(Mode::Ipip6));
    let quoted = sent_packet(&mut dp, id);
    let echo = icmpv6(
        &Icmpv6Repr::EchoRequest {
            ident: 1,
            seq_no: 1,
            data: b"hi",
        },
        ROUTER,
        LOCAL,
    );
    assert_eq!(
        dp.handle_icmpv6(now(), ROUTER, LOCAL, &echo),
        Verdict::Dropped(DropReason::UnhandledIcmp)
    );
    let message = ptb(1400, &quoted);
    // Checksummed for other addresses.
    assert_eq!(
        dp.handle_icmpv6(now(), REMOTE, LOCAL, &message),
        Verdict::Dropped(DropReason::Malformed)
    );
    assert_eq!(
        dp.handle_icmpv6(now(), ROUTER, LOCAL, &message[..7]),
        Verdict::Dropped(DropReason::Malformed)
    );
    assert_eq!(dp.stats(id).unwrap().path_mtu, 1460);
}

/// Checks the outer fragments of one packet and returns the first piece's
/// Fragment header Next Header and the reassembled fragmentable part.
fn reassemble_outer(out: &Batch, link_mtu: usize) -> (u8, Vec<u8>) {
    let mut pieces = Vec::new();
    for (destination, bytes) in out {
        assert_eq!(
            destination,
            Destination::Underlay {
                remote: REMOTE.into()
            }
        );
        assert!(bytes.len() <= link_mtu, "{} > {link_mtu}", bytes.len());
        let ip = Ipv6Packet::new_checked(bytes).unwrap();
        assert_eq!((ip.src_addr(), ip.dst_addr()), (LOCAL, REMOTE));
        assert_eq!(ip.next_header(), ip_proto::FRAGMENT);
        let payload = ip.payload();
        let word = u16::from_be_bytes([payload[2], payload[3]]);
        let ident = u32::from_be_bytes(payload[4..8].try_into().unwrap());
        pieces.push((
            usize::from(word & !7),
            word & 1 == 1,
            payload[0],
            ident,
            payload[8..].to_vec(),
        ));
    }
    pieces.sort_by_key(|p| p.0);
    let mut data = Vec::new();
    for (i, (offset, more, _, ident, piece)) in pieces.iter().enumerate() {
        assert_eq!(*offset, data.len());
        assert_eq!(*ident, pieces[0].3);
        assert_eq!(*more, i + 1 < pieces.len());
        if *more {
            assert_eq!(piece.len() % 8, 0);
        }
        data.extend_from_slice(piece);
    }
    (pieces[0].2, data)
}

#[test]
fn ipv6_at_the_floor_is_sent_in_outer_fragments() {
    for limit in [EncapLimit::None, EncapLimit::Limit(4)] {
        let mut c = config(Mode::Any);
        c.encap_limit = limit;
        c.mtu = 1452;
        let (mut dp, id) = dataplane(c);
        let quoted = sent_packet(&mut dp, id);
        let _ = dp.handle_icmpv6(now(), ROUTER, LOCAL, &ptb(1280, &quoted));
        let inner = udp6(NEAR6, FAR6, 1232);
        let mut out = Batch::new(4096);
        assert_eq!(
            dp.handle_inner(now(), id, &mut inner.clone(), &mut out),
            Verdict::Forwarded
        );
        assert_eq!(out.len(), 2);
        let (next_header, data) = reassemble_outer(&out, 1280);
        match limit {
            EncapLimit::None => {
                assert_eq!(next_header, ip_proto::IPV6);
                assert_eq!(data, inner);
            }
            EncapLimit::Limit(_) => {
                assert_eq!(next_header, ip_proto::DSTOPTS);
                assert_eq!(&data[..8], &[ip_proto::IPV6, 0, 4, 1, 4, 1, 1, 0]);
                assert_eq!(&data[8..], &inner[..]);
            }
        }
        let stats = dp.stats(id).unwrap();
        assert_eq!(stats.tx_packets, 3);
        assert_eq!(stats.fragments_sent, 2);
        assert_eq!(
            stats.tx_bytes,
            (quoted.len() - 40 - limit.overhead() + inner.len()) as u64
        );

        // Packets that fit the path still go out whole.
        out.clear();
        let small = udp6(NEAR6, FAR6, 1000);
        let _ = dp.handle_inner(now(), id, &mut small.clone(), &mut out);
        assert_eq!(out.len(), 1);
        let (_, outer) = out.get(0).unwrap();
        assert_ne!(outer[6], ip_proto::FRAGMENT);
    }
}

#[test]
fn outer_fragments_get_fresh_identifications() {
    let (mut dp, id) = dataplane(config(Mode::Any));
    let quoted = sent_packet(&mut dp, id);
    let _ = dp.handle_icmpv6(now(), ROUTER, LOCAL, &ptb(1280, &quoted));
    let mut idents = Vec::new();
    for _ in 0..3 {
        let mut out = Batch::new(4096);
        let _ = dp.handle_inner(now(), id, &mut udp6(NEAR6, FAR6, 1232), &mut out);
        let (_, first) = out.get(0).unwrap();
        idents.push(u32::from_be_bytes(first[44..48].try_into().unwrap()));
    }
    idents.dedup();
    assert_eq!(idents.len(), 3);
}

const ROUTER4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 254);

/// A Fragmentation Needed from a router on an IPv4 path, quoting the header and first 8
/// bytes of `invoking` (RFC 792), in a whole datagram as a raw ICMP socket delivers it.
fn frag_needed(next_hop_mtu: u16, invoking: &[u8]) -> Vec<u8> {
    let repr = wire::Icmpv4Repr::DstUnreachable {
        code: wire::icmpv4::CODE_FRAG_NEEDED,
        next_hop_mtu,
        data: &invoking[..28],
    };
    let mut icmp = vec![0x5A; repr.buffer_len()];
    repr.emit(&mut wire::Icmpv4Packet::new_unchecked(&mut icmp[..]));
    ipv4(ROUTER4, LOCAL4, ip_proto::ICMP, &icmp, false)
}

/// The IPv4 path ("pppoe") carries traffic alone; returns an outer packet it sent, DF set.
fn ipv4_path_sent_packet() -> (Dataplane, TunnelId, Vec<u8>) {
    let mut c = two_paths(Mode::Ipip6);
    c.paths.remove(0);
    let (mut dp, id) = dataplane(c);
    let mut out = Batch::new(2048);
    let _ = dp.handle_inner(now(), id, &mut udp4(NEAR4, FAR4, 1400, true), &mut out);
    let (_, sent) = packets(&out).remove(0);
    assert!(Ipv4Packet::new_checked(&sent[..]).unwrap().dont_frag());
    (dp, id, sent)
}

#[test]
fn fragmentation_needed_lowers_an_ipv4_paths_mtu() {
    let (mut dp, id, sent) = ipv4_path_sent_packet();
    let t0 = now();
    let v = dp.handle_icmpv4(t0, &frag_needed(1454, &sent));
    assert_eq!(v, Verdict::Consumed);
    // PPPoE's 1454 less the 20-byte outer IPv4 header.
    assert_eq!(dp.stats(id).unwrap().path_mtu, 1434);
    assert_eq!(
        dp.poll_event(),
        Some(Event::PathMtuChanged {
            tunnel: id,
            path: PathId(0),
            mtu: 1434,
            reason: PathMtuReason::FragmentationNeeded {
                from: ROUTER4,
                reported: 1454
            },
        })
    );
    assert_eq!(dp.poll_timeout(), Some(t0 + PMTU_EXPIRY));
    // The next DF packet over the new MTU goes back to its sender as frag-needed.
    let mut out = Batch::new(4096);
    let v = dp.handle_inner(t0, id, &mut udp4(NEAR4, FAR4, 1440, true), &mut out);
    assert_eq!(v, Verdict::Dropped(DropReason::TooBig));
    // A higher report never raises it again.
    let _ = dp.handle_icmpv4(t0, &frag_needed(1480, &sent));
    assert_eq!(dp.stats(id).unwrap().path_mtu, 1434);
}

#[test]
fn other_icmpv4_is_left_to_the_kernel() {
    let (mut dp, id, sent) = ipv4_path_sent_packet();
    let t0 = now();
    let unchanged = |dp: &Dataplane| dp.stats(id).unwrap().path_mtu;
    let before = unchanged(&dp);
    // Reported 0 (a router from before RFC 1191).
    assert_eq!(
        dp.handle_icmpv4(t0, &frag_needed(0, &sent)),
        Verdict::Dropped(DropReason::UnhandledIcmp)
    );
    // Another unreachable code.
    let mut other = frag_needed(1400, &sent);
    other[21] = 1;
    wire::Icmpv4Packet::new_unchecked(&mut other[20..]).fill_checksum();
    assert_eq!(
        dp.handle_icmpv4(t0, &other),
        Verdict::Dropped(DropReason::UnhandledIcmp)
    );
    // A corrupted checksum.
    let mut corrupt = frag_needed(1400, &sent);
    corrupt[30] ^= 1;
    assert_eq!(
        dp.handle_icmpv4(t0, &corrupt),
        Verdict::Dropped(DropReason::Malformed)
    );
    // A quote of someone else's packet.
    let mut foreign = sent.clone();
    foreign[16..20].copy_from_slice(&[198, 18, 9, 9]);
    assert_eq!(
        dp.handle_icmpv4(t0, &frag_needed(1400, &foreign)),
        Verdict::Dropped(DropReason::NoTunnel)
    );
    // Truncated and garbage datagrams.
    assert_eq!(
        dp.handle_icmpv4(t0, &frag_needed(1400, &sent)[..24]),
        Verdict::Dropped(DropReason::Malformed)
    );
    assert_eq!(
        dp.handle_icmpv4(t0, &[0x45; 3]),
        Verdict::Dropped(DropReason::Malformed)
    );
    assert_eq!(unchanged(&dp), before);
    assert_eq!(dp.poll_event(), None);
}
