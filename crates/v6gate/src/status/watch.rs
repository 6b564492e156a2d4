//! An uplink watch in `status`: the daemon's watch task fills it in, the status view renders it.

use serde::{Deserialize, Serialize};

/// One `[[watch]]`: its probe target and device, the route it installs while up, and how the
/// probes went.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct WatchStatus {
    pub name: String,
    pub state: String,
    pub target: String,
    pub device: String,
    pub route: String,
    pub route_installed: bool,
    pub srtt_ms: Option<f64>,
    pub loss_percent: f64,
    pub last_change_secs_ago: Option<u64>,
    pub transitions: u64,
}
