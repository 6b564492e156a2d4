//! The status types. States are enums; their JSON spelling (`"up"`, `"established"`) is what
//! `status --json` has always shown, so scripts keep working.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::ipsec::IpsecStatus;

/// Spelling shared by `Display`, the table and the metrics' labels.
macro_rules! words {
    ($ty:ident { $($variant:ident => $word:literal),+ $(,)? }) => {
        impl $ty {
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $word),+
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

/// Whether a tunnel carries traffic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TunnelState {
    Up,
    /// No underlay route to the endpoint, the peer is silent past its probe's bound, no
    /// IKE SA with a CHILD SA, or taken down by `v6gate down`.
    #[default]
    Down,
}
words!(TunnelState { Up => "up", Down => "down" });

/// What the probes (or the watch's echoes) say about a path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PathState {
    Up,
    Down,
    /// No verdict yet, or nothing probes the path.
    #[default]
    Unknown,
}
words!(PathState { Up => "up", Down => "down", Unknown => "unknown" });

impl From<dataplane::health::HealthState> for PathState {
    fn from(s: dataplane::health::HealthState) -> Self {
        use dataplane::health::HealthState;
        match s {
            HealthState::Up => Self::Up,
            HealthState::Down => Self::Down,
            HealthState::Unknown => Self::Unknown,
        }
    }
}

/// How a path's endpoint is pinned.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteKind {
    /// Through the underlay gateway and device.
    Via,
    /// The underlay route is lost; the blackhole keeps the tunnel from carrying itself.
    #[default]
    Blackhole,
}
words!(RouteKind { Via => "via", Blackhole => "blackhole" });

/// Everything `status` shows. Sections owned by other parts of the gateway are one optional
/// field each, left out of the JSON while absent.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GatewayStatus {
    pub config: String,
    pub pid: u32,
    pub uptime_secs: u64,
    pub tunnels: Vec<TunnelStatus>,
    #[serde(default)]
    pub watches: Vec<WatchStatus>,
    /// `[[ddns]]` entries and path ends given by name or device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub names: Option<crate::names::NamesStatus>,
    /// What the packet thread counts beyond any one tunnel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packet: Option<crate::packet_status::PacketStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firewall: Option<Box<crate::firewall_status::FirewallStatus>>,
    /// MAP-E and DS-Lite tunnels: the calculation and NAPT use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub softwires: Option<Vec<crate::softwire_status::SoftwireStatus>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TunnelStatus {
    pub name: String,
    pub device: String,
    pub mode: String,
    pub state: TunnelState,
    /// The underlay path in use, in words (`ipv6 via fe80::1 dev eth0`).
    pub active_path: String,
    pub local: String,
    pub remote: String,
    pub mtu: u16,
    pub path_mtu: u16,
    pub encap_limit: Option<u8>,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub rx_bytes: u64,
    /// Seconds since the last packet from the peer was accepted (any path); `None` before the
    /// first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_received_secs: Option<u64>,
    /// Taken out of service by `v6gate down` (until `v6gate up` or a restart).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub held_down: bool,
    pub mss_clamped: u64,
    pub icmp_sent: u64,
    pub send_errors: u64,
    /// Inner TCP packets longer than the tunnel MTU that arrived merged by the underlay's GRO
    /// (and left through the TUN as GSO frames).
    #[serde(default)]
    pub underlay_gro_packets: u64,
    /// ESP-in-UDP sends that carried a train of datagrams (UDP segmentation offload).
    #[serde(default)]
    pub udp_trains_sent: u64,
    /// ESP-in-UDP receives that brought a train (UDP receive offload).
    #[serde(default)]
    pub udp_trains_received: u64,
    /// Switches of the active path since start.
    #[serde(default)]
    pub failovers: u64,
    pub drops: BTreeMap<String, u64>,
    /// The active path's pinned endpoint route.
    pub pinned_route: PinnedRoute,
    #[serde(default)]
    pub paths: Vec<PathStatus>,
    /// IKE and ESP state of an ipsec tunnel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipsec: Option<IpsecStatus>,
    /// Every path's IKE SA, when the tunnel has more than one path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipsec_paths: Option<crate::ipsec_paths::IpsecPaths>,
    /// Which dataplane moves the tunnel's packets (`"dataplane": "kernel"`).
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub dataplane: Option<crate::kpath_status::DataplaneStatus>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PathStatus {
    pub name: String,
    pub local: String,
    pub remote: String,
    pub cost: u32,
    pub probe: String,
    /// Carries the tunnel's traffic now.
    pub active: bool,
    pub state: PathState,
    pub srtt_ms: Option<f64>,
    pub loss_percent: f64,
    pub last_change_secs_ago: Option<u64>,
    pub path_mtu: u16,
    pub tx_packets: u64,
    pub rx_packets: u64,
    pub probes_sent: u64,
    pub probes_answered: u64,
    pub pinned_route: PinnedRoute,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PinnedRoute {
    pub destination: String,
    pub kind: RouteKind,
    pub gateway: Option<String>,
    pub device: Option<String>,
    pub table: u32,
}

impl PinnedRoute {
    pub fn describe(&self) -> String {
        match (&self.gateway, &self.device) {
            _ if self.kind == RouteKind::Blackhole => format!("blackhole {}", self.destination),
            (Some(gw), Some(dev)) => format!("{} via {gw} dev {dev}", self.destination),
            (None, Some(dev)) => format!("{} dev {dev}", self.destination),
            (Some(gw), None) => format!("{} via {gw}", self.destination),
            (None, None) => self.destination.clone(),
        }
    }
}

/// One `[[watch]]`: the uplink it probes and the route it keeps while that answers.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct WatchStatus {
    pub name: String,
    pub state: PathState,
    pub target: String,
    pub device: String,
    pub route: String,
    pub route_installed: bool,
    pub srtt_ms: Option<f64>,
    pub loss_percent: f64,
    pub last_change_secs_ago: Option<u64>,
    pub transitions: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::IkeState;

    #[test]
    fn states_keep_their_json_spelling() {
        let t = TunnelStatus {
            state: TunnelState::Up,
            ipsec: Some(IpsecStatus {
                ike_state: IkeState::Established,
                ..IpsecStatus::default()
            }),
            paths: vec![PathStatus::default()],
            ..TunnelStatus::default()
        };
        let json = serde_json::to_value(&t).unwrap();
        assert_eq!(json["state"], "up");
        assert_eq!(json["ipsec"]["ike_state"], "established");
        assert_eq!(json["paths"][0]["state"], "unknown");
        assert_eq!(json["pinned_route"]["kind"], "blackhole");
        // Optional additions stay out of the JSON until they say something.
        assert!(json.get("last_received_secs").is_none(), "{json}");
        assert!(json.get("held_down").is_none(), "{json}");
        let back: TunnelStatus = serde_json::from_value(json).unwrap();
        assert_eq!(back.state, TunnelState::Up);
        assert_eq!(back.ipsec.unwrap().ike_state, IkeState::Established);
    }

    #[test]
    fn an_unknown_state_word_is_refused_not_guessed() {
        let r: Result<TunnelState, _> = serde_json::from_str("\"sideways\"");
        assert!(r.is_err());
        for s in [IkeState::Connecting, IkeState::Down, IkeState::Waiting] {
            let word = serde_json::to_string(&s).unwrap();
            assert_eq!(word, format!("\"{s}\""));
        }
    }
}
