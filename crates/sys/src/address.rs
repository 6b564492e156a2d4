//! A device's addresses with their flags and lifetimes, for choosing which one to publish.
//!
//! [`crate::netlink::Netlink::addresses`] gives prefixes only; DDNS must also know which are
//! temporary, deprecated or still tentative, and how long each stays preferred. Changes are
//! announced by [`crate::netlink::watch_changes`] (`Change::Address`); this module reads the
//! state after one.

use std::io;
use std::net::IpAddr;
use std::time::Duration;

use futures::TryStreamExt;
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage, AddressScope};

use crate::error::{Result, SysError};

/// One address as the kernel lists it (RTM_NEWADDR).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DeviceAddress {
    pub index: u32,
    /// `IFA_LOCAL` where present (the host's own end of a point-to-point link such as PPPoE,
    /// whose `IFA_ADDRESS` is the peer), else `IFA_ADDRESS`.
    pub addr: IpAddr,
    pub prefix_len: u8,
    /// Scope universe.
    pub global: bool,
    /// `IFA_F_TEMPORARY` (RFC 8981 privacy address; same bit as `IFA_F_SECONDARY`, which an
    /// IPv4 address uses for "not primary").
    pub temporary: bool,
    pub deprecated: bool,
    /// In duplicate address detection (`IFA_F_TENTATIVE`), or failed it (`IFA_F_DADFAILED`).
    pub tentative: bool,
    /// Remaining preferred lifetime; `None` = forever.
    pub preferred: Option<Duration>,
    /// `cstamp`: creation time in hundredths of a second since boot.
    pub created: u64,
}

/// Reads address tables over a netlink connection of its own.
#[derive(Debug, Clone)]
pub struct AddressReader {
    handle: rtnetlink::Handle,
}

impl AddressReader {
    /// Opens a connection in the calling thread's network namespace; needs a tokio runtime.
    pub fn new() -> Result<Self> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|e| SysError::netlink("start netlink connection", io::Error::other(e)))?;
        let (connection, handle, _) = rtnetlink::new_connection()
            .map_err(|io| SysError::netlink("open netlink socket", io))?;
        runtime.spawn(connection);
        Ok(Self { handle })
    }

    /// Every address of interface `index`.
    pub async fn addresses(&self, index: u32) -> Result<Vec<DeviceAddress>> {
        let messages: Vec<AddressMessage> = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute()
            .try_collect()
            .await
            .map_err(|e| {
                SysError::netlink(
                    format!("list addresses of link #{index}"),
                    io::Error::other(e),
                )
            })?;
        Ok(messages
            .iter()
            .filter(|m| m.header.index == index)
            .filter_map(device_address)
            .collect())
    }

    /// Index of interface `name`, or `None` if there is none.
    pub async fn link_index(&self, name: &str) -> Result<Option<u32>> {
        crate::tun::validate_name(name)?;
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(name.to_owned())
            .execute();
        match links.try_next().await {
            Ok(link) => Ok(link.map(|l| l.header.index)),
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => Ok(None),
            Err(e) => Err(SysError::netlink(
                format!("look up link {name}"),
                io::Error::other(e),
            )),
        }
    }
}

/// Decodes one RTM_NEWADDR; `None` when it carries no address.
pub fn device_address(message: &AddressMessage) -> Option<DeviceAddress> {
    let find = |want_local: bool| {
        message
            .attributes
            .iter()
            .find_map(|a| match (a, want_local) {
                (AddressAttribute::Local(addr), true)
                | (AddressAttribute::Address(addr), false) => Some(*addr),
                _ => None,
            })
    };
    let addr = find(true).or_else(|| find(false))?;
    // IFA_FLAGS carries all 32 bits; the header's 8 are the fallback for old kernels.
    let flags = message
        .attributes
        .iter()
        .find_map(|a| match a {
            AddressAttribute::Flags(f) => Some(*f),
            _ => None,
        })
        .unwrap_or_else(|| AddressFlags::from_bits_retain(u32::from(message.header.flags.bits())));
    let cache = message.attributes.iter().find_map(|a| match a {
        AddressAttribute::CacheInfo(c) => Some(*c),
        _ => None,
    });
    let preferred = cache
        .map(|c| c.ifa_preferred)
        .filter(|&p| p != u32::MAX)
        .map(|p| Duration::from_secs(u64::from(p)));
    Some(DeviceAddress {
        index: message.header.index,
        addr,
        prefix_len: message.header.prefix_len,
        global: message.header.scope == AddressScope::Universe,
        temporary: addr.is_ipv6() && flags.contains(AddressFlags::Secondary),
        deprecated: flags.contains(AddressFlags::Deprecated),
        tentative: flags.intersects(AddressFlags::Tentative | AddressFlags::Dadfailed),
        preferred,
        created: cache.map_or(0, |c| u64::from(c.cstamp)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_route::address::CacheInfo;

    /// The kernel's `struct ifa_cacheinfo`, in host byte order.
    fn cache(preferred: u32, valid: u32, cstamp: u32, tstamp: u32) -> CacheInfo {
        let bytes: Vec<u8> = [preferred, valid, cstamp, tstamp]
            .iter()
            .flat_map(|v| v.to_ne_bytes())
            .collect();
        CacheInfo::parse(&bytes).unwrap()
    }

    fn message(attributes: Vec<AddressAttribute>) -> AddressMessage {
        let mut m = AddressMessage::default();
        m.header.index = 3;
        m.header.prefix_len = 64;
        m.attributes = attributes;
        m
    }

    #[test]
    fn flags_and_lifetimes_are_read() {
        let addr: IpAddr = "2001:db8::5".parse().unwrap();
        let m = message(vec![
            AddressAttribute::Address(addr),
            AddressAttribute::Flags(AddressFlags::Secondary | AddressFlags::Deprecated),
            AddressAttribute::CacheInfo(cache(0, 3600, 1234, 1300)),
        ]);
        let a = device_address(&m).unwrap();
        assert_eq!(a.addr, addr);
        assert!(a.temporary && a.deprecated && !a.tentative && a.global);
        assert_eq!(a.preferred, Some(Duration::ZERO));
        assert_eq!(a.created, 1234);
    }

    #[test]
    fn forever_and_point_to_point() {
        // A PPPoE link: IFA_LOCAL is ours, IFA_ADDRESS the peer's.
        let m = message(vec![
            AddressAttribute::Address("198.51.100.1".parse().unwrap()),
            AddressAttribute::Local("198.51.100.77".parse().unwrap()),
            AddressAttribute::Flags(AddressFlags::Permanent | AddressFlags::Secondary),
            AddressAttribute::CacheInfo(cache(u32::MAX, u32::MAX, 1, 1)),
        ]);
        let a = device_address(&m).unwrap();
        assert_eq!(a.addr, "198.51.100.77".parse::<IpAddr>().unwrap());
        assert_eq!(a.preferred, None);
        assert!(!a.temporary, "secondary IPv4 is not a privacy address");
        assert_eq!(device_address(&message(vec![])), None);
    }
}
