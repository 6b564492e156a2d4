//! IPv4: any accepted header survives Repr -> emit -> parse unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wire::{Ipv4Packet, Ipv4Repr};

fuzz_target!(|data: &[u8]| {
    let Ok(packet) = Ipv4Packet::new_checked(data) else {
        return;
    };
    let _ = (packet.header(), packet.payload(), packet.verify_checksum());
    let Ok(repr) = Ipv4Repr::parse(&packet) else {
        return;
    };
    assert_eq!(repr.payload_len, packet.payload().len());

    let mut buf = vec![0xa5; repr.buffer_len() + repr.payload_len];
    let mut out = Ipv4Packet::new_unchecked(&mut buf[..]);
    repr.emit(&mut out);
    out.payload_mut().copy_from_slice(packet.payload());

    let again = Ipv4Packet::new_checked(&buf[..]).expect("emitted header is well-formed");
    assert_eq!(Ipv4Repr::parse(&again), Ok(repr));
    assert_eq!(again.payload(), packet.payload());
});
