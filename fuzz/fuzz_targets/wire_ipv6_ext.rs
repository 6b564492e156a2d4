//! IPv6 extension headers: the walk never runs out of bounds, options iterate without panics,
//! and an emitted encapsulation limit header walks back to the same limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wire::ip_proto;
use wire::ipv6_ext::{self, OptionsHeader};

fuzz_target!(|data: &[u8]| {
    let Some((&next_header, rest)) = data.split_first() else {
        return;
    };
    if let Ok(walk) = ipv6_ext::walk(next_header, rest) {
        assert!(walk.offset <= rest.len());
    }
    if let Ok(header) = OptionsHeader::new_checked(rest) {
        for opt in header.options() {
            if opt.is_err() {
                break;
            }
        }
    }

    // Round trip: the first payload byte names the protocol behind the header (extension
    // headers would need bytes of their own after it), the selector byte is the limit.
    let inner = match rest.first().copied() {
        Some(ip_proto::HOPOPTS | ip_proto::ROUTING | ip_proto::FRAGMENT | ip_proto::DSTOPTS)
        | None => ip_proto::IPIP,
        Some(protocol) => protocol,
    };
    let mut buf = [0xa5; ipv6_ext::ENCAP_LIMIT_HEADER_LEN];
    ipv6_ext::emit_encap_limit(inner, next_header, &mut buf).expect("buffer is long enough");
    let walk = ipv6_ext::walk(ip_proto::DSTOPTS, &buf).expect("emitted header walks");
    assert_eq!(walk.encap_limit, Some(next_header));
    assert_eq!(walk.upper_protocol, inner);
    assert_eq!(walk.offset, ipv6_ext::ENCAP_LIMIT_HEADER_LEN);
    assert!(!walk.fragmented);
});
