//! Identities (RFC 7296 §3.5) in strongSwan's notation, and traffic selector narrowing
//! (§2.9).

use core::fmt;
use std::net::IpAddr;

use wire::ike::{Id, TrafficSelector, id_type};

/// An IKE identity as written in the configuration: an address (the default),
/// `fqdn:gw.example.net`, `email:ops@example.net`, `keyid:text` or `keyid:#hex`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Identity {
    Addr(IpAddr),
    Fqdn(String),
    Email(String),
    KeyId(Vec<u8>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadIdentity(pub String);

impl fmt::Display for BadIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` is not an identity (address, fqdn:, email:, keyid:)",
            self.0
        )
    }
}

impl std::error::Error for BadIdentity {}

impl Identity {
    pub fn parse(s: &str) -> Result<Self, BadIdentity> {
        let bad = || BadIdentity(s.to_owned());
        if let Some(v) = s.strip_prefix("fqdn:") {
            return if v.is_empty() {
                Err(bad())
            } else {
                Ok(Self::Fqdn(v.to_owned()))
            };
        }
        if let Some(v) = s.strip_prefix("email:") {
            return if v.contains('@') {
                Ok(Self::Email(v.to_owned()))
            } else {
                Err(bad())
            };
        }
        if let Some(v) = s.strip_prefix("keyid:") {
            if let Some(hex) = v.strip_prefix('#') {
                if hex.is_empty() || hex.len() % 2 != 0 {
                    return Err(bad());
                }
                let bytes: Option<Vec<u8>> = (0..hex.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
                    .collect();
                return bytes.map(Self::KeyId).ok_or_else(bad);
            }
            return if v.is_empty() {
                Err(bad())
            } else {
                Ok(Self::KeyId(v.as_bytes().to_vec()))
            };
        }
        s.parse().map(Self::Addr).map_err(|_| bad())
    }

    /// The ID payload body for this identity.
    pub fn to_payload(&self) -> Id {
        match self {
            Self::Addr(IpAddr::V4(a)) => Id {
                id_type: id_type::IPV4_ADDR,
                data: a.octets().to_vec(),
            },
            Self::Addr(IpAddr::V6(a)) => Id {
                id_type: id_type::IPV6_ADDR,
                data: a.octets().to_vec(),
            },
            Self::Fqdn(s) => Id {
                id_type: id_type::FQDN,
                data: s.as_bytes().to_vec(),
            },
            Self::Email(s) => Id {
                id_type: id_type::RFC822_ADDR,
                data: s.as_bytes().to_vec(),
            },
            Self::KeyId(k) => Id {
                id_type: id_type::KEY_ID,
                data: k.clone(),
            },
        }
    }

    /// Whether a received ID payload names this identity.
    pub fn matches(&self, id: &Id) -> bool {
        self.to_payload() == *id
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.to_payload(), f)
    }
}

fn addr_bits(a: IpAddr) -> (bool, u128) {
    match a {
        IpAddr::V4(a) => (false, u128::from(u32::from(a))),
        IpAddr::V6(a) => (true, u128::from(a)),
    }
}

fn from_bits(v6: bool, bits: u128) -> IpAddr {
    if v6 {
        IpAddr::V6(bits.into())
    } else {
        // Bits come from IPv4 ranges, so they fit.
        IpAddr::V4(u32::try_from(bits).unwrap_or(u32::MAX).into())
    }
}

/// The intersection of two selectors, if not empty.
pub fn intersect(a: &TrafficSelector, b: &TrafficSelector) -> Option<TrafficSelector> {
    let (a6, a_start) = addr_bits(a.start_addr);
    let (_, a_end) = addr_bits(a.end_addr);
    let (b6, b_start) = addr_bits(b.start_addr);
    let (_, b_end) = addr_bits(b.end_addr);
    if a6 != b6 {
        return None;
    }
    let proto = match (a.ip_protocol, b.ip_protocol) {
        (0, p) | (p, 0) => p,
        (p, q) if p == q => p,
        _ => return None,
    };
    let (start, end) = (a_start.max(b_start), a_end.min(b_end));
    let (sp, ep) = (a.start_port.max(b.start_port), a.end_port.min(b.end_port));
    if start > end || sp > ep {
        return None;
    }
    Some(TrafficSelector {
        ip_protocol: proto,
        start_port: sp,
        end_port: ep,
        start_addr: from_bits(a6, start),
        end_addr: from_bits(a6, end),
    })
}

/// Narrows what the peer proposed to what we allow (§2.9): every non-empty pairwise
/// intersection, in the peer's order.
pub fn narrow(proposed: &[TrafficSelector], allowed: &[TrafficSelector]) -> Vec<TrafficSelector> {
    let mut out = Vec::new();
    for p in proposed {
        for a in allowed {
            if let Some(i) = intersect(p, a)
                && !out.contains(&i)
            {
                out.push(i);
            }
        }
    }
    out
}

/// Whether every selector of `inner` lies within some selector of `outer`.
pub fn is_subset(inner: &[TrafficSelector], outer: &[TrafficSelector]) -> bool {
    inner
        .iter()
        .all(|i| outer.iter().any(|o| intersect(i, o).as_ref() == Some(i)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(a: &str, b: &str) -> TrafficSelector {
        TrafficSelector::range(a.parse().unwrap(), b.parse().unwrap())
    }

    #[test]
    fn parses_identities() {
        assert_eq!(
            Identity::parse("198.51.100.1")
                .unwrap()
                .to_payload()
                .id_type,
            id_type::IPV4_ADDR
        );
        assert_eq!(
            Identity::parse("2001:db8::1")
                .unwrap()
                .to_payload()
                .data
                .len(),
            16
        );
        assert_eq!(
            Identity::parse("fqdn:gw.example").unwrap(),
            Identity::Fqdn("gw.example".into())
        );
        assert_eq!(
            Identity::parse("email:ops@example.net")
                .unwrap()
                .to_payload()
                .id_type,
            id_type::RFC822_ADDR
        );
        assert_eq!(
            Identity::parse("keyid:#01ff").unwrap(),
            Identity::KeyId(vec![1, 0xff])
        );
        assert_eq!(
            Identity::parse("keyid:site-a")
                .unwrap()
                .to_payload()
                .id_type,
            id_type::KEY_ID
        );
        for bad in [
            "",
            "fqdn:",
            "email:nobody",
            "keyid:#0",
            "keyid:#zz",
            "gw.example",
        ] {
            assert!(Identity::parse(bad).is_err(), "{bad}");
        }
        let id = Identity::parse("fqdn:gw.example").unwrap();
        assert!(id.matches(&id.to_payload()));
        assert!(
            !Identity::parse("fqdn:other")
                .unwrap()
                .matches(&id.to_payload())
        );
    }

    #[test]
    fn narrowing() {
        let wide = ts("198.51.100.0", "198.51.100.255");
        let narrow_ = ts("198.51.100.16", "198.51.100.31");
        assert_eq!(intersect(&wide, &narrow_), Some(narrow_));
        assert_eq!(narrow(&[wide], &[narrow_]), vec![narrow_]);
        assert!(is_subset(&[narrow_], &[wide]));
        assert!(!is_subset(&[wide], &[narrow_]));
        let v6 = TrafficSelector::any(true);
        assert_eq!(intersect(&wide, &v6), None);
        let mut tcp = wide;
        tcp.ip_protocol = 6;
        let mut udp = wide;
        udp.ip_protocol = 17;
        assert_eq!(intersect(&tcp, &udp), None);
        assert_eq!(intersect(&tcp, &wide).unwrap().ip_protocol, 6);
        assert!(narrow(&[ts("203.0.113.0", "203.0.113.255")], &[wide]).is_empty());
    }
}
