//! Which of a device's addresses a DDNS entry publishes.
//!
//! The kernel lists every address of a device with its flags and lifetimes (RTM_NEWADDR:
//! `IFA_F_TEMPORARY`, `IFA_F_DEPRECATED`, `IFA_F_TENTATIVE`, `IFA_CACHEINFO`). Publishing the
//! wrong one is the most reported DDNS fault: a temporary address that is gone in a day, a
//! deprecated one from the previous prefix, one still in duplicate address detection.

use std::cmp::Reverse;
use std::net::IpAddr;
use std::time::Duration;

use super::{Family, Select};

/// One address of a device, as the kernel reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HostAddress {
    pub addr: IpAddr,
    pub prefix_len: u8,
    /// Scope global (not host, link or site).
    pub global: bool,
    /// An RFC 8981 temporary (privacy) address.
    pub temporary: bool,
    /// Preferred lifetime over: kept for existing connections, not for new ones.
    pub deprecated: bool,
    /// Still in duplicate address detection, or failed it: not usable yet (or ever).
    pub tentative: bool,
    /// Remaining preferred lifetime; `None` = forever.
    pub preferred: Option<Duration>,
    /// When the kernel created it, on any clock that only moves forward (the kernel's
    /// `cstamp`, hundredths of a second since boot): orders addresses by age.
    pub created: u64,
}

impl HostAddress {
    /// A permanent global address, as configured by hand (for tests and IPv4 links).
    pub fn permanent(addr: IpAddr, prefix_len: u8) -> Self {
        Self {
            addr,
            prefix_len,
            global: true,
            temporary: false,
            deprecated: false,
            tentative: false,
            preferred: None,
            created: 0,
        }
    }

    /// Whether new connections may use it and others can reach it: global, not link-local,
    /// not an IPv6 unique local address, not deprecated, not tentative.
    pub fn is_publishable(&self) -> bool {
        let public = match self.addr {
            IpAddr::V4(v4) => !v4.is_loopback() && !v4.is_link_local() && !v4.is_unspecified(),
            IpAddr::V6(v6) => {
                !v6.is_loopback()
                    && !v6.is_unicast_link_local()
                    && !v6.is_unique_local()
                    && !v6.is_unspecified()
            }
        };
        let preferred = self.preferred != Some(Duration::ZERO);
        public && self.global && !self.deprecated && !self.tentative && preferred
    }
}

/// The address to publish for `family` by `select`, or `None` when the device has no
/// publishable one.
///
/// IPv6: `Stable` takes the non-temporary address with the longest preferred lifetime (the
/// newest on a tie: a re-delegated prefix comes with fresh lifetimes); `Temporary` the newest
/// temporary one; `Any` a stable one, else the newest temporary one. IPv4 has no temporary
/// addresses: the oldest publishable one (the primary) whatever `select` says.
pub fn select(addresses: &[HostAddress], family: Family, select: Select) -> Option<IpAddr> {
    let usable = addresses
        .iter()
        .filter(|a| Family::of(a.addr) == family && a.is_publishable());
    if family == Family::Ipv4 {
        return usable.min_by_key(|a| (a.created, a.addr)).map(|a| a.addr);
    }
    let stable = || {
        usable
            .clone()
            .filter(|a| !a.temporary)
            .max_by_key(|a| {
                let preferred = a.preferred.unwrap_or(Duration::MAX);
                (preferred, a.created, Reverse(a.addr))
            })
            .map(|a| a.addr)
    };
    let temporary = || {
        usable
            .clone()
            .filter(|a| a.temporary)
            .max_by_key(|a| (a.created, a.preferred, Reverse(a.addr)))
            .map(|a| a.addr)
    };
    match select {
        Select::Stable => stable(),
        Select::Temporary => temporary(),
        Select::Any => stable().or_else(temporary),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn v6(addr: &str) -> HostAddress {
        HostAddress::permanent(addr.parse().unwrap(), 64)
    }

    fn dynamic(addr: &str, preferred: u64, created: u64) -> HostAddress {
        HostAddress {
            preferred: Some(Duration::from_secs(preferred)),
            created,
            ..v6(addr)
        }
    }

    #[test]
    fn stable_skips_temporary_deprecated_tentative_and_link_local() {
        let list = [
            HostAddress {
                temporary: true,
                ..dynamic("2001:db8:1::aaaa", 86_000, 9)
            },
            HostAddress {
                deprecated: true,
                ..dynamic("2001:db8:0::1", 0, 1)
            },
            HostAddress {
                tentative: true,
                ..dynamic("2001:db8:2::1", 90_000, 8)
            },
            HostAddress {
                global: false,
                ..v6("fe80::1")
            },
            v6("fd00::1"),
            dynamic("2001:db8:1::1", 14_000, 5),
        ];
        assert_eq!(
            select(&list, Family::Ipv6, Select::Stable),
            Some("2001:db8:1::1".parse().unwrap())
        );
        assert_eq!(
            select(&list, Family::Ipv6, Select::Temporary),
            Some("2001:db8:1::aaaa".parse().unwrap())
        );
        assert_eq!(
            select(&list, Family::Ipv6, Select::Any),
            Some("2001:db8:1::1".parse().unwrap())
        );
    }

    #[test]
    fn stable_prefers_the_longest_preferred_lifetime() {
        // The old prefix is still preferred for a while after a re-delegation; the new one has
        // fresh lifetimes.
        let list = [
            dynamic("2001:db8:a0::1", 300, 1),
            dynamic("2001:db8:b0::1", 14_400, 2),
        ];
        assert_eq!(
            select(&list, Family::Ipv6, Select::Stable),
            Some("2001:db8:b0::1".parse().unwrap())
        );
        // Forever beats any finite lifetime.
        let list = [dynamic("2001:db8:a::1", 14_400, 2), v6("2001:db8:b::1")];
        assert_eq!(
            select(&list, Family::Ipv6, Select::Stable),
            Some("2001:db8:b::1".parse().unwrap())
        );
    }

    #[test]
    fn temporary_takes_the_newest() {
        let tmp = |a: &str, created| HostAddress {
            temporary: true,
            ..dynamic(a, 80_000, created)
        };
        let list = [
            tmp("2001:db8::a", 10),
            tmp("2001:db8::b", 30),
            tmp("2001:db8::c", 20),
        ];
        assert_eq!(
            select(&list, Family::Ipv6, Select::Temporary),
            Some("2001:db8::b".parse().unwrap())
        );
        assert_eq!(select(&list, Family::Ipv6, Select::Stable), None);
        assert_eq!(
            select(&list, Family::Ipv6, Select::Any),
            Some("2001:db8::b".parse().unwrap())
        );
    }

    #[test]
    fn ipv4_takes_the_primary_and_ignores_ipv6() {
        let a = |s: &str, created| HostAddress {
            created,
            ..HostAddress::permanent(s.parse().unwrap(), 32)
        };
        let list = [
            a("198.51.100.9", 7),
            a("2001:db8::1", 1),
            a("198.51.100.7", 3),
        ];
        assert_eq!(
            select(&list, Family::Ipv4, Select::Stable),
            Some("198.51.100.7".parse().unwrap())
        );
        assert_eq!(select(&list[1..2], Family::Ipv4, Select::Any), None);
    }

    fn any_address() -> impl Strategy<Value = HostAddress> {
        (
            any::<[u8; 16]>(),
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            proptest::option::of(0u64..200_000),
            0u64..1000,
        )
            .prop_map(
                |(bytes, global, temporary, deprecated, tentative, preferred, created)| {
                    let mut bytes = bytes;
                    bytes[0] = 0x20; // mostly global unicast
                    HostAddress {
                        addr: IpAddr::from(bytes),
                        prefix_len: 64,
                        global,
                        temporary,
                        deprecated,
                        tentative,
                        preferred: preferred.map(Duration::from_secs),
                        created,
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn never_publishes_an_unusable_address(
            list in proptest::collection::vec(any_address(), 0..12),
        ) {
            for how in [Select::Stable, Select::Temporary, Select::Any] {
                if let Some(chosen) = select(&list, Family::Ipv6, how) {
                    let a = list.iter().find(|a| a.addr == chosen && a.is_publishable());
                    prop_assert!(a.is_some(), "{chosen} is not usable in {list:?}");
                    let a = a.unwrap();
                    prop_assert!(!a.deprecated && !a.tentative && a.global);
                    match how {
                        Select::Stable => prop_assert!(!a.temporary),
                        Select::Temporary => prop_assert!(a.temporary),
                        Select::Any => {}
                    }
                }
            }
        }

        #[test]
        fn the_choice_does_not_depend_on_list_order(
            mut list in proptest::collection::vec(any_address(), 0..8),
        ) {
            let before: Vec<_> = [Select::Stable, Select::Temporary, Select::Any]
                .iter()
                .map(|s| select(&list, Family::Ipv6, *s))
                .collect();
            list.reverse();
            let after: Vec<_> = [Select::Stable, Select::Temporary, Select::Any]
                .iter()
                .map(|s| select(&list, Family::Ipv6, *s))
                .collect();
            prop_assert_eq!(before, after);
        }
    }
}
