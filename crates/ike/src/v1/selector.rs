//! Quick mode client identities (IDci/IDcr, RFC 2409 §5.5, RFC 2407 §4.6.2) as the traffic
//! selectors the rest of v6gate uses: an address, a subnet or a range, with one protocol and
//! at most one port.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use wire::ike::TrafficSelector;
use wire::ikev1::{Id, id_type};

fn bits(a: IpAddr) -> (bool, u128) {
    match a {
        IpAddr::V4(a) => (false, u128::from(u32::from(a))),
        IpAddr::V6(a) => (true, u128::from(a)),
    }
}

fn addr(v6: bool, b: u128) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::from(b))
    } else {
        IpAddr::V4(Ipv4Addr::from(u32::try_from(b).unwrap_or(u32::MAX)))
    }
}

fn octets(a: IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// The ID payload for a selector: a subnet when the range is one, else a range.
pub fn to_id(ts: &TrafficSelector) -> Id {
    let (v6, start) = bits(ts.start_addr);
    let (_, end) = bits(ts.end_addr);
    let width = if v6 { 128 } else { 32 };
    let port = if ts.start_port == ts.end_port {
        ts.start_port
    } else {
        0
    };
    let span = end.wrapping_sub(start);
    let is_subnet = start <= end && (span.wrapping_add(1) & span) == 0 && start & span == 0;
    let (id_type, data) = if start == end {
        let t = if v6 {
            id_type::IPV6_ADDR
        } else {
            id_type::IPV4_ADDR
        };
        (t, octets(ts.start_addr))
    } else if is_subnet {
        let host_bits = 128 - span.leading_zeros();
        let full = if v6 { u128::MAX } else { u128::from(u32::MAX) };
        let mask = if host_bits >= width { 0 } else { full & !span };
        let t = if v6 {
            id_type::IPV6_ADDR_SUBNET
        } else {
            id_type::IPV4_ADDR_SUBNET
        };
        (t, [octets(ts.start_addr), octets(addr(v6, mask))].concat())
    } else {
        let t = if v6 {
            id_type::IPV6_ADDR_RANGE
        } else {
            id_type::IPV4_ADDR_RANGE
        };
        (t, [octets(ts.start_addr), octets(ts.end_addr)].concat())
    };
    Id {
        id_type,
        protocol: ts.ip_protocol,
        port,
        data,
    }
}

/// The selector an ID payload names, if it is an address, subnet or range.
pub fn from_id(id: &Id) -> Option<TrafficSelector> {
    let read = |b: &[u8]| -> Option<IpAddr> {
        match b.len() {
            4 => Some(IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(b).ok()?))),
            16 => Some(IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(b).ok()?))),
            _ => None,
        }
    };
    let (start, end) = match (id.id_type, id.data.len()) {
        (id_type::IPV4_ADDR, 4) | (id_type::IPV6_ADDR, 16) => {
            let a = read(&id.data)?;
            (a, a)
        }
        (id_type::IPV4_ADDR_SUBNET, 8) | (id_type::IPV6_ADDR_SUBNET, 32) => {
            let half = id.data.len() / 2;
            let (v6, a) = bits(read(&id.data[..half])?);
            let (_, m) = bits(read(&id.data[half..])?);
            let full = if v6 { u128::MAX } else { u128::from(u32::MAX) };
            (addr(v6, a & m), addr(v6, (a & m) | (full & !m)))
        }
        (id_type::IPV4_ADDR_RANGE, 8) | (id_type::IPV6_ADDR_RANGE, 32) => {
            let half = id.data.len() / 2;
            let (s, e) = (read(&id.data[..half])?, read(&id.data[half..])?);
            if bits(s).1 > bits(e).1 {
                return None;
            }
            (s, e)
        }
        _ => return None,
    };
    let (start_port, end_port) = if id.port == 0 {
        (0, u16::MAX)
    } else {
        (id.port, id.port)
    };
    Some(TrafficSelector {
        ip_protocol: id.protocol,
        start_port,
        end_port,
        start_addr: start,
        end_addr: end,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(a: &str, b: &str) -> TrafficSelector {
        TrafficSelector::range(a.parse().unwrap(), b.parse().unwrap())
    }

    #[test]
    fn subnets_ranges_and_hosts() {
        let lan = ts("198.18.1.0", "198.18.1.255");
        let id = to_id(&lan);
        assert_eq!(id.id_type, id_type::IPV4_ADDR_SUBNET);
        assert_eq!(id.data, [198, 18, 1, 0, 255, 255, 255, 0]);
        assert_eq!(from_id(&id), Some(lan));
        let odd = ts("198.18.1.5", "198.18.1.9");
        assert_eq!(to_id(&odd).id_type, id_type::IPV4_ADDR_RANGE);
        assert_eq!(from_id(&to_id(&odd)), Some(odd));
        let host = ts("2001:db8::1", "2001:db8::1");
        assert_eq!(to_id(&host).id_type, id_type::IPV6_ADDR);
        assert_eq!(from_id(&to_id(&host)), Some(host));
        let all = TrafficSelector::any(false);
        assert_eq!(to_id(&all).data, [0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(from_id(&to_id(&all)), Some(all));
        let all6 = TrafficSelector::any(true);
        assert_eq!(from_id(&to_id(&all6)), Some(all6));
        let v6net = ts("2001:db8:1::", "2001:db8:1:ffff:ffff:ffff:ffff:ffff");
        assert_eq!(to_id(&v6net).id_type, id_type::IPV6_ADDR_SUBNET);
        assert_eq!(from_id(&to_id(&v6net)), Some(v6net));
        // A backwards range and a wrong length are refused.
        let bad = Id {
            id_type: id_type::IPV4_ADDR_RANGE,
            protocol: 0,
            port: 0,
            data: vec![10, 0, 0, 9, 10, 0, 0, 1],
        };
        assert_eq!(from_id(&bad), None);
        let short = Id {
            data: vec![1, 2, 3],
            ..bad
        };
        assert_eq!(from_id(&short), None);
    }
}
