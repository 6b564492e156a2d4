use std::time::Duration;

use wire::{Icmpv4Packet, Icmpv6Packet, icmpv4, icmpv6};

use super::*;
use crate::{DropReason, IcmpRateLimit, Verdict};

fn small_tunnel(mode: Mode, mtu: u16) -> (Dataplane, TunnelId) {
    let mut c = config(mode);
    c.mtu = mtu;
    dataplane(c)
}

#[test]
fn ipv4_with_df_gets_fragmentation_needed() {
    let (mut dp, id) = small_tunnel(Mode::Ipip6, 1400);
    let mut out = Batch::new(4096);
    let fits = udp4(NEAR4, FAR4, 1400 - 28, true);
    assert_eq!(
        dp.handle_inner(now(), id, &mut fits.clone(), &mut out),
        Verdict::Forwarded
    );
    out.clear();
    let big = udp4(NEAR4, FAR4, 1400 - 27, true);
    assert_eq!(
        dp.handle_inner(now(), id, &mut big.clone(), &mut out),
        Verdict::Dropped(DropReason::TooBig)
    );
    let got = packets(&out);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, Destination::Local);
    let ip = Ipv4Packet::new_checked(&got[0].1[..]).unwrap();
    assert!(ip.verify_checksum());
    assert_eq!(ip.src_addr(), ICMP_SOURCE4);
    assert_eq!(ip.dst_addr(), NEAR4);
    assert_eq!(ip.ttl(), 64);
    assert_eq!(ip.protocol(), ip_proto::ICMP);
    assert_eq!(usize::from(ip.total_len()), 576);
    let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
    assert!(icmp.verify_checksum());
    assert_eq!(icmp.msg_type(), icmpv4::msg_type::DST_UNREACHABLE);
    assert_eq!(icmp.code(), icmpv4::CODE_FRAG_NEEDED);
    assert_eq!(icmp.next_hop_mtu(), 1400);
    assert_eq!(icmp.data(), &big[..548]);

    let stats = dp.stats(id).unwrap();
    assert_eq!(stats.icmp_sent, 1);
    assert_eq!(stats.drops.too_big, 1);
    assert_eq!(stats.tx_packets, 1);
}

#[test]
fn small_invoking_packets_are_quoted_whole() {
    let (mut dp, id) = small_tunnel(Mode::Ipip6, 100);
    let mut out = Batch::new(4096);
    let big = udp4(NEAR4, FAR4, 80, true);
    let _ = dp.handle_inner(now(), id, &mut big.clone(), &mut out);
    let (_, error) = packets(&out).remove(0);
    assert_eq!(error.len(), 20 + 8 + big.len());
    assert_eq!(&error[28..], &big[..]);
}

#[test]
fn ipv6_gets_packet_too_big() {
    let (mut dp, id) = small_tunnel(Mode::Any, 1300);
    let mut out = Batch::new(4096);
    let big = udp6(NEAR6, FAR6, 1400);
    assert_eq!(
        dp.handle_inner(now(), id, &mut big.clone(), &mut out),
        Verdict::Dropped(DropReason::TooBig)
    );
    let got = packets(&out);
    assert_eq!(got[0].0, Destination::Local);
    let ip = Ipv6Packet::new_checked(&got[0].1[..]).unwrap();
    assert_eq!(ip.src_addr(), ICMP_SOURCE6);
    assert_eq!(ip.dst_addr(), NEAR6);
    assert_eq!(ip.next_header(), ip_proto::ICMPV6);
    assert_eq!(got[0].1.len(), 1280);
    let icmp = Icmpv6Packet::new_checked(ip.payload()).unwrap();
    assert!(icmp.verify_checksum(&ICMP_SOURCE6, &NEAR6));
    assert_eq!(icmp.msg_type(), icmpv6::msg_type::PACKET_TOO_BIG);
    assert_eq!(icmp.mtu(), 1300);
    assert_eq!(icmp.data(), &big[..1232]);
    assert_eq!(dp.stats(id).unwrap().icmp_sent, 1);
}

#[test]
fn no_error_without_an_icmp_source() {
    let mut c = config(Mode::Any);
    c.mtu = 1300;
    c.icmp_source_v4 = None;
    c.icmp_source_v6 = None;
    let (mut dp, id) = dataplane(c);
    let mut out = Batch::new(4096);
    for mut packet in [udp4(NEAR4, FAR4, 1400, true), udp6(NEAR6, FAR6, 1400)] {
        assert_eq!(
            dp.handle_inner(now(), id, &mut packet, &mut out),
            Verdict::Dropped(DropReason::TooBig)
        );
    }
    assert!(out.is_empty());
    assert_eq!(dp.stats(id).unwrap().icmp_sent, 0);
    assert_eq!(dp.stats(id).unwrap().drops.too_big, 2);
}

#[test]
fn never_an_error_about_an_error() {
    let (mut dp, id) = small_tunnel(Mode::Any, 1300);
    let mut out = Batch::new(4096);
    let mut unreachable = vec![icmpv4::msg_type::DST_UNREACHABLE, 1, 0, 0, 0, 0, 0, 0];
    unreachable.resize(1400, 0);
    let mut packet = ipv4(NEAR4, FAR4, ip_proto::ICMP, &unreachable, true);
    assert_eq!(
        dp.handle_inner(now(), id, &mut packet, &mut out),
        Verdict::Dropped(DropReason::TooBig)
    );
    let mut ptb6 = vec![icmpv6::msg_type::PACKET_TOO_BIG, 0, 0, 0, 0, 0, 5, 0];
    ptb6.resize(1400, 0);
    let mut packet = ipv6(NEAR6, FAR6, ip_proto::ICMPV6, &ptb6);
    assert_eq!(
        dp.handle_inner(now(), id, &mut packet, &mut out),
        Verdict::Dropped(DropReason::TooBig)
    );
    assert!(out.is_empty());
    assert_eq!(dp.stats(id).unwrap().icmp_sent, 0);

    // Echo requests are queries and do get an answer.
    let mut echo = vec![icmpv4::msg_type::ECHO_REQUEST, 0, 0, 0, 0, 0, 0, 0];
    echo.resize(1400, 0);
    let mut packet = ipv4(NEAR4, FAR4, ip_proto::ICMP, &echo, true);
    let _ = dp.handle_inner(now(), id, &mut packet, &mut out);
    assert_eq!(out.len(), 1);
}

#[test]
fn errors_are_rate_limited_per_tunnel() {
    let mut dp = Dataplane::with_icmp_rate_limit(IcmpRateLimit {
        per_second: 100,
        burst: 20,
    });
    let mut c = config(Mode::Ipip6);
    c.mtu = 1000;
    let first = dp.add_tunnel(c.clone()).unwrap();
    c.paths[0].remote = "2001:db8:0:3::1".parse().unwrap();
    let second = dp.add_tunnel(c).unwrap();
    let t0 = now();
    let mut out = Batch::new(65536);
    let big = udp4(NEAR4, FAR4, 1200, true);
    let verdicts: Vec<_> = (0..25)
        .map(|_| dp.handle_inner(t0, first, &mut big.clone(), &mut out))
        .collect();
    let limited = Verdict::Dropped(DropReason::IcmpRateLimited);
    assert_eq!(verdicts.iter().filter(|v| **v == limited).count(), 5);
    assert_eq!(out.len(), 20);
    let stats = dp.stats(first).unwrap();
    assert_eq!(stats.icmp_sent, 20);
    assert_eq!(stats.drops.too_big, 20);
    assert_eq!(stats.drops.icmp_rate_limited, 5);

    // The other tunnel has its own bucket.
    assert_eq!(
        dp.handle_inner(t0, second, &mut big.clone(), &mut out),
        Verdict::Dropped(DropReason::TooBig)
    );
    // And the first refills with time.
    let later = t0 + Duration::from_millis(50);
    let again = (0..10)
        .filter(|_| {
            dp.handle_inner(later, first, &mut big.clone(), &mut out)
                == Verdict::Dropped(DropReason::TooBig)
        })
        .count();
    assert_eq!(again, 5);
}
