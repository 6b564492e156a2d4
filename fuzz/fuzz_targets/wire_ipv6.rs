//! IPv6: any accepted fixed header survives Repr -> emit -> parse unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wire::{Ipv6Packet, Ipv6Repr};

fuzz_target!(|data: &[u8]| {
    let Ok(packet) = Ipv6Packet::new_checked(data) else {
        return;
    };
    let repr = Ipv6Repr::parse(&packet).expect("a checked view always parses");
    assert_eq!(repr.payload_len, packet.payload().len());

    let mut buf = vec![0xa5; repr.buffer_len() + repr.payload_len];
    let mut out = Ipv6Packet::new_unchecked(&mut buf[..]);
    repr.emit(&mut out);
    out.payload_mut().copy_from_slice(packet.payload());

    let again = Ipv6Packet::new_checked(&buf[..]).expect("emitted header is well-formed");
    assert_eq!(Ipv6Repr::parse(&again), Ok(repr));
    assert_eq!(
        &buf[..],
        &data[..buf.len()],
        "header and payload are reproduced byte for byte"
    );
});
