//! MAP-E rule arithmetic: any parameters either make a rule or are refused, any prefix either
//! maps or is refused, and what maps is consistent. Input: rule IPv6 prefix (16 bytes + length),
//! rule IPv4 prefix (4 + length), EA bits, PSID offset, layout bit, end-user prefix (16 + length).
#![no_main]

use std::net::{Ipv4Addr, Ipv6Addr};

use control::mape::{Layout, Rule, psid_of};
use ipnet::{Ipv4Net, Ipv6Net};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((head, _)) = data.split_first_chunk::<44>() else {
        return;
    };
    let v6 = Ipv6Addr::from(<[u8; 16]>::try_from(&head[..16]).unwrap());
    let v4 = Ipv4Addr::from(<[u8; 4]>::try_from(&head[17..21]).unwrap());
    let prefix = Ipv6Addr::from(<[u8; 16]>::try_from(&head[26..42]).unwrap());
    let (Ok(v6), Ok(v4), Ok(prefix)) = (
        Ipv6Net::new(v6, head[16] % 129),
        Ipv4Net::new(v4, head[21] % 33),
        Ipv6Net::new(prefix, head[42] % 129),
    ) else {
        return;
    };
    let layout = if head[24] & 1 == 0 { Layout::Rfc7597 } else { Layout::Draft03 };
    let br = "2001:db8::1".parse().unwrap();
    let Ok(rule) = Rule::new(v6.trunc(), v4.trunc(), head[22], head[23], br, layout) else {
        return;
    };
    let Ok(map) = rule.map(prefix.trunc()) else {
        return;
    };
    assert!(rule.ipv4_prefix().contains(&map.ipv4));
    assert!(prefix.trunc().contains(&map.map_address));
    assert_eq!(map.br, br);
    let ports = map.ports;
    assert!(ports.len() > 0);
    for range in ports.ranges().take(64) {
        for port in [*range.start(), *range.end()] {
            assert_eq!(
                psid_of(port, ports.psid_len(), ports.offset()),
                Some(ports.psid())
            );
        }
    }
});
