//! The NAPT use `status` reads from `/proc/net/nf_conntrack` and `/proc/net/stat/nf_conntrack`:
//! any text gives a count, never more ports in use than the set has.
#![no_main]

use std::net::Ipv4Addr;

use libfuzzer_sys::fuzz_target;
use v6gate::softwire_status::{insert_failed, ports_in_use};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let ranges = [4112..=4127, 8208..=8223];
    assert!(ports_in_use(text, Ipv4Addr::new(198, 18, 8, 1), &ranges) <= 32);
    let _ = insert_failed(text);
});
