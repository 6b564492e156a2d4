//! ICMP "too big" about our ESP: any ICMPv6 message or ICMPv4 datagram is read without a panic,
//! and what is accepted names a link at least as large as its family's minimum.
//! Input: the bytes, used both as an ICMPv6 message and as an ICMPv4 datagram.
#![no_main]

use std::net::Ipv6Addr;

use dataplane::esp::{too_big_v4, too_big_v6};
use libfuzzer_sys::fuzz_target;

const ROUTER: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0xff, 0, 0, 0, 1);
const US: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, 1);

fuzz_target!(|data: &[u8]| {
    if let Some(report) = too_big_v6(ROUTER, US, data) {
        assert!(report.link_mtu >= 1280);
        assert!(report.local.is_ipv6() && report.remote.is_ipv6());
    }
    if let Some(report) = too_big_v4(data) {
        assert!(report.link_mtu >= 68);
        assert!(report.local.is_ipv4() && report.remote.is_ipv4());
    }
});
