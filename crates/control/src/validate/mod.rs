//! From TOML text to a validated [`Config`], collecting every problem with its key path.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use toml::de::DeTable;

use crate::error::{ConfigError, Diagnostic};
use crate::file::FileConfig;
use crate::locate::KeyIndex;
use crate::model::{Config, IPV6_HEADER_LEN, MAX_CONFIG_SIZE, Tunnel, Watch};
use crate::softwire;

mod across;
mod gateway;
mod health;
mod ipsec;
mod paths;
mod tunnel;
mod unknown;
mod values;
mod watch;

use tunnel::TunnelShape;
use values::{Scope, describe, family_name, ip_family_name, is_name_byte, parse_net};

/// Smallest MTU of an IPv4 link (RFC 791).
const IPV4_MIN_MTU: i64 = 68;
const IPV6_MIN_MTU: i64 = crate::model::IPV6_MIN_MTU as i64;
/// Largest inner packet: a full 64 KiB IPv6 packet minus the outer header.
const MAX_MTU: i64 = 65535 - IPV6_HEADER_LEN as i64;
/// Smallest MSS worth clamping to: IPv4's 68-byte minimum MTU plus a full IPv4 header's worth
/// of slack minus the TCP header, as Linux's TCP_MIN_MSS.
const MIN_MSS: i64 = 88;
const MAX_NAME_LEN: usize = 64;
/// Linux ip rule priority of the `main` table lookup; the pin rule must come before it.
const MAIN_RULE_PRIORITY: i64 = 32766;
/// Shortest probe interval or timeout: below this a lost probe says more about scheduling
/// jitter than about the path.
const MIN_PROBE_TIME: Duration = Duration::from_millis(10);
/// Longest duration of any timer; beyond an hour a probe no longer watches anything.
const MAX_TIMER: Duration = Duration::from_secs(3600);
/// Most probes in a row `down_after` / `up_after` may ask for.
const MAX_PROBE_COUNT: i64 = 1000;
/// Largest path cost, OSPF's largest interface cost.
const MAX_COST: i64 = 65535;
/// Kernel tables a v6gate table must not be: unspec, default, main, local.
const RESERVED_TABLES: [(u32, &str); 4] = [
    (0, "unspec"),
    (253, "default"),
    (254, "main"),
    (255, "local"),
];

pub(crate) fn config_from_str(text: &str, origin: &str) -> Result<Config, ConfigError> {
    if text.len() as u64 > MAX_CONFIG_SIZE {
        return Err(too_large(origin));
    }
    let doc = match DeTable::parse(text) {
        Ok(doc) => doc,
        Err(e) => {
            let index = KeyIndex::empty(text);
            let mut d = Diagnostic::new("", e.message().trim_end());
            d.location = e.span().map(|s| index.line_col(s.start));
            return Err(ConfigError::new(origin, vec![d]));
        }
    };
    let index = KeyIndex::new(text, &doc);
    let (file, unknown) = match unknown::deserialize(doc, &index) {
        Ok(found) => found,
        Err(diagnostics) => return Err(ConfigError::new(origin, diagnostics)),
    };

    let mut check = Checker {
        // Relative key files sit beside the config, wherever the daemon was started from.
        config_dir: std::path::Path::new(origin).parent().map(PathBuf::from),
        text_len: text.len() as u64,
        ..Checker::default()
    };
    let mut config = check.config(file);
    let locate = |mut diagnostics: Vec<Diagnostic>| {
        for d in &mut diagnostics {
            d.location = index.locate(&d.key);
        }
        // Unknown keys were located by serde's span already.
        diagnostics.extend(unknown.iter().cloned());
        // File order reads best; stable so problems on one line keep the order they were found in.
        diagnostics.sort_by_key(|d| d.location.unwrap_or((usize::MAX, 0)));
        diagnostics
    };
    if check.diagnostics.is_empty() && unknown.is_empty() {
        config.warnings = locate(check.warnings);
        return Ok(config);
    }
    Err(ConfigError::new(origin, locate(check.diagnostics)))
}

/// A file beyond what v6gate reads at all, refused before parsing.
pub(crate) fn too_large(origin: &str) -> ConfigError {
    let message = format!("larger than {MAX_CONFIG_SIZE} bytes, the most v6gate reads");
    ConfigError::new(origin, vec![Diagnostic::new("", message)])
}

/// Names the key a serde error is about, using its span.
fn serde_diagnostic(e: &toml::de::Error, index: &KeyIndex<'_>) -> Diagnostic {
    let start = e.span().map(|s| s.start);
    let mut key = start
        .and_then(|at| index.path_at(at))
        .unwrap_or_default()
        .to_owned();
    let message = e.message().trim_end().to_owned();
    // A missing key has the enclosing table's span; name the key itself.
    if let Some(field) = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.strip_suffix('`'))
    {
        key = if key.is_empty() {
            field.to_owned()
        } else {
            format!("{key}.{field}")
        };
    }
    let mut d = Diagnostic::new(key, message);
    d.location = start.map(|at| index.line_col(at));
    d
}

#[derive(Default)]
struct Checker {
    diagnostics: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
    /// Directory of the config file, against which relative `psk_file`s are resolved.
    config_dir: Option<PathBuf>,
    /// Bytes of the text being checked, for `gateway.max_config_size`.
    text_len: u64,
    /// Tunnels written in the single-path form, whose path keys are the tunnel's own.
    single_path: HashSet<usize>,
}

impl Checker {
    fn error(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.diagnostics.push(Diagnostic::new(key, message));
    }

    fn warn(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.warnings.push(Diagnostic::new(key, message));
    }

    fn config(&mut self, mut file: FileConfig) -> Config {
        let sections = file.take_firewall();
        let gateway = self.gateway(file.gateway);
        let mut tunnels: Vec<(usize, Tunnel)> = Vec::new();
        let mut softwires = Vec::new();
        for (i, t) in file.tunnel.into_iter().enumerate() {
            if softwire::is_softwire_mode(&t.mode) {
                let device_ok = t
                    .device
                    .as_ref()
                    .is_none_or(|d| self.device(&format!("tunnel[{i}].device"), d));
                let names_ok = self.name(&format!("tunnel[{i}].name"), &t.name) && device_ok;
                let sw = softwire::check(i, t, names_ok, &mut self.diagnostics);
                softwires.extend(sw.map(|sw| (i, sw)));
                continue;
            }
            softwire::foreign_keys(i, &t, &mut self.diagnostics);
            tunnels.extend(self.tunnel(i, t, &gateway).map(|t| (i, t)));
        }
        self.across_tunnels(&tunnels);
        softwire::across(&softwires, &tunnels, &mut self.diagnostics);
        let watches: Vec<(usize, Watch)> = file
            .watch
            .into_iter()
            .enumerate()
            .filter_map(|(i, w)| self.watch(i, w, &gateway).map(|w| (i, w)))
            .collect();
        self.across_watches(&watches, &tunnels, &gateway);
        let firewall = crate::firewall::validate::check(
            sections,
            &gateway,
            &mut self.diagnostics,
            &mut self.warnings,
        );
        let named: Vec<Tunnel> = tunnels.iter().map(|(_, t)| t.clone()).collect();
        let ddns = crate::ddns::validate::entries(self, file.ddns, &named);
        Config {
            gateway,
            tunnels: tunnels.into_iter().map(|(_, t)| t).collect(),
            softwires: softwires.into_iter().map(|(_, s)| s).collect(),
            watches: watches.into_iter().map(|(_, w)| w).collect(),
            ddns,
            warnings: Vec::new(),
            firewall: firewall.firewall,
            routing: firewall.routing,
            sysctls: firewall.sysctls,
        }
    }
}

impl crate::names::EndpointCheck for Checker {
    fn error(&mut self, key: &str, message: String) {
        Self::error(self, key, message);
    }

    fn endpoint(&mut self, key: &str, text: &str) -> Option<std::net::IpAddr> {
        Self::endpoint(self, key, text)
    }

    fn device_name(&mut self, key: &str, name: &str) -> bool {
        self.device(key, name)
    }
}

impl crate::ddns::validate::DdnsCheck for Checker {
    fn warn(&mut self, key: &str, message: String) {
        Self::warn(self, key, message);
    }

    fn entry_name(&mut self, key: &str, name: &str) -> bool {
        self.name(key, name)
    }

    fn config_dir(&self) -> Option<&std::path::Path> {
        self.config_dir.as_deref()
    }
}
