//! The config file's shape as serde sees it: keys and TOML types only.
//!
//! Values are kept loose (integers as `i64`, addresses as strings, "word or number" keys as
//! [`toml::Value`]) so that range and meaning checks happen in `validate`, which reports every
//! problem at once in the field's words instead of stopping at serde's first one. Unknown keys,
//! missing required keys and wrong TOML types are serde's to reject.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use toml::Value;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a v6gate config")]
pub(crate) struct FileConfig {
    #[serde(default)]
    pub gateway: FileGateway,
    #[serde(default)]
    pub tunnel: Vec<FileTunnel>,
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
}

/// `[[tunnel]]`. Later modes add their own keys here (`local_subnets`, `[tunnel.ike]`,
/// `[[tunnel.path]]`, `[tunnel.health]`); until then they are unknown keys.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct FileTunnel {
    pub name: String,
    pub device: Option<String>,
    pub mode: String,
    pub local: String,
    pub remote: String,
    pub encap_limit: Option<Value>,
    pub mtu: Option<Int>,
    pub routes: Option<Vec<String>>,
    pub allowed_sources: Option<Vec<String>>,
    pub inner_families: Option<Vec<String>>,
    pub mss_clamp: Option<Value>,
    /// A string or an array of strings.
    pub address: Option<Value>,
    pub tclass: Option<Value>,
    pub hop_limit: Option<Int>,
    pub underlay_mtu: Option<Int>,
    pub route_table: Option<Value>,
    pub enabled: Option<bool>,
}

/// A TOML integer, range-checked later; its own type so a wrong type reads "expected an
/// integer" rather than Rust's "expected i64".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Int(pub i64);

impl<'de> Deserialize<'de> for Int {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_i64(IntVisitor)
    }
}

struct IntVisitor;

impl Visitor<'_> for IntVisitor {
    type Value = Int;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an integer")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Int, E> {
        Ok(Int(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Int, E> {
        i64::try_from(v)
            .map(Int)
            .map_err(|_| E::custom(format!("{v} is out of range")))
    }
}
