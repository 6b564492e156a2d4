//! Packets shared by the benches; each bench compiles this module on its own.

use std::net::Ipv4Addr;

use wire::{Ipv4Packet, Ipv4Repr, ip_proto};

/// A UDP-sized IPv4 packet of `len` bytes in total, DF set, payload bytes 0x5a.
pub fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, len: usize) -> Vec<u8> {
    let mut buf = vec![0x5a; len];
    Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        protocol: ip_proto::UDP,
        payload_len: len - 20,
        ttl: 64,
        dscp_ecn: 0,
        ident: 1,
        dont_frag: true,
    }
    .emit(&mut Ipv4Packet::new_unchecked(&mut buf[..]));
    buf
}
