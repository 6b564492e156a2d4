//! The `dataplane` of a tunnel in `v6gate status`: which one moves its packets and, on the
//! kernel path, the programs' counters.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct DataplaneStatus {
    /// `kernel` (tc-BPF on the underlay device) or `userspace` (the TUN dataplane).
    pub dataplane: String,
    /// Why `dataplane = "auto"` fell back to the TUN dataplane.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataplane_fallback: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_path: Option<KernelPathStatus>,
}

/// The programs on one underlay device and what they counted.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct KernelPathStatus {
    pub device: String,
    /// tcx links (they go with the process) or `clsact` filters.
    pub attach: String,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub rx_bytes: u64,
    /// Left to the stack and the TUN dataplane: probes, fragments, unusual headers.
    pub punted: u64,
    pub gso_tx: u64,
    pub gso_rx: u64,
    pub drops: BTreeMap<String, u64>,
}

impl DataplaneStatus {
    /// One line for the text form of `status`.
    pub fn render(&self) -> String {
        let mut line = format!("dataplane: {}", self.dataplane);
        if let Some(k) = &self.kernel_path {
            let _ = write!(
                line,
                " on {} ({}): tx {} pkts/{} B, rx {} pkts/{} B, punted {}, gso tx/rx {}/{}",
                k.device,
                k.attach,
                k.tx_packets,
                k.tx_bytes,
                k.rx_packets,
                k.rx_bytes,
                k.punted,
                k.gso_tx,
                k.gso_rx
            );
            for (reason, n) in &k.drops {
                let _ = write!(line, ", drop {reason} {n}");
            }
        }
        if let Some(why) = &self.dataplane_fallback {
            let _ = write!(line, " (kernel path not used: {why})");
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_field_reads_as_the_word() {
        let status = DataplaneStatus {
            dataplane: "kernel".into(),
            dataplane_fallback: None,
            kernel_path: Some(KernelPathStatus {
                device: "wan0".into(),
                attach: "tcx".into(),
                tx_packets: 3,
                ..KernelPathStatus::default()
            }),
        };
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(json["dataplane"], "kernel");
        assert_eq!(json["kernel_path"]["tx_packets"], 3);
        assert!(json.get("dataplane_fallback").is_none());
        assert!(
            status
                .render()
                .starts_with("dataplane: kernel on wan0 (tcx): tx 3 pkts")
        );
    }
}
