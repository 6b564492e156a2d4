use hex_literal::hex;

use super::*;
use crate::{EncapLimit, Verdict};

/// Fragments of one datagram, as the far end would hand them on.
fn inner_fragments(out: &Batch, overhead: usize) -> Vec<Vec<u8>> {
    out.iter()
        .map(|(destination, outer)| {
            assert_eq!(
                destination,
                Destination::Underlay {
                    remote: REMOTE.into()
                }
            );
            let ip = Ipv6Packet::new_checked(outer).unwrap();
            assert_eq!(usize::from(ip.payload_len()) + 40, outer.len());
            outer[overhead..].to_vec()
        })
        .collect()
}

/// A minimal RFC 791 reassembler: checks each fragment on its own, then that
/// they tile the payload with no gap or overlap and only the last lacks MF.
/// Returns (first header, payload, MF of the last fragment).
fn reassemble(fragments: &[Vec<u8>], mtu: usize) -> (Vec<u8>, Vec<u8>, bool) {
    let mut pieces: Vec<(usize, bool, Vec<u8>, Vec<u8>)> = fragments
        .iter()
        .map(|f| {
            assert!(
                f.len() <= mtu,
                "fragment of {} bytes over mtu {mtu}",
                f.len()
            );
            let ip = Ipv4Packet::new_checked(&f[..]).unwrap();
            assert!(ip.verify_checksum());
            assert_eq!(usize::from(ip.total_len()), f.len());
            assert!(!ip.dont_frag());
            (
                usize::from(ip.frag_offset()),
                ip.more_frags(),
                ip.header().to_vec(),
                ip.payload().to_vec(),
            )
        })
        .collect();
    pieces.sort_by_key(|p| p.0);
    let base = pieces[0].0;
    let mut payload = Vec::new();
    for (i, (offset, more, _, data)) in pieces.iter().enumerate() {
        assert_eq!(*offset, base + payload.len(), "gap or overlap");
        if i + 1 < pieces.len() {
            assert!(more, "MF clear before the end");
            assert_eq!(data.len() % 8, 0);
        }
        payload.extend_from_slice(data);
    }
    let last_more = pieces.last().unwrap().1;
    (pieces[0].2.clone(), payload, last_more)
}

fn fragment(config: TunnelConfig, packet: &[u8]) -> (Dataplane, TunnelId, Batch) {
    let (mut dp, id) = dataplane(config);
    let mut out = Batch::new(8192);
    assert_eq!(
        dp.handle_inner(now(), id, &mut packet.to_vec(), &mut out),
        Verdict::Forwarded
    );
    (dp, id, out)
}

#[test]
fn without_df_ipv4_is_fragmented_then_encapsulated() {
    let mut c = config(Mode::Ipip6);
    c.mtu = 576;
    let packet = udp4(NEAR4, FAR4, 1400, false);
    let (dp, id, out) = fragment(c, &packet);
    let fragments = inner_fragments(&out, 40);
    assert_eq!(fragments.len(), 3);
    let (header, payload, more) = reassemble(&fragments, 576);
    assert_eq!(
        payload,
        Ipv4Packet::new_checked(&packet[..]).unwrap().payload()
    );
    assert!(!more);
    // Everything but length, flags and checksum is the original header.
    assert_eq!(&header[4..6], &packet[4..6]);
    assert_eq!(&header[8..10], &packet[8..10]);
    assert_eq!(&header[12..20], &packet[12..20]);
    let stats = dp.stats(id).unwrap();
    assert_eq!(stats.tx_packets, 3);
    assert_eq!(stats.fragmented, 1);
    assert_eq!(stats.fragments_sent, 3);
    assert_eq!(
        stats.tx_bytes,
        fragments.iter().map(|f| f.len() as u64).sum::<u64>()
    );
}

#[test]
fn fragments_carry_the_encap_limit_option_too() {
    let mut c = config(Mode::Ipip6);
    c.mtu = 600;
    c.encap_limit = EncapLimit::Limit(4);
    let packet = udp4(NEAR4, FAR4, 1000, false);
    let (_, _, out) = fragment(c, &packet);
    for (_, outer) in &out {
        assert_eq!(outer[6], ip_proto::DSTOPTS);
        assert_eq!(&outer[40..48], &hex!("04 00 04 01 04 01 01 00"));
    }
    let (_, payload, _) = reassemble(&inner_fragments(&out, 48), 600);
    assert_eq!(payload, &packet[20..]);
}

#[test]
fn a_fragment_is_fragmented_further_keeping_offset_and_mf() {
    let mut c = config(Mode::Ipip6);
    c.mtu = 300;
    let mut packet = udp4(NEAR4, FAR4, 992, false);
    {
        let mut ip = Ipv4Packet::new_unchecked(&mut packet[..]);
        ip.set_frag_offset(1480);
        ip.set_more_frags(true);
        ip.fill_checksum();
    }
    let (_, _, out) = fragment(c, &packet);
    let fragments = inner_fragments(&out, 40);
    let first = Ipv4Packet::new_checked(&fragments[0][..]).unwrap();
    assert_eq!(first.frag_offset(), 1480);
    let (_, payload, more) = reassemble(&fragments, 300);
    assert_eq!(payload, &packet[20..]);
    assert!(more, "the last piece of a middle fragment keeps MF");
}

#[test]
fn only_copied_options_follow_into_later_fragments() {
    // Header with Record Route (not copied, 7 bytes), Stream ID (copied, 4
    // bytes), End: 20 + 12 bytes.
    let options = hex!("07 07 04 00 00 00 00 88 04 ab cd 00");
    let payload: Vec<u8> = (0..700u32).map(|i| (i % 251) as u8).collect();
    let mut packet = vec![0u8; 32 + payload.len()];
    {
        let repr = Ipv4Repr {
            src_addr: NEAR4,
            dst_addr: FAR4,
            protocol: ip_proto::UDP,
            payload_len: payload.len(),
            ttl: 9,
            dscp_ecn: 0,
            ident: 77,
            dont_frag: false,
        };
        repr.emit(&mut Ipv4Packet::new_unchecked(&mut packet[..]));
        let mut ip = Ipv4Packet::new_unchecked(&mut packet[..]);
        ip.set_header_len(32);
        ip.set_total_len((32 + payload.len()) as u16);
        packet[20..32].copy_from_slice(&options);
        packet[32..].copy_from_slice(&payload);
        Ipv4Packet::new_unchecked(&mut packet[..]).fill_checksum();
    }
    let mut c = config(Mode::Ipip6);
    c.mtu = 300;
    let (_, _, out) = fragment(c, &packet);
    let fragments = inner_fragments(&out, 40);
    assert!(fragments.len() >= 3);
    let first = Ipv4Packet::new_checked(&fragments[0][..]).unwrap();
    assert_eq!(first.header_len(), 32);
    assert_eq!(&first.header()[20..], &options);
    for later in &fragments[1..] {
        let ip = Ipv4Packet::new_checked(&later[..]).unwrap();
        assert_eq!(ip.header_len(), 24);
        assert_eq!(&ip.header()[20..], &hex!("88 04 ab cd"));
    }
    let (_, reassembled, _) = reassemble(&fragments, 300);
    assert_eq!(reassembled, payload);
}

#[test]
fn fragments_at_the_smallest_mtu() {
    let mut c = config(Mode::Ipip6);
    c.mtu = 68;
    let packet = udp4(NEAR4, FAR4, 200, false);
    let (_, _, out) = fragment(c, &packet);
    let fragments = inner_fragments(&out, 40);
    assert_eq!(fragments.len(), 5); // 208 bytes in 48-byte pieces
    let (_, payload, _) = reassemble(&fragments, 68);
    assert_eq!(payload, &packet[20..]);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    #[test]
    fn any_fragmentation_reassembles_to_the_original(
        mtu in 68u16..1500,
        len in 0usize..3000,
        encap_limit in proptest::option::of(proptest::prelude::any::<u8>()),
    ) {
        let mut c = config(Mode::Ipip6);
        c.mtu = mtu;
        c.encap_limit = encap_limit.map_or(EncapLimit::None, EncapLimit::Limit);
        let overhead = 40 + c.encap_limit.overhead();
        let packet = udp4(NEAR4, FAR4, len, false);
        let (_, _, out) = fragment(c, &packet);
        let fragments = inner_fragments(&out, overhead);
        if packet.len() <= usize::from(mtu) {
            proptest::prop_assert_eq!(fragments, vec![packet]);
        } else {
            let (header, payload, more) = reassemble(&fragments, usize::from(mtu));
            proptest::prop_assert_eq!(&payload[..], &packet[20..]);
            proptest::prop_assert!(!more);
            proptest::prop_assert_eq!(&header[12..20], &packet[12..20]);
        }
    }
}
