//! The config file's shape as serde sees it: keys and TOML types only.
//!
//! Values are kept loose (integers as `i64`, addresses as strings, "word or number" keys as
//! [`toml::Value`]) so that range and meaning checks happen in `validate`, which reports every
//! problem at once in the field's words instead of stopping at serde's first one. Unknown keys,
//! missing required keys and wrong TOML types are serde's to reject.

use serde::Deserialize;
use toml::Value;

use crate::firewall::{
    FileAllow, FileFirewall, FilePortForward, FileRule, FileTable, FileZone, Sections,
};

mod int;

pub(crate) use int::Int;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a v6gate config")]
pub(crate) struct FileConfig {
    #[serde(default)]
    pub gateway: FileGateway,
    #[serde(default)]
    pub tunnel: Vec<FileTunnel>,
    #[serde(default)]
    pub watch: Vec<FileWatch>,
    pub firewall: Option<FileFirewall>,
    #[serde(default)]
    pub zone: Vec<FileZone>,
    #[serde(default)]
    pub allow: Vec<FileAllow>,
    #[serde(default)]
    pub port_forward: Vec<FilePortForward>,
    #[serde(default)]
    pub table: Vec<FileTable>,
    #[serde(default)]
    pub rule: Vec<FileRule>,
    pub sysctl: Option<toml::Table>,
    #[serde(default)]
    pub ddns: Vec<crate::ddns::validate::FileDdns>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct FileGateway {
    pub control_socket: Option<String>,
    pub pin_table: Option<Int>,
    pub pin_rule_priority: Option<Int>,
    pub ipv4_forwarding: Option<bool>,
    pub ipv6_forwarding: Option<bool>,
    pub route_metric: Option<Int>,
    pub max_config_size: Option<Int>,
    pub metrics: Option<String>,
    pub key_log: Option<String>,
    pub state_dir: Option<String>,
    pub resolvers: Option<Vec<String>>,
}

/// `[[tunnel]]`. `local_subnets` and `[tunnel.ike]` belong to `mode = "ipsec"`; `validate`
/// rejects them with the other modes. `device_prefix`, `rule`, `default_route` and `aftr`
/// belong to `mode = "map-e"` and `"ds-lite"` (see `softwire`).
///
/// `local`/`remote` (the single-path form) and `path` exclude each other; which one is written
/// is checked in `validate`, so that the message can say so.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct FileTunnel {
    pub name: String,
    pub device: Option<String>,
    pub mode: String,
    pub local: Option<String>,
    pub remote: Option<String>,
    pub device_per_path: Option<bool>,
    pub path: Option<Vec<FilePath>>,
    pub health: Option<FileHealth>,
    pub encap_limit: Option<Value>,
    pub mtu: Option<Int>,
    pub routes: Option<Vec<String>>,
    pub allowed_sources: Option<Vec<String>>,
    pub inner_families: Option<Vec<String>>,
    pub mss_clamp: Option<Value>,
    pub dataplane: Option<Value>,
    /// A string or an array of strings.
    pub address: Option<Value>,
    pub tclass: Option<Value>,
    pub hop_limit: Option<Int>,
    pub underlay_mtu: Option<Int>,
    pub route_table: Option<Value>,
    pub enabled: Option<bool>,
    pub local_subnets: Option<Vec<String>>,
    pub ike: Option<FileIke>,
    /// `mode = "map-e"`: the device whose delegated prefix the MAP rule applies to.
    pub device_prefix: Option<String>,
    /// `mode = "map-e"`: a built-in rule set's name, or the rule as a table.
    pub rule: Option<Value>,
    /// `mode = "map-e"` and `"ds-lite"`: whether to route 0.0.0.0/0 into the tunnel.
    pub default_route: Option<bool>,
    /// `mode = "ds-lite"`: the AFTR, an IPv6 address or a host name.
    pub aftr: Option<String>,
    /// The single-path form's probe (the multipath form sets it per path).
    pub probe: Option<String>,
    pub probe_target: Option<String>,
    pub probe_source: Option<String>,
}

/// `[tunnel.ike]`: how an ipsec tunnel negotiates its keys. Words stay strings and durations
/// stay [`Value`]s so that `validate` can name the key and the accepted spellings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct FileIke {
    pub psk_file: Option<String>,
    pub psk: Option<String>,
    pub local_id: Option<String>,
    pub remote_id: Option<String>,
    pub proposals: Option<Vec<String>>,
    pub esp_proposals: Option<Vec<String>>,
    pub start: Option<String>,
    pub encap: Option<String>,
    pub dpd_delay: Option<Value>,
    pub dpd_timeout: Option<Value>,
    pub dpd_action: Option<String>,
    pub ike_lifetime: Option<Value>,
    pub child_lifetime: Option<Value>,
    pub version: Option<Int>,
    pub remote_psk: Option<Vec<FileRemotePsk>>,
}

/// `[[tunnel.ike.remote_psk]]`: a key of its own for a peer that proves `remote_id`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct FileRemotePsk {
    pub remote_id: String,
    pub psk_file: String,
}

/// `[[tunnel.path]]`: one underlay path to the tunnel's peer.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct FilePath {
    pub name: String,
    pub local: Option<String>,
    pub local_device: Option<String>,
    /// Needed only when neither end is an address.
    pub family: Option<String>,
    pub remote: String,
    pub cost: Option<Int>,
    pub probe: Option<String>,
    pub probe_target: Option<String>,
    pub probe_source: Option<String>,
    pub device: Option<String>,
    /// A string or an array of strings, as on the tunnel.
    pub address: Option<Value>,
    pub underlay_mtu: Option<Int>,
}

/// `[tunnel.health]`, and the same keys inside `[[watch]]`. Durations are strings (`"100ms"`),
/// kept as [`Value`] so a bare number gets a message that asks for a unit.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct FileHealth {
    pub interval: Option<Value>,
    pub timeout: Option<Value>,
    pub down_after: Option<Int>,
    pub up_after: Option<Int>,
    pub hold_down: Option<Value>,
}

/// `[[watch]]`. The health keys sit in the table itself (serde's `flatten` would lose
/// `deny_unknown_fields`), see [`FileWatch::health`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct FileWatch {
    pub name: String,
    pub target: String,
    pub source: Option<String>,
    pub device: String,
    pub interval: Option<Value>,
    pub timeout: Option<Value>,
    pub down_after: Option<Int>,
    pub up_after: Option<Int>,
    pub hold_down: Option<Value>,
    pub route: FileWatchRoute,
    pub on_down: Option<Vec<String>>,
    pub on_up: Option<Vec<String>>,
}

impl FileWatch {
    /// The health keys, moved out of the table.
    pub(crate) fn health(&mut self) -> FileHealth {
        FileHealth {
            interval: self.interval.take(),
            timeout: self.timeout.take(),
            down_after: self.down_after.take(),
            up_after: self.up_after.take(),
            hold_down: self.hold_down.take(),
        }
    }
}

/// `route = { dst = ..., via = ..., device = ..., table = ..., metric = ... }` of a watch.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct FileWatchRoute {
    pub dst: String,
    pub via: Option<String>,
    pub device: Option<String>,
    pub table: Option<Value>,
    pub metric: Option<Int>,
}

impl FileConfig {
    /// Every firewall and routing section, taken out of the whole file before the rest is
    /// checked.
    pub(crate) fn take_firewall(&mut self) -> Sections {
        Sections {
            firewall: self.firewall.take(),
            zone: std::mem::take(&mut self.zone),
            allow: std::mem::take(&mut self.allow),
            port_forward: std::mem::take(&mut self.port_forward),
            table: std::mem::take(&mut self.table),
            rule: std::mem::take(&mut self.rule),
            sysctl: self.sysctl.take(),
            tunnel_names: self.tunnel.iter().map(|t| t.name.clone()).collect(),
        }
    }
}
