//! ICMPv6: any accepted message survives Repr -> emit -> parse unchanged. The first 32 bytes
//! are the pseudo-header addresses.
#![no_main]

use std::net::Ipv6Addr;

use libfuzzer_sys::fuzz_target;
use wire::{Icmpv6Packet, Icmpv6Repr};

fuzz_target!(|data: &[u8]| {
    let Some((addrs, message)) = data.split_first_chunk::<32>() else {
        return;
    };
    let src = Ipv6Addr::from(<[u8; 16]>::try_from(&addrs[..16]).unwrap());
    let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&addrs[16..]).unwrap());
    let Ok(packet) = Icmpv6Packet::new_checked(message) else {
        return;
    };
    let _ = (
        packet.data(),
        packet.mtu(),
        packet.verify_checksum(&src, &dst),
    );
    let Ok(repr) = Icmpv6Repr::parse(&src, &dst, &packet) else {
        return;
    };
    assert_eq!(repr.buffer_len(), message.len());

    let mut buf = vec![0xa5; repr.buffer_len()];
    repr.emit(&src, &dst, &mut Icmpv6Packet::new_unchecked(&mut buf[..]));
    let again = Icmpv6Packet::new_checked(&buf[..]).expect("emitted message is well-formed");
    assert_eq!(Icmpv6Repr::parse(&src, &dst, &again), Ok(repr));
});
