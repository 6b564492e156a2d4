//! `[gateway]`, and the routing tables any section may name.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use toml::Value;

use crate::file::{FileGateway, Int};
use crate::model::{
    DEFAULT_CONTROL_SOCKET, DEFAULT_MAX_CONFIG_SIZE, DEFAULT_PIN_RULE_PRIORITY, DEFAULT_PIN_TABLE,
    DEFAULT_ROUTE_METRIC, DEFAULT_STATE_DIR, Gateway, MAIN_TABLE, MAX_CONFIG_SIZE,
    MIN_MAX_CONFIG_SIZE,
};

use super::*;

/// Most `gateway.resolvers`: each is asked in turn, so more only delays an answer.
const MAX_RESOLVERS: usize = 4;

impl Checker {
    pub(super) fn gateway(&mut self, file: FileGateway) -> Gateway {
        let control_socket = match file.control_socket {
            Some(path) if !path.starts_with('/') => {
                self.error(
                    "gateway.control_socket",
                    format!("expected an absolute path, found {path:?}"),
                );
                PathBuf::from(DEFAULT_CONTROL_SOCKET)
            }
            Some(path) => PathBuf::from(path),
            None => PathBuf::from(DEFAULT_CONTROL_SOCKET),
        };
        let pin_table = file
            .pin_table
            .and_then(|Int(t)| self.table_id("gateway.pin_table", t))
            .unwrap_or(DEFAULT_PIN_TABLE);
        let pin_rule_priority = file
            .pin_rule_priority
            .and_then(|Int(p)| {
                self.int_in_why(
                    "gateway.pin_rule_priority",
                    p,
                    1,
                    MAIN_RULE_PRIORITY - 1,
                    "the pin rule must come after `local` (0) and before `main` (32766)",
                )
            })
            .map_or(DEFAULT_PIN_RULE_PRIORITY, |p| p as u32);
        let route_metric = file
            .route_metric
            .and_then(|Int(m)| self.int_in("gateway.route_metric", m, 0, u32::MAX.into()))
            .map_or(DEFAULT_ROUTE_METRIC, |m| m as u32);
        let max_config_size = self.max_config_size(file.max_config_size);
        let metrics = file.metrics.and_then(|a| self.metrics_address(&a));
        let key_log = match file.key_log {
            Some(path) if !path.starts_with('/') => {
                self.error(
                    "gateway.key_log",
                    format!("expected an absolute path, found {path:?}"),
                );
                None
            }
            other => other.map(PathBuf::from),
        };
        let state_dir = self.state_dir(file.state_dir);
        let resolvers = self.resolvers(file.resolvers.unwrap_or_default());
        Gateway {
            control_socket,
            pin_table,
            pin_rule_priority,
            ipv4_forwarding: file.ipv4_forwarding,
            ipv6_forwarding: file.ipv6_forwarding,
            route_metric,
            max_config_size,
            metrics,
            key_log,
            state_dir,
            resolvers,
        }
    }

    /// `metrics`: an address and port to listen on; the exporters' convention is loopback.
    fn metrics_address(&mut self, text: &str) -> Option<SocketAddr> {
        match text.parse::<SocketAddr>() {
            Ok(a) if a.port() == 0 => {
                self.error("gateway.metrics", "expected a port other than 0");
                None
            }
            Ok(a) => Some(a),
            Err(_) => {
                self.error(
                    "gateway.metrics",
                    format!(
                        "expected ADDRESS:PORT (e.g. \"127.0.0.1:9586\" or \"[::1]:9586\"), \
                         found {text:?}"
                    ),
                );
                None
            }
        }
    }

    /// `state_dir`: absolute, so that the working directory cannot choose where root writes.
    fn state_dir(&mut self, value: Option<String>) -> PathBuf {
        match value {
            Some(path) if path.starts_with('/') && !path.contains('\0') => PathBuf::from(path),
            Some(path) => {
                self.error(
                    "gateway.state_dir",
                    format!("expected an absolute path, found {path:?}"),
                );
                PathBuf::from(DEFAULT_STATE_DIR)
            }
            None => PathBuf::from(DEFAULT_STATE_DIR),
        }
    }

    /// `resolvers`: `"2001:db8::53"` (port 53) or `"[2001:db8::53]:5353"`, at most a few.
    fn resolvers(&mut self, list: Vec<String>) -> Vec<SocketAddr> {
        if list.len() > MAX_RESOLVERS {
            self.error(
                "gateway.resolvers",
                format!(
                    "lists {} name servers; at most {MAX_RESOLVERS} are asked",
                    list.len()
                ),
            );
            return Vec::new();
        }
        let mut out = Vec::new();
        for (i, text) in list.iter().enumerate() {
            let parsed = text
                .parse::<SocketAddr>()
                .ok()
                .or_else(|| text.parse::<IpAddr>().ok().map(|a| SocketAddr::new(a, 53)));
            match parsed {
                Some(addr) if !addr.ip().is_unspecified() && addr.port() != 0 => out.push(addr),
                _ => self.error(
                    format!("gateway.resolvers[{i}]"),
                    format!(
                        "expected a name server's address, optionally with a port \
                         (\"2001:db8::53\", \"[2001:db8::53]:53\", \"198.51.100.53:53\"), \
                         found {text:?}"
                    ),
                ),
            }
        }
        out
    }

    /// `max_config_size`, which this very file must also keep to.
    fn max_config_size(&mut self, value: Option<Int>) -> u64 {
        let key = "gateway.max_config_size";
        let limit = value
            .and_then(|Int(n)| {
                let (lo, hi) = (MIN_MAX_CONFIG_SIZE as i64, MAX_CONFIG_SIZE as i64);
                self.int_in_why(key, n, lo, hi, "v6gate reads no config larger than 64 MiB")
            })
            .map_or(DEFAULT_MAX_CONFIG_SIZE, |n| n as u64);
        if self.text_len > limit {
            self.error(
                key,
                format!(
                    "the file is {} bytes, more than the limit of {limit}; raise \
                     max_config_size (at most {MAX_CONFIG_SIZE}) if a config this large is meant",
                    self.text_len
                ),
            );
        }
        limit
    }

    /// `"main"` (the default) or a table id that is neither a kernel table nor the pin table.
    pub(super) fn route_table_value(
        &mut self,
        key: &str,
        value: Option<&Value>,
        gateway: &Gateway,
    ) -> Option<u32> {
        match value {
            None => Some(MAIN_TABLE),
            Some(Value::String(s)) if s == "main" => Some(MAIN_TABLE),
            Some(Value::Integer(n)) => self.route_table(key, *n, gateway),
            Some(other) => {
                self.error(
                    key,
                    format!(
                        "expected \"main\" or a routing table id, found {}",
                        describe(other)
                    ),
                );
                None
            }
        }
    }

    pub(super) fn route_table(&mut self, key: &str, id: i64, gateway: &Gateway) -> Option<u32> {
        if id == i64::from(MAIN_TABLE) {
            return Some(MAIN_TABLE);
        }
        let id = self.table_id(key, id)?;
        if id == gateway.pin_table {
            self.error(
                key,
                format!(
                    "{id} is gateway.pin_table, which holds only pinned endpoint routes; \
                     pick another table"
                ),
            );
            return None;
        }
        Some(id)
    }

    /// A routing table v6gate may fill: any id but the kernel's own tables.
    pub(super) fn table_id(&mut self, key: &str, id: i64) -> Option<u32> {
        let id = self.int_in(key, id, 1, u32::MAX.into())? as u32;
        if let Some((_, name)) = RESERVED_TABLES.iter().find(|(t, _)| *t == id) {
            self.error(
                key,
                format!("{id} is the kernel's `{name}` table; pick a table id of v6gate's own"),
            );
            return None;
        }
        Some(id)
    }
}
