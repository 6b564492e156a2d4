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

mod dataplane_choice;
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
mod quote;
pub mod softwire;
mod suggest;
mod sysctl;
mod validate;

pub use ddns::Ddns;
pub use diff::{ConfigDiff, diff};
pub use duration::{DurationError, format_duration, parse_duration};
pub use error::{ConfigError, Diagnostic};
pub use ipsec::{
    ESP_HEADER_LEN, ESP_TRAILER_LEN, Encap, IkeStart, IkeVersion, IpsecConfig, Psk, UDP_HEADER_LEN,
    esp_fits,
};
pub use model::{
    Config, DEFAULT_CONTROL_SOCKET, DEFAULT_HOP_LIMIT, DEFAULT_MAX_CONFIG_SIZE, DEFAULT_PATH,
    DEFAULT_PIN_RULE_PRIORITY, DEFAULT_PIN_TABLE, DEFAULT_ROUTE_METRIC, DEFAULT_STATE_DIR,
    DEVICE_PREFIX, Dataplane, ENCAP_LIMIT_OPTION_LEN, Gateway, HOOK_ENV_REASON, HOOK_ENV_STATE,
    HOOK_ENV_WATCH, Health, Hook, IPV4_HEADER_LEN, IPV6_HEADER_LEN, IPV6_MIN_MTU, InnerFamilies,
    MAIN_TABLE, MAX_CONFIG_SIZE, MAX_DEVICE_LEN, MIN_MAX_CONFIG_SIZE, Mode, MssClamp,
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

    /// Reads, parses and validates the config file at `path`. At most [`MAX_CONFIG_SIZE`]
    /// bytes are read; the config's own `gateway.max_config_size` may refuse less.
    pub fn load(path: &std::path::Path) -> Result<Self, ConfigError> {
        use std::io::Read;
        let origin = path.display().to_string();
        let mut text = String::new();
        std::fs::File::open(path)
            .and_then(|file| file.take(MAX_CONFIG_SIZE + 1).read_to_string(&mut text))
            .map_err(|e| ConfigError::io(&origin, e))?;
        if text.len() as u64 > MAX_CONFIG_SIZE {
            return Err(validate::too_large(&origin));
        }
        Self::from_toml_str(&text, &origin)
    }
}
