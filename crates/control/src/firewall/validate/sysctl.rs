//! `[sysctl]`.

use std::collections::HashMap;

use toml::Value;

use super::{Check, MAX_LIST, MAX_SYSCTL_KEY, MAX_SYSCTL_VALUE, is_name_byte};
use crate::model::Gateway;
use crate::plan::SysctlChange;

impl Check<'_> {
    pub(super) fn sysctls(
        &mut self,
        table: Option<toml::Table>,
        gateway: &Gateway,
    ) -> Vec<SysctlChange> {
        let Some(table) = table else {
            return Vec::new();
        };
        if table.len() > MAX_LIST {
            self.error(
                "sysctl",
                format!("has {} keys, more than {MAX_LIST}", table.len()),
            );
            return Vec::new();
        }
        let mut taken = HashMap::new();
        if gateway.ipv4_forwarding.is_some() {
            taken.insert("net/ipv4/ip_forward".to_owned(), "gateway.ipv4_forwarding");
        }
        if gateway.ipv6_forwarding.is_some() {
            taken.insert(
                "net/ipv6/conf/all/forwarding".to_owned(),
                "gateway.ipv6_forwarding",
            );
        }
        let mut seen: HashMap<String, String> = HashMap::new();
        let mut out = Vec::new();
        for (name, value) in table {
            let key = format!("sysctl.{name}");
            let Some(path) = self.sysctl_key(&key, &name) else {
                continue;
            };
            if let Some(other) = taken.get(&path) {
                self.error(
                    &key,
                    format!("is already set by {other}; set it in one place"),
                );
                continue;
            }
            if let Some(other) = seen.insert(path.clone(), name.clone()) {
                self.error(&key, format!("is the same key as {other:?}"));
                continue;
            }
            let value = match value {
                Value::String(s) => s,
                Value::Integer(n) => n.to_string(),
                Value::Boolean(b) => u8::from(b).to_string(),
                other => {
                    self.error(
                        &key,
                        format!("expected a string or integer, found {}", other.type_str()),
                    );
                    continue;
                }
            };
            if value.is_empty()
                || value.len() > MAX_SYSCTL_VALUE
                || value.chars().any(char::is_control)
            {
                self.error(
                    &key,
                    format!(
                        "expected 1 to {MAX_SYSCTL_VALUE} printable characters, found {value:?}"
                    ),
                );
                continue;
            }
            out.push(SysctlChange { key: path, value });
        }
        out
    }

    /// `net.ipv4.conf.all.rp_filter` or `net/ipv4/conf/eth0.100/rp_filter` to the path below
    /// /proc/sys. Only `net` keys: v6gate sets up networking, not the rest of the kernel.
    fn sysctl_key(&mut self, key: &str, name: &str) -> Option<String> {
        let parts: Vec<&str> = if name.contains('/') {
            name.split('/').collect()
        } else {
            name.split('.').collect()
        };
        let ok = name.len() <= MAX_SYSCTL_KEY
            && parts.len() >= 2
            && parts[0] == "net"
            && parts
                .iter()
                .all(|p| !p.is_empty() && *p != "." && *p != ".." && p.bytes().all(is_name_byte));
        if !ok {
            self.error(
                key,
                format!(
                    "expected a net.* sysctl like \"net.ipv4.conf.all.rp_filter\" (write \
                     net/ipv4/conf/eth0.100/rp_filter when a device name holds a dot), found {name:?}"
                ),
            );
            return None;
        }
        Some(parts.join("/"))
    }
}
