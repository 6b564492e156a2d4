//! The IKE and ESP side of an ipsec tunnel in `status`: the daemon's IKE tasks and packet
//! thread fill it in, the status view renders it.

use serde::{Deserialize, Serialize};

/// Status of one ipsec tunnel's IKE side, for `v6gate status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpsecStatus {
    pub tunnel: String,
    /// The path this IKE SA runs on (each path of a tunnel has its own).
    #[serde(default)]
    pub path: String,
    /// "connecting", "established", "down" or "waiting" (responder without an SA).
    pub ike_state: String,
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
    /// From the packet thread: the outbound SPI that seals now, the inbound SAs that open,
    /// and NAT keepalives sent.
    #[serde(default)]
    pub active_spi_out: Option<String>,
    #[serde(default)]
    pub inbound_sas: usize,
    #[serde(default)]
    pub keepalives_sent: u64,
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
