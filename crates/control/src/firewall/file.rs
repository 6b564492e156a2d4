//! The firewall and policy-routing sections as serde sees them: keys and TOML types only;
//! meaning is checked in `validate`.

use serde::Deserialize;
use toml::Value;

use crate::file::Int;

/// `[firewall]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct FileFirewall {
    pub input: Option<String>,
    pub forward: Option<String>,
    pub management: Option<Vec<String>>,
}

/// `[[zone]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct FileZone {
    pub name: String,
    pub devices: Option<Vec<String>>,
    pub tunnels: Option<Vec<String>>,
    pub input: Option<String>,
    pub forward: Option<String>,
    pub forward_to: Option<Vec<String>>,
    pub masquerade: Option<bool>,
    pub mss_clamp: Option<bool>,
}

/// `[[allow]]`. `ports` is a string in OpenWrt's syntax or a single integer.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct FileAllow {
    pub name: String,
    pub from: String,
    pub to: String,
    pub family: Option<String>,
    pub proto: Option<Vec<String>>,
    pub source: Option<Vec<String>>,
    pub dest: Option<Vec<String>>,
    pub ports: Option<Value>,
}

/// `[[port_forward]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct FilePortForward {
    pub name: String,
    pub from: String,
    pub proto: Option<Vec<String>>,
    pub port: Int,
    pub to: String,
    pub to_port: Option<Int>,
}

/// `[[table]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct FileTable {
    pub name: String,
    pub id: Int,
    pub routes: Option<Vec<FileTableRoute>>,
}

/// `routes = [{ dst = ..., via = ..., device = ..., metric = ... }]` of a `[[table]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct FileTableRoute {
    pub dst: String,
    pub via: Option<String>,
    pub device: Option<String>,
    pub metric: Option<Int>,
}

/// `[[rule]]`. `table` is a `[[table]]` name or an id; `ports` as in `[[allow]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct FileRule {
    pub name: String,
    pub priority: Option<Int>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub iif: Option<String>,
    pub table: Value,
    pub proto: Option<Vec<String>>,
    pub ports: Option<Value>,
}

/// Every section of this module, taken out of the whole file before the rest is checked.
#[derive(Debug, Default)]
pub(crate) struct Sections {
    pub firewall: Option<FileFirewall>,
    pub zone: Vec<FileZone>,
    pub allow: Vec<FileAllow>,
    pub port_forward: Vec<FilePortForward>,
    pub table: Vec<FileTable>,
    pub rule: Vec<FileRule>,
    pub sysctl: Option<toml::Table>,
    /// Names of every `[[tunnel]]` in the file, valid or not, so that a zone naming a broken
    /// tunnel is not also reported as naming an unknown one.
    pub tunnel_names: Vec<String>,
}
