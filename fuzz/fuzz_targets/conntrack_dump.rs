//! One datagram of ctnetlink's answer to a dump, as the kernel would send it to
//! `sys::conntrack`: any bytes are refused or read into original tuples that lie inside the
//! datagram, each a whole attribute (at least its 4-byte header), never overlapping.
#![no_main]

use std::net::Ipv4Addr;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(part) = sys::conntrack::dump_part(data, Ipv4Addr::new(198, 18, 8, 1)) else {
        return;
    };
    let total: usize = part.originals.iter().map(|t| t.len()).sum();
    assert!(total <= data.len());
    assert!(part.originals.iter().all(|t| t.len() >= 4));
});
