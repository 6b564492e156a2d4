//! Values any section uses: integers in a range, durations, addresses, and how a value is
//! quoted back.

use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use toml::Value;

use crate::duration::{format_duration, parse_duration};

use super::*;

impl Checker {
    pub(super) fn int_in(&mut self, key: &str, value: i64, lo: i64, hi: i64) -> Option<i64> {
        if (lo..=hi).contains(&value) {
            return Some(value);
        }
        self.error(
            key,
            format!("expected an integer {lo}..={hi}, found {value}"),
        );
        None
    }

    pub(super) fn int_in_why(
        &mut self,
        key: &str,
        value: i64,
        lo: i64,
        hi: i64,
        why: &str,
    ) -> Option<i64> {
        if (lo..=hi).contains(&value) {
            return Some(value);
        }
        self.error(
            key,
            format!("expected an integer {lo}..={hi} ({why}), found {value}"),
        );
        None
    }

    pub(super) fn duration(
        &mut self,
        key: &str,
        value: &Value,
        lo: Duration,
        hi: Duration,
    ) -> Option<Duration> {
        let range = format!("{}..={}", format_duration(lo), format_duration(hi));
        let Value::String(text) = value else {
            self.error(
                key,
                format!(
                    "expected a duration string like \"100ms\", \"1.5s\" or \"2m\" ({range}), found {}",
                    describe(value)
                ),
            );
            return None;
        };
        match parse_duration(text) {
            Ok(d) if (lo..=hi).contains(&d) => Some(d),
            Ok(_) => {
                self.error(key, format!("expected a duration {range}, found {text:?}"));
                None
            }
            Err(why) => {
                self.error(
                    key,
                    format!(
                        "expected a duration like \"100ms\", \"1.5s\" or \"2m\", found {text:?}: {why}"
                    ),
                );
                None
            }
        }
    }

    /// An IP address of either family. Host names are named as such: they are common in
    /// dynamic-DNS set-ups and deserve a better answer than "not an address".
    pub(super) fn ip(&mut self, key: &str, text: &str) -> Option<IpAddr> {
        match text.parse::<IpAddr>() {
            Ok(addr) => Some(addr),
            Err(_) if looks_like_host_name(text) => {
                self.error(
                    key,
                    format!(
                        "{text:?} is a host name; names are not resolved yet, write the address"
                    ),
                );
                None
            }
            Err(_) => {
                self.error(
                    key,
                    format!("expected an IPv4 or IPv6 address, found {text:?}"),
                );
                None
            }
        }
    }

    /// `addr` if it can be the unicast peer of a packet; link-local only where something gives
    /// it a scope.
    pub(super) fn unicast(&mut self, key: &str, addr: IpAddr, scope: Scope) -> Option<IpAddr> {
        let problem = match addr {
            IpAddr::V4(v4) if v4.is_unspecified() => Some("the unspecified address"),
            IpAddr::V4(v4) if v4.is_loopback() => Some("a loopback address"),
            IpAddr::V4(v4) if v4.is_multicast() => Some("a multicast address"),
            IpAddr::V4(v4) if v4.is_broadcast() => Some("the broadcast address"),
            IpAddr::V4(_) => None,
            IpAddr::V6(v6) if v6.is_unspecified() => Some("the unspecified address"),
            IpAddr::V6(v6) if v6.is_loopback() => Some("the loopback address"),
            IpAddr::V6(v6) if v6.is_multicast() => Some("a multicast address"),
            IpAddr::V6(v6) if v6.is_unicast_link_local() && scope == Scope::None => {
                Some("link-local, which needs an interface scope that tunnels do not have")
            }
            IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() => {
                Some("IPv4-mapped, which never appears on the wire")
            }
            IpAddr::V6(_) => None,
        };
        match problem {
            Some(problem) => {
                self.error(
                    key,
                    format!("{addr} is {problem}; expected a unicast address"),
                );
                None
            }
            None => Some(addr),
        }
    }
}

pub(super) fn parse_net(text: &str) -> Option<IpNet> {
    text.parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
}

pub(super) fn family_name(net: &IpNet) -> &'static str {
    match net {
        IpNet::V4(_) => "IPv4",
        IpNet::V6(_) => "IPv6",
    }
}

pub(super) fn ip_family_name(addr: IpAddr) -> &'static str {
    match addr {
        IpAddr::V4(_) => "IPv4",
        IpAddr::V6(_) => "IPv6",
    }
}

/// Letters, digits, dots and hyphens with at least one letter: what a DNS name looks like, and
/// what no address looks like.
pub(super) fn looks_like_host_name(text: &str) -> bool {
    !text.is_empty()
        && text.bytes().any(|b| b.is_ascii_alphabetic())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
}

pub(super) fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')
}

/// A TOML value as a person wrote it, for "found ..." in messages.
pub(super) fn describe(value: &Value) -> String {
    match value {
        Value::String(s) => format!("{s:?}"),
        Value::Integer(n) => n.to_string(),
        Value::Float(x) => format!("{x:?}"),
        Value::Boolean(b) => b.to_string(),
        Value::Datetime(d) => d.to_string(),
        Value::Array(_) => "an array".to_owned(),
        Value::Table(_) => "a table".to_owned(),
    }
}

/// Whether a link-local address has something to scope it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Scope {
    /// Tunnel endpoints: outer packets leave by route lookup, not through a named device.
    None,
    /// Probes and gateways bound to a device.
    Device,
}
