//! TCP: accepted segments survive Repr -> emit -> parse, and clamp_mss keeps a valid checksum
//! valid. Input: 2 bytes of clamp limit, 8 bytes of IPv4 addresses, then the segment.
#![no_main]

use std::net::Ipv4Addr;

use libfuzzer_sys::fuzz_target;
use wire::{TcpPacket, TcpRepr};

fuzz_target!(|data: &[u8]| {
    let Some((head, segment)) = data.split_first_chunk::<10>() else {
        return;
    };
    let max = u16::from_be_bytes([head[0], head[1]]);
    let src = Ipv4Addr::new(head[2], head[3], head[4], head[5]);
    let dst = Ipv4Addr::new(head[6], head[7], head[8], head[9]);
    let Ok(packet) = TcpPacket::new_checked(segment) else {
        return;
    };
    let mss = packet.mss();

    if let Ok(repr) = TcpRepr::parse(&packet) {
        let mut buf = vec![0xa5; repr.buffer_len()];
        let mut out = TcpPacket::new_unchecked(&mut buf[..]);
        repr.emit(&mut out);
        out.fill_checksum_v4(&src, &dst);
        let again = TcpPacket::new_checked(&buf[..]).expect("emitted segment is well-formed");
        assert!(again.verify_checksum_v4(&src, &dst));
        assert_eq!(TcpRepr::parse(&again), Ok(repr));
    }

    let mut buf = segment.to_vec();
    let mut packet = TcpPacket::new_checked(&mut buf[..]).expect("checked above");
    packet.fill_checksum_v4(&src, &dst);
    if !packet.syn() {
        // MSS means nothing outside a SYN; such segments must pass through untouched.
        let before = buf.clone();
        let mut packet = TcpPacket::new_unchecked(&mut buf[..]);
        assert_eq!(packet.clamp_mss(max), Ok(None));
        assert_eq!(buf, before);
        return;
    }
    match (packet.clamp_mss(max), mss) {
        (Ok(changed), Ok(before)) => {
            assert!(
                packet.verify_checksum_v4(&src, &dst),
                "clamp broke the checksum"
            );
            let after = packet.mss().expect("clamping keeps options valid");
            assert_eq!(after, before.map(|mss| mss.min(max)));
            // With duplicate MSS options a later one may be the first changed.
            if let Some(old) = changed {
                assert!(old > max);
            }
            if before.is_some_and(|mss| mss > max) {
                assert_eq!(changed, before);
            }
            assert_eq!(packet.payload(), &segment[packet.header_len()..]);
        }
        (Err(_), Err(_)) => {}
        (clamped, mss) => panic!("clamp_mss {clamped:?} disagrees with mss() {mss:?}"),
    }
});
