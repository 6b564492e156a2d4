//! The config file's shape as serde sees it: keys and TOML types only.
//!
//! Values are kept loose (integers as `i64`, addresses as strings, "word or number" keys as
//! [`toml::Value`]) so that range and meaning checks happen in `validate`, which reports every
//! problem at once in the field's words instead of stopping at serde's first one. Unknown keys,
//! missing required keys and wrong TOML types are serde's to reject.

use serde::Deserialize;
use toml::Value;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileConfig {
    #[serde(default)]
    pub gateway: FileGateway,
    #[serde(default)]
    pub tunnel: Vec<FileTunnel>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileGateway {
    pub control_socket: Option<String>,
    pub pin_table: Option<i64>,
    pub pin_rule_priority: Option<i64>,
    pub ipv4_forwarding: Option<bool>,
    pub ipv6_forwarding: Option<bool>,
    pub route_metric: Option<i64>,
}

/// `[[tunnel]]`. Later modes add their own keys here (`local_subnets`, `[tunnel.ike]`,
/// `[[tunnel.path]]`, `[tunnel.health]`); until then they are unknown keys.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileTunnel {
    pub name: String,
    pub device: Option<String>,
    pub mode: String,
    pub local: String,
    pub remote: String,
    pub encap_limit: Option<Value>,
    pub mtu: Option<i64>,
    pub routes: Option<Vec<String>>,
    pub allowed_sources: Option<Vec<String>>,
    pub inner_families: Option<Vec<String>>,
    pub mss_clamp: Option<Value>,
    /// A string or an array of strings.
    pub address: Option<Value>,
    pub tclass: Option<Value>,
    pub hop_limit: Option<i64>,
    pub underlay_mtu: Option<i64>,
    pub route_table: Option<Value>,
    pub enabled: Option<bool>,
}
