//! ICMPv4: any accepted message survives Repr -> emit -> parse unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wire::{Icmpv4Packet, Icmpv4Repr};

fuzz_target!(|data: &[u8]| {
    let Ok(packet) = Icmpv4Packet::new_checked(data) else {
        return;
    };
    let _ = (
        packet.data(),
        packet.next_hop_mtu(),
        packet.verify_checksum(),
    );
    let Ok(repr) = Icmpv4Repr::parse(&packet) else {
        return;
    };
    assert_eq!(repr.buffer_len(), data.len());

    let mut buf = vec![0xa5; repr.buffer_len()];
    repr.emit(&mut Icmpv4Packet::new_unchecked(&mut buf[..]));
    let again = Icmpv4Packet::new_checked(&buf[..]).expect("emitted message is well-formed");
    assert_eq!(Icmpv4Repr::parse(&again), Ok(repr));
});
