//! The `names` section of `status`: what the daemon publishes (`[[ddns]]`) and what it
//! follows (peers given by name, paths that follow a device's address).

use std::fmt::Write as _;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::ddns::DdnsStatus;

/// Everything about names the daemon keeps current.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamesStatus {
    /// Every `[[ddns]]` entry, in config order.
    #[serde(default)]
    pub ddns: Vec<DdnsStatus>,
    /// Every path end given by name or by device, in config order.
    #[serde(default)]
    pub endpoints: Vec<EndpointStatus>,
    /// Tunnels that cannot start yet because no path has both its addresses.
    #[serde(default)]
    pub waiting: Vec<WaitingTunnel>,
}

/// One path end the daemon resolves or follows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointStatus {
    pub tunnel: String,
    pub path: String,
    /// `remote` for a peer by name, `local_device` for a path following a device.
    pub end: String,
    /// The host name or the device.
    pub name: String,
    /// `ipv4` or `ipv6`.
    pub family: String,
    /// The address in use, if one is known.
    pub address: Option<IpAddr>,
    /// Seconds since the Unix epoch when `address` was last learnt (an answer, a device
    /// change).
    pub resolved_at: Option<u64>,
    /// Why there is no address, or why the last question failed.
    pub error: Option<String>,
}

/// A tunnel held back until one of its paths has both addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitingTunnel {
    pub tunnel: String,
    pub reason: String,
}

/// The lines of `status` for people.
pub fn render(out: &mut String, status: &NamesStatus) {
    for d in &status.ddns {
        let _ = writeln!(out);
        let _ = writeln!(out, "ddns {d}");
    }
    for e in &status.endpoints {
        let at = e
            .resolved_at
            .map_or_else(String::new, |t| format!(" (since unix time {t})"));
        let what = match e.address {
            Some(a) => format!("{a}{at}"),
            None => "no address".to_owned(),
        };
        let error = e
            .error
            .as_deref()
            .map_or_else(String::new, |r| format!("; {r}"));
        let _ = writeln!(
            out,
            "{} {}: tunnel {} path {}: {what}{error}",
            e.end, e.name, e.tunnel, e.path
        );
    }
    for w in &status.waiting {
        let _ = writeln!(out, "tunnel {} waiting: {}", w.tunnel, w.reason);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_names_every_entry_end_and_waiting_tunnel() {
        let status = NamesStatus {
            ddns: vec![DdnsStatus {
                name: "www".into(),
                provider: "rfc2136".into(),
                hostname: "www.example.jp".into(),
                family: "ipv6".into(),
                published: Some("2001:db8::1".parse().unwrap()),
                ..DdnsStatus::default()
            }],
            endpoints: vec![EndpointStatus {
                tunnel: "home".into(),
                path: "ipoe".into(),
                end: "remote".into(),
                name: "home-v6.example.jp".into(),
                family: "ipv6".into(),
                address: None,
                resolved_at: None,
                error: Some("no AAAA record".into()),
            }],
            waiting: vec![WaitingTunnel {
                tunnel: "home".into(),
                reason: "no path has both addresses".into(),
            }],
        };
        let mut out = String::new();
        render(&mut out, &status);
        assert!(
            out.contains("ddns www (rfc2136, AAAA www.example.jp): published 2001:db8::1"),
            "{out}"
        );
        assert!(
            out.contains("remote home-v6.example.jp: tunnel home path ipoe: no address; no AAAA"),
            "{out}"
        );
        assert!(out.contains("tunnel home waiting: no path"), "{out}");
    }
}
