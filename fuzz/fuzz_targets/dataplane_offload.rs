//! Offload split and coalesce: split never panics, hands out nothing when it fails, and what
//! it hands out, coalesced again and split again, comes back unchanged and in order.
//! Input: a 10-byte virtio-net header, then the packet as read from a TUN device.
#![no_main]

use dataplane::offload::{Coalescer, split};
use libfuzzer_sys::fuzz_target;
use wire::virtio::{HEADER_LEN, Packet, Repr};

fuzz_target!(|data: &[u8]| {
    let Some((header, packet)) = data.split_first_chunk::<HEADER_LEN>() else {
        return;
    };
    let Ok(vnet) = Repr::parse(&Packet::new_unchecked(&header[..])) else {
        return;
    };
    let mut packet = packet.to_vec();
    let mut segments: Vec<Vec<u8>> = Vec::new();
    match split(&vnet, &mut packet, |segment| {
        segments.push(segment.to_vec())
    }) {
        Ok(count) => assert_eq!(count, segments.len()),
        Err(_) => {
            assert!(segments.is_empty());
            return;
        }
    }

    let mut coalescer = Coalescer::default();
    for segment in &segments {
        coalescer.push(segment);
    }
    let mut again = Vec::new();
    for frame in coalescer.flush() {
        let vnet = Repr::parse(&Packet::new_checked(frame).unwrap()).expect("frames parse");
        let mut packet = frame[HEADER_LEN..].to_vec();
        split(&vnet, &mut packet, |segment| again.push(segment.to_vec())).expect("frames split");
    }
    // One flow per super-packet, so the order of all of them is the order of each.
    assert_eq!(again, segments);
});
