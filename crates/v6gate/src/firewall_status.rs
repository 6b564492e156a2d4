//! The firewall and policy-routing part of `v6gate status`: zones, the counters of the
//! ruleset's named rules (read from the kernel when status is asked), the policy routes and
//! rules, and the deadline of a `reload --confirm` that has not been confirmed.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct FirewallStatus {
    /// `installed`, `missing` (expected but not in the kernel), or `none` (no `[firewall]`).
    pub table: String,
    /// Policies of `[firewall]`; absent without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward: Option<String>,
    #[serde(default)]
    pub management: Vec<String>,
    #[serde(default)]
    pub zones: Vec<ZoneStatus>,
    /// One per named rule of the table (pinhole, port forward, zone forward, policy, tunnel
    /// underlay), rules of the same name summed.
    #[serde(default)]
    pub counters: Vec<RuleCounter>,
    /// `[[table]]` routes and `[[rule]]` rules in `ip` words, as installed.
    #[serde(default)]
    pub routes: Vec<String>,
    #[serde(default)]
    pub rules: Vec<String>,
    /// Routes waiting for their device.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes_waiting: Vec<String>,
    /// Seconds until a `reload --confirm` is reverted, while one is pending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revert_in_secs: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ZoneStatus {
    pub name: String,
    /// Devices, with the devices of its tunnels.
    pub devices: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
    #[serde(default)]
    pub forward_to: Vec<String>,
    pub masquerade: bool,
    pub mss_clamp: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct RuleCounter {
    /// The rule's name in the ruleset: `allow NAME`, `port_forward NAME`, `forward A to B`,
    /// `input policy`, `forward policy`, `input ZONE`, `tunnel T path P`.
    pub name: String,
    pub packets: u64,
    pub bytes: u64,
}

impl FirewallStatus {
    /// Adds one counted rule, summing rules of the same name.
    pub fn count(&mut self, name: &str, packets: u64, bytes: u64) {
        match self.counters.iter_mut().find(|c| c.name == name) {
            Some(c) => {
                c.packets += packets;
                c.bytes += bytes;
            }
            None => self.counters.push(RuleCounter {
                name: name.to_owned(),
                packets,
                bytes,
            }),
        }
    }

    /// The section as `status` prints it.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = write!(out, "\nfirewall: table inet v6gate {}", self.table);
        if let (Some(input), Some(forward)) = (&self.input, &self.forward) {
            let _ = write!(out, "; input {input}, forward {forward}");
        }
        if !self.management.is_empty() {
            let _ = write!(out, "; management {}", self.management.join(" "));
        }
        out.push('\n');
        if let Some(secs) = self.revert_in_secs {
            let _ = writeln!(
                out,
                "  PENDING: reverts to the previous config in {secs} s unless `v6gate confirm`"
            );
        }
        for z in &self.zones {
            let _ = write!(out, "  zone {}: {}", z.name, z.devices.join(" "));
            if let Some(input) = &z.input {
                let _ = write!(out, "; input {input}");
            }
            if !z.forward_to.is_empty() {
                let _ = write!(out, "; forward to {}", z.forward_to.join(", "));
            }
            if z.masquerade {
                out.push_str("; masquerade");
            }
            if z.mss_clamp {
                out.push_str("; mss clamp");
            }
            out.push('\n');
        }
        let width = self
            .counters
            .iter()
            .map(|c| c.name.len())
            .max()
            .unwrap_or(0);
        for c in &self.counters {
            let _ = writeln!(
                out,
                "  {:width$}  {} packets, {} bytes",
                c.name, c.packets, c.bytes
            );
        }
        for r in &self.routes {
            let _ = writeln!(out, "  route {r}");
        }
        for r in &self.routes_waiting {
            let _ = writeln!(out, "  route {r}: waiting");
        }
        for r in &self.rules {
            let _ = writeln!(out, "  {r}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_of_one_name_add_up_and_render_with_the_deadline() {
        let mut s = FirewallStatus {
            table: "installed".into(),
            input: Some("drop".into()),
            forward: Some("drop".into()),
            management: vec!["tcp/22".into()],
            zones: vec![ZoneStatus {
                name: "wan".into(),
                devices: vec!["eth0".into()],
                masquerade: true,
                ..ZoneStatus::default()
            }],
            revert_in_secs: Some(42),
            ..FirewallStatus::default()
        };
        s.count("input policy", 2, 100);
        s.count("allow https", 1, 60);
        s.count("input policy", 3, 200);
        assert_eq!(s.counters[0].packets, 5);
        assert_eq!(s.counters[0].bytes, 300);
        let text = s.render();
        for line in [
            "table inet v6gate installed; input drop, forward drop; management tcp/22",
            "reverts to the previous config in 42 s",
            "zone wan: eth0; masquerade",
            "input policy  5 packets, 300 bytes",
            "allow https   1 packets, 60 bytes",
        ] {
            assert!(text.contains(line), "{line:?} not in\n{text}");
        }
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["revert_in_secs"], 42);
        assert_eq!(json["counters"][1]["name"], "allow https");
    }
}
