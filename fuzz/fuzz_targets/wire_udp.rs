//! UDP: accepted datagrams survive Repr -> emit -> parse, and a filled checksum verifies.
//! Input: 32 bytes of IPv6 addresses, then the datagram.
#![no_main]

use std::net::Ipv6Addr;

use libfuzzer_sys::fuzz_target;
use wire::{UdpPacket, UdpRepr};

fuzz_target!(|data: &[u8]| {
    let Some((addrs, datagram)) = data.split_first_chunk::<32>() else {
        return;
    };
    let src = Ipv6Addr::from(<[u8; 16]>::try_from(&addrs[..16]).unwrap());
    let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&addrs[16..]).unwrap());
    let Ok(packet) = UdpPacket::new_checked(datagram) else {
        return;
    };
    let repr = UdpRepr::parse(&packet).expect("a checked view always parses");
    assert_eq!(repr.payload_len, packet.payload().len());

    let mut buf = vec![0xa5; repr.buffer_len() + repr.payload_len];
    let mut out = UdpPacket::new_unchecked(&mut buf[..]);
    repr.emit(&mut out);
    out.payload_mut().copy_from_slice(packet.payload());
    out.fill_checksum_v6(&src, &dst);
    let again = UdpPacket::new_checked(&buf[..]).expect("emitted datagram is well-formed");
    assert!(again.verify_checksum_v6(&src, &dst));
    assert_eq!(UdpRepr::parse(&again), Ok(repr));
    assert_eq!(again.payload(), packet.payload());
});
