//! Configuration model, validation and the host plan of the v6gate daemon.
//!
//! Everything here is pure: text in, a validated [`Config`] out; a config in, a [`Plan`] of host
//! state (devices, addresses, routes, pinned endpoints, sysctls, watch routes) out; two configs in, a
//! [`ConfigDiff`] out. The daemon owns the I/O that reads the file and applies the plan.
//!
//! ```
//! let config = control::Config::from_toml_str(
//!     r#"
//!     [[tunnel]]
//!     name = "vps"
//!     mode = "ipip6"
//!     local = "2001:db8:a::1"
//!     remote = "2001:db8:b::1"
//!     routes = ["0.0.0.0/0"]
//!     "#,
//!     "example.toml",
//! )?;
//! let plan = control::plan(&config, |_tunnel, _path| 1500);
//! let device = &plan.tunnels[0].devices[0];
//! assert_eq!(device.name, "v6g-vps");
//! assert_eq!(device.mtu, 1460);
//! assert_eq!(plan.tunnels[0].paths[0].pinned_endpoint.to_string(), "2001:db8:b::1");
//! # Ok::<(), control::ConfigError>(())
//! ```
#![forbid(unsafe_code)]

pub mod ddns;
mod diff;
mod duration;
mod error;
mod file;
pub mod firewall;
mod ike_version;
mod ipsec;
mod locate;
pub mod mape;
mod model;
mod names;
mod plan;
pub mod softwire;
mod validate;

pub use ddns::Ddns;
pub use diff::{ConfigDiff, diff};
pub use duration::{DurationError, format_duration, parse_duration};
pub use error::{ConfigError, Diagnostic};
pub use ike_version::IkeVersion;
pub use ipsec::{
    ESP_HEADER_LEN, ESP_TRAILER_LEN, Encap, IkeStart, IpsecConfig, Psk, UDP_HEADER_LEN, esp_fits,
};
pub use model::{
    Config, DEFAULT_CONTROL_SOCKET, DEFAULT_HOP_LIMIT, DEFAULT_PATH, DEFAULT_PIN_RULE_PRIORITY,
    DEFAULT_PIN_TABLE, DEFAULT_ROUTE_METRIC, DEVICE_PREFIX, ENCAP_LIMIT_OPTION_LEN, Gateway,
    HOOK_ENV_REASON, HOOK_ENV_STATE, HOOK_ENV_WATCH, Health, Hook, IPV4_HEADER_LEN,
    IPV6_HEADER_LEN, IPV6_MIN_MTU, InnerFamilies, MAIN_TABLE, MAX_DEVICE_LEN, Mode, MssClamp,
    PIN_BYPASS_MARK, Path, Probe, TrafficClass, Tunnel, Watch, WatchRoute, default_device,
};
pub use plan::{
    DevicePlan, PathPlan, Plan, RoutePlan, SysctlChange, TunnelPlan, WatchPlan, plan, tunnel_plan,
};

impl Config {
    /// Parses and validates a config. `origin` names the text in messages (usually its path).
    ///
    /// On failure the error holds every problem found, each with its key path and line.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Self, ConfigError> {
        validate::config_from_str(text, origin)
    }

    /// Reads, parses and validates the config file at `path`.
    pub fn load(path: &std::path::Path) -> Result<Self, ConfigError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::io(&origin, e))?;
        Self::from_toml_str(&text, &origin)
    }
}
