//! virtio-net header: accepted headers survive Repr -> emit -> parse, and emitting keeps every
//! byte the Repr says is meaningful. Input: the header (bytes past 10 are ignored).
#![no_main]

use libfuzzer_sys::fuzz_target;
use wire::virtio::{HEADER_LEN, Packet, Repr};

fuzz_target!(|data: &[u8]| {
    let Ok(packet) = Packet::new_checked(data) else {
        assert!(data.len() < HEADER_LEN);
        return;
    };
    let Ok(repr) = Repr::parse(&packet) else {
        return;
    };
    let mut buf = [0xa5u8; HEADER_LEN];
    repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
    assert_eq!(
        Repr::parse(&Packet::new_checked(&buf[..]).unwrap()),
        Ok(repr)
    );
    assert_eq!(buf[..4], data[..4]);
    if repr.is_gso() {
        assert_eq!(buf[4..6], data[4..6]);
    }
    if repr.csum.is_some() {
        assert_eq!(buf[6..10], data[6..10]);
    }
});
