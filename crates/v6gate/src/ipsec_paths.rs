//! Every path's IKE SA of an ipsec tunnel with more than one path, for `v6gate status`: each
//! path negotiates its own, and with `device_per_path` a routing daemon may use any of them,
//! not only the one the tunnel's `ipsec` object describes.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::status::IpsecStatus;

/// The IKE side of each path, in the order of `[[tunnel.path]]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct IpsecPaths(pub Vec<IpsecStatus>);

/// One line per path: its IKE SA, CHILD SAs and when the peer was last heard on it.
pub fn render(out: &mut String, paths: &IpsecPaths) {
    for s in &paths.0 {
        let spis = s
            .ike_spis
            .as_ref()
            .map_or_else(|| "-".to_string(), |(i, r)| format!("{i}_i {r}_r"));
        let _ = writeln!(
            out,
            "  ike {:<7}{} {spis}, {} child SA(s), last heard {}",
            s.path,
            s.ike_state,
            s.children.len(),
            s.last_heard_secs
                .map_or_else(|| "never".to_string(), |a| format!("{a}s ago")),
        );
    }
}
