//! Dynamic DNS: the `[[ddns]]` entries and the decisions behind publishing an address.
//!
//! | module | decides |
//! | --- | --- |
//! | [`select`] | which of a device's addresses is *the* one to publish (`stable`, `temporary`, `any`) |
//! | [`schedule`] | when an entry sends an update: on change only, a forced refresh, the provider's minimum interval, backoff after errors, a stop after an authentication error |
//! | [`resolve`] | when a peer's name is asked again: the record's TTL while the peer answers, every few seconds while it is gone |
//!
//! All of it is sans-IO: addresses, results and `now` go in, addresses to publish and deadlines
//! come out. The daemon's shell reads netlink, talks to the providers and keeps the clock.

pub mod resolve;
pub mod schedule;
pub mod select;
pub(crate) mod validate;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// One `[[ddns]]` table: a host name kept pointing at one address of this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ddns {
    pub name: String,
    pub provider: Provider,
    /// The name published, lower case, without a trailing dot.
    pub hostname: String,
    /// File holding the secret (see [`Provider`] for its form); read at each update so a
    /// rotated secret needs no reload.
    pub credentials_file: PathBuf,
    pub address: AddressSource,
    pub server: Server,
    /// rfc2136: the zone the UPDATE is for; defaults to the hostname's parent.
    pub zone: Option<String>,
    /// PEM file of the certificate authority to trust instead of the system's.
    pub ca_file: Option<PathBuf>,
    /// No two updates of this entry leave closer together than this.
    pub min_interval: Duration,
}

impl Ddns {
    /// Family of the records this entry publishes (A for IPv4, AAAA for IPv6); for an address
    /// taken from a tunnel path, the path's family, which the caller knows.
    pub fn family(&self) -> Option<Family> {
        match &self.address {
            AddressSource::Device { family, .. } => Some(*family),
            AddressSource::Path { .. } => None,
        }
    }
}

/// Who keeps the record, and how an update is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Provider {
    /// Value Domain's `dyn.fcg`; the secret is the domain's DDNS password.
    ValueDomain,
    /// The dyndns2 protocol (`/nic/update`); the secret is `user:password`.
    Dyndns2,
    /// Cloudflare API v4; the secret is an API token allowed to edit the zone's records.
    Cloudflare,
    /// RFC 2136 UPDATE signed with TSIG; the secret is `hmac-sha256:KEYNAME:BASE64`.
    Rfc2136,
    /// An HTTPS URL template with `{ip}`, `{hostname}` and `{token}`; the secret is the token.
    Url,
}

impl Provider {
    pub const ALL: [Self; 5] = [
        Self::ValueDomain,
        Self::Dyndns2,
        Self::Cloudflare,
        Self::Rfc2136,
        Self::Url,
    ];

    /// The spelling used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ValueDomain => "value-domain",
            Self::Dyndns2 => "dyndns2",
            Self::Cloudflare => "cloudflare",
            Self::Rfc2136 => "rfc2136",
            Self::Url => "url",
        }
    }

    /// `min_interval` when none is configured.
    pub fn default_min_interval(self) -> Duration {
        match self {
            Self::Cloudflare => Duration::from_secs(300),
            Self::ValueDomain | Self::Dyndns2 | Self::Url => Duration::from_secs(60),
            Self::Rfc2136 => Duration::from_secs(1),
        }
    }

    /// The shortest interval the provider itself asks for: Value Domain answers 503 to a
    /// second call within 60 s; Cloudflare's API limits and ddclient's practice give 5 min.
    /// A shorter configured `min_interval` is obeyed, with a warning.
    pub fn rule(self) -> Duration {
        match self {
            Self::ValueDomain => Duration::from_secs(60),
            Self::Cloudflare => Duration::from_secs(300),
            Self::Dyndns2 | Self::Rfc2136 | Self::Url => Duration::ZERO,
        }
    }

    /// Where updates go when `server` is not configured.
    pub fn default_server(self) -> Option<&'static str> {
        match self {
            Self::ValueDomain => Some("https://dyn.value-domain.com/cgi-bin/dyn.fcg"),
            Self::Cloudflare => Some("https://api.cloudflare.com/client/v4"),
            Self::Dyndns2 | Self::Rfc2136 | Self::Url => None,
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where an entry's updates are sent.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Server {
    /// An `https://` URL: the endpoint (value-domain), the base (dyndns2: `/nic/update` is
    /// appended; cloudflare: the API root) or the whole template (url).
    Https(String),
    /// rfc2136: the primary name server.
    Dns(SocketAddr),
}

/// Which address an entry publishes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AddressSource {
    /// One of the device's addresses of `family`, chosen by `select` (IPv6 only; an IPv4
    /// device's first global address otherwise).
    Device {
        device: String,
        family: Family,
        select: Select,
    },
    /// The current local address of a tunnel's path (which may itself follow a device).
    Path { tunnel: String, path: String },
}

/// IPv4 (A records) or IPv6 (AAAA records).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    Ipv4,
    Ipv6,
}

impl Family {
    pub fn of(addr: IpAddr) -> Self {
        if addr.is_ipv6() {
            Self::Ipv6
        } else {
            Self::Ipv4
        }
    }

    /// The spelling used in the config file and in state keys.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ipv4 => "ipv4",
            Self::Ipv6 => "ipv6",
        }
    }

    /// The DNS record type holding an address of this family.
    pub fn record_type(self) -> &'static str {
        match self {
            Self::Ipv4 => "A",
            Self::Ipv6 => "AAAA",
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which IPv6 address of a device is published (see [`select::select`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Select {
    /// Global, not temporary, not deprecated, not tentative; the longest preferred lifetime.
    #[default]
    Stable,
    /// The newest usable temporary (RFC 8981 privacy) address.
    Temporary,
    /// Any usable global address, stable ones first.
    Any,
}

impl Select {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stable => "stable",
            Self::Temporary => "temporary",
            Self::Any => "any",
        }
    }
}
