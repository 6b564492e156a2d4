//! The IKE and ESP side of an ipsec tunnel in the status report: the daemon's IKE tasks and
//! packet thread fill it in; `status`, metrics and the per-path view read it.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Where an IKE SA stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IkeState {
    /// An exchange is under way.
    Connecting,
    Established,
    /// We initiate and have no SA now (between attempts).
    Down,
    /// We only respond and the peer has not come yet.
    #[default]
    Waiting,
}
impl IkeState {
    pub const ALL: [Self; 4] = [
        Self::Connecting,
        Self::Established,
        Self::Down,
        Self::Waiting,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Connecting => "connecting",
            Self::Established => "established",
            Self::Down => "down",
            Self::Waiting => "waiting",
        }
    }
}

impl fmt::Display for IkeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Status of one ipsec tunnel's IKE side.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpsecStatus {
    pub tunnel: String,
    /// The path this IKE SA runs on (each path of a tunnel has its own).
    #[serde(default)]
    pub path: String,
    pub ike_state: IkeState,
    /// IKE SA SPIs as hex, initiator's first.
    pub ike_spis: Option<(String, String)>,
    /// Negotiated IKE suite in strongSwan syntax, e.g. `aes128gcm16-prfsha256-modp2048`.
    pub ike_suite: Option<String>,
    pub ike_age_secs: Option<u64>,
    pub children: Vec<ChildStatus>,
    pub last_down_reason: Option<String>,
    /// Seconds since the peer last proved itself (authenticated IKE or ESP), which is what
    /// DPD watches; forged or stray datagrams do not count.
    pub last_heard_secs: Option<u64>,
    pub udp_encap: bool,
    pub attempts: u32,
    /// IKE SAs replaced by a rekey (ours or the peer's) since start.
    #[serde(default)]
    pub ike_rekeys: u64,
    /// CHILD SAs replaced by a rekey (ours or the peer's) since start.
    #[serde(default)]
    pub child_rekeys: u64,
    /// IKE SAs given up because the peer stopped answering (dead peer detection or
    /// unanswered retransmissions) since start.
    #[serde(default)]
    pub dpd_timeouts: u64,
    /// From the packet thread: the outbound SPI that seals now, the inbound SAs that open,
    /// and NAT keepalives sent.
    #[serde(default)]
    pub active_spi_out: Option<String>,
    #[serde(default)]
    pub inbound_sas: usize,
    #[serde(default)]
    pub keepalives_sent: u64,
}

impl IpsecStatus {
    /// Carries traffic: an IKE SA with at least one CHILD SA.
    pub fn carries(&self) -> bool {
        self.ike_state == IkeState::Established && !self.children.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildStatus {
    pub spi_in: String,
    pub spi_out: String,
    pub suite: String,
    pub age_secs: u64,
    /// Seconds to the planned rekey (lifetime minus the IKE core's margin).
    pub rekey_in_secs: u64,
}
