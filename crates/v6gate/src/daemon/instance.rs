//! One daemon instance, named by its control socket.
//!
//! The socket's directory is the runtime directory (created root-only when missing, refused
//! when someone else could write to it). In it, beside the socket `NAME.sock`, live the
//! instance's lock `NAME.lock` and journal `NAME.journal`. The lock is taken before the host
//! is touched, so a second daemon with the same socket refuses at once and changes nothing;
//! daemons with different sockets have different locks and journals and leave each other's
//! state alone.

use std::path::Path;

use anyhow::{Context, bail};
use control::Config;
use sys::netlink::{Family, Netlink};
use sys::runtime_dir::{InstanceLock, LockError, RuntimeDir};

use super::host::{Accept, HostState};
use super::{LOOKUP_MARK, MAIN_TABLE, ROUTE_PROTOCOL, gateway_objects, host::Object};

pub(super) struct Instance {
    pub lock: InstanceLock,
    pub host: HostState<Netlink>,
}

impl Instance {
    /// Claims the instance named by `config`'s control socket.
    pub fn claim(config: &Config, netlink: Netlink) -> anyhow::Result<Self> {
        let socket = &config.gateway.control_socket;
        let (dir, stem) = split(socket)?;
        let dir = RuntimeDir::open(dir).with_context(|| {
            format!("runtime directory of {} (control_socket)", socket.display())
        })?;
        let lock = match dir.lock(&format!("{stem}.lock")) {
            Ok(lock) => lock,
            Err(LockError::Held { pid, .. }) => {
                let pid = pid.map_or_else(|| "unknown".to_owned(), |p| p.to_string());
                bail!(
                    "another v6gate, pid {pid}, owns {} (control_socket); this one changed \
                     nothing",
                    socket.display()
                );
            }
            Err(e) => return Err(e).context("locking this instance (control_socket)"),
        };
        // A socket may be replaced (a crashed run's); anything else there is not ours to
        // delete.
        if sys::runtime_dir::is_socket(socket)? == Some(false) {
            bail!(
                "{} exists and is not a socket; refusing to replace it (control_socket)",
                socket.display()
            );
        }
        let host = HostState::new(
            netlink,
            dir,
            format!("{stem}.journal"),
            socket.display().to_string(),
        );
        Ok(Self { lock, host })
    }
}

/// `/run/v6gate/v6gate.sock` -> (`/run/v6gate`, `v6gate`).
fn split(socket: &Path) -> anyhow::Result<(&Path, String)> {
    let dir = socket
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let Some(stem) = socket.file_stem().and_then(|s| s.to_str()) else {
        bail!("{} has no file name (control_socket)", socket.display());
    };
    Ok((dir, stem.to_owned()))
}

/// The name of the instance's kernel-path clamping table, from its control socket's stem.
pub(super) fn mss_table(config: &Config) -> String {
    let stem = split(&config.gateway.control_socket).map_or_else(|_| String::new(), |(_, s)| s);
    control::firewall::kernel_mss::table_name(&stem)
}

/// What this config could have installed, and so what a journal of this instance may name.
pub(super) fn accept(config: &Config) -> Accept {
    let gateway = &config.gateway;
    let mut route_tables = vec![gateway.pin_table, MAIN_TABLE];
    for t in &config.tunnels {
        route_tables.push(t.route_table);
    }
    for w in &config.watches {
        route_tables.push(w.route.table);
    }
    route_tables.extend(super::firewall::policy_tables(config));
    route_tables.sort_unstable();
    route_tables.dedup();
    let mut rules: Vec<sys::netlink::Rule> = [Family::V4, Family::V6]
        .into_iter()
        .map(|family| sys::netlink::Rule {
            family,
            priority: gateway.pin_rule_priority,
            table: gateway.pin_table,
            fwmark: Some(LOOKUP_MARK),
            fwmask: None,
            invert: true,
            suppress_prefixlen: None,
            from: None,
            to: None,
            iif: None,
        })
        .collect();
    rules.extend(super::firewall::policy_rules(config));
    let sysctl_keys = gateway_objects(config)
        .into_iter()
        .filter_map(|o| match o {
            Object::Sysctl { key, .. } => Some(key),
            _ => None,
        })
        .collect();
    Accept {
        sysctl_keys,
        route_tables,
        route_protocol: ROUTE_PROTOCOL,
        rules,
        keep_table: config.firewall.is_some(),
        mss_table: mss_table(config),
    }
}
