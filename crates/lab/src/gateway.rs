//! v6gate daemons running in lab namespaces: start, status, reload, stop.

use std::fs;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use crate::command::{checked, describe, run};
use crate::config::{GatewayConfig, TunnelConfig};
use crate::error::LabError;
use crate::lab::Lab;
use crate::process::Process;
use crate::topology::{Node, Site};

/// How long [`Lab::start_gateway`] waits for the control socket to answer.
pub const GATEWAY_START_TIMEOUT: Duration = Duration::from_secs(20);

/// How long [`Gateway::stop`] waits for a clean exit after SIGTERM.
pub const GATEWAY_STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Waits (bounded by [`GATEWAY_START_TIMEOUT`]) until a daemon started as `process` answers
/// `status` on `control_socket`; `log` says what it logged, for the error.
pub(crate) fn wait_for_daemon(
    process: &Process,
    binary: &Path,
    control_socket: &Path,
    place: &str,
    log: impl Fn() -> String,
) -> Result<(), LabError> {
    let deadline = Instant::now() + GATEWAY_START_TIMEOUT;
    loop {
        if let Ok(Some(status)) = process.exit_status() {
            return Err(LabError::Gateway {
                message: format!("gateway in {place} exited during start-up: {status}"),
                log: log(),
            });
        }
        let Err(last_error) = query_status(binary, control_socket) else {
            return Ok(());
        };
        if Instant::now() >= deadline {
            return Err(LabError::Gateway {
                message: format!(
                    "gateway in {place} did not answer on {} within {GATEWAY_START_TIMEOUT:?}: {last_error}",
                    control_socket.display()
                ),
                log: log(),
            });
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// A v6gate daemon running in a lab namespace.
pub struct Gateway {
    process: Process,
    binary: PathBuf,
    node: Node,
    config_path: PathBuf,
    control_socket: PathBuf,
}

impl Gateway {
    pub fn node(&self) -> Node {
        self.node
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    pub fn control_socket(&self) -> &Path {
        &self.control_socket
    }

    /// Everything the daemon logged so far.
    pub fn log(&self) -> String {
        let mut log = self.process.stderr();
        let out = self.process.stdout();
        if !out.trim().is_empty() {
            log.push_str("\n--- stdout ---\n");
            log.push_str(&out);
        }
        log
    }

    /// `v6gate status --json` through the control socket.
    pub fn status(&self) -> Result<serde_json::Value, LabError> {
        query_status(&self.binary, &self.control_socket).map_err(|message| LabError::Gateway {
            message,
            log: self.log(),
        })
    }

    /// The status object of the tunnel called `name`.
    pub fn tunnel_status(&self, name: &str) -> Result<serde_json::Value, LabError> {
        let status = self.status()?;
        status["tunnels"]
            .as_array()
            .and_then(|tunnels| tunnels.iter().find(|t| t["name"] == name).cloned())
            .ok_or_else(|| LabError::Gateway {
                message: format!("status has no tunnel {name:?}: {status}"),
                log: self.log(),
            })
    }

    /// Rewrites the config file (same path) for a later [`Gateway::reload`].
    pub fn rewrite_config(&self, config: &GatewayConfig) -> Result<(), LabError> {
        fs::write(&self.config_path, config.to_toml())
            .map_err(|e| LabError::io(format!("writing {}", self.config_path.display()), e))
    }

    /// SIGHUP: reload the config file.
    pub fn reload(&self) -> Result<(), LabError> {
        self.process
            .signal(libc::SIGHUP)
            .map_err(|e| LabError::io("cannot send SIGHUP", e))?;
        if let Ok(Some(status)) = self.process.exit_status() {
            return Err(LabError::Gateway {
                message: format!("gateway exited ({status}) on SIGHUP"),
                log: self.log(),
            });
        }
        Ok(())
    }

    /// SIGTERM and insist on a clean exit (code 0) within [`GATEWAY_STOP_TIMEOUT`].
    pub fn stop(self) -> Result<(), LabError> {
        self.process
            .signal(libc::SIGTERM)
            .map_err(|e| LabError::io("cannot send SIGTERM", e))?;
        let status = self
            .process
            .wait_timeout(GATEWAY_STOP_TIMEOUT)
            .map_err(|e| LabError::io("waiting for the gateway", e))?;
        match status {
            Some(status) if status.success() => Ok(()),
            Some(status) => Err(LabError::Gateway {
                message: format!(
                    "gateway in {} exited uncleanly after SIGTERM: {status}",
                    self.node
                ),
                log: self.log(),
            }),
            None => Err(LabError::Gateway {
                message: format!(
                    "gateway in {} still running {GATEWAY_STOP_TIMEOUT:?} after SIGTERM",
                    self.node
                ),
                log: self.log(),
            }),
        }
    }

    /// SIGKILL: leaves whatever it installed behind, like a crash.
    pub fn kill(self) -> Result<(), LabError> {
        self.process
            .kill()
            .map(drop)
            .map_err(|e| LabError::io("cannot kill the gateway", e))
    }
}

/// Runs `v6gate status --json --socket PATH` and parses the JSON; the error is a message.
pub fn query_status(binary: &Path, socket: &Path) -> Result<serde_json::Value, String> {
    let socket = socket.to_string_lossy();
    let args = ["status", "--json", "--socket", socket.as_ref()];
    let program = binary.to_string_lossy();
    let output = run(&program, &args).map_err(|e| e.to_string())?;
    let text = checked(describe(&program, &args), output).map_err(|e| e.to_string())?;
    serde_json::from_str(&text).map_err(|e| format!("status is not JSON ({e}): {text}"))
}

impl Lab {
    /// The lab's standard gateway config for `site`: one ipip6 tunnel "ab" to the other
    /// site, routing its IPv4 LAN, IPv4 forwarding on, control socket in the lab dir.
    pub fn site_config(&self, site: Site) -> GatewayConfig {
        GatewayConfig {
            control_socket: self.dir.join(format!("site-{}.sock", site.letter())),
            ipv4_forwarding: Some(true),
            ipv6_forwarding: None,
            extra: Vec::new(),
            tunnels: vec![TunnelConfig::between(site)],
        }
    }

    /// Writes `config` to a new file in the lab dir, starts `binary run --config FILE` in
    /// `node`, and waits (bounded) until its control socket answers `status`.
    pub fn start_gateway(
        &self,
        binary: &Path,
        node: Node,
        config: &GatewayConfig,
    ) -> Result<Gateway, LabError> {
        self.start_gateway_wrapped(binary, node, config, &[])
    }

    /// Like [`Lab::start_gateway`], with `v6gate run` started by `wrapper` (a command that
    /// execs its arguments, such as `setpriv` taking capabilities away), so the daemon's pid
    /// is still the process's.
    pub fn start_gateway_wrapped(
        &self,
        binary: &Path,
        node: Node,
        config: &GatewayConfig,
        wrapper: &[&str],
    ) -> Result<Gateway, LabError> {
        let config_path = self.dir.join(format!(
            "{}.toml",
            self.unique(&format!("{}-v6gate", node.tag()))
        ));
        fs::write(&config_path, config.to_toml())
            .map_err(|e| LabError::io(format!("writing {}", config_path.display()), e))?;
        self.start(binary, node, &config_path, &config.control_socket, wrapper)
    }

    /// Starts a gateway on an existing config file (a restart after a crash).
    pub fn start_gateway_with(
        &self,
        binary: &Path,
        node: Node,
        config_path: &Path,
        control_socket: &Path,
    ) -> Result<Gateway, LabError> {
        self.start(binary, node, config_path, control_socket, &[])
    }

    fn start(
        &self,
        binary: &Path,
        node: Node,
        config_path: &Path,
        control_socket: &Path,
        wrapper: &[&str],
    ) -> Result<Gateway, LabError> {
        let program = binary.to_string_lossy().into_owned();
        let config_arg = config_path.to_string_lossy().into_owned();
        let mut args = wrapper.to_vec();
        args.extend([program.as_str(), "run", "--config", &config_arg]);
        let process = self.spawn(node, "v6gate", &args)?;
        let gateway = Gateway {
            process,
            binary: binary.to_owned(),
            node,
            config_path: config_path.to_owned(),
            control_socket: control_socket.to_owned(),
        };
        wait_for_daemon(
            &gateway.process,
            binary,
            control_socket,
            &node.to_string(),
            || gateway.log(),
        )?;
        Ok(gateway)
    }
}
