//! The charon process in a lab namespace and the `swanctl` commands that drive it.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use super::check::StrongswanConfigError;
use super::config::StrongswanConfig;
use super::sas::{IkeSaSummary, parse_list_sas};
use crate::error::LabError;
use crate::lab::Lab;
use crate::process::{Process, TERMINATE_GRACE};
use crate::topology::Node;

/// Where Debian-like systems install the IKE daemon (it is not on PATH).
pub const CHARON_PATHS: [&str; 2] = ["/usr/lib/ipsec/charon", "/usr/libexec/ipsec/charon"];

/// Directories `swanctl --load-all` scans next to `swanctl.conf`; created empty so that it
/// does not complain about each missing one.
const SWANCTL_CREDENTIAL_DIRS: [&str; 13] = [
    "x509", "x509ca", "x509ocsp", "x509aa", "x509ac", "x509crl", "pubkey", "private", "rsa",
    "ecdsa", "bliss", "pkcs8", "pkcs12",
];

/// How long [`Charon::start`] waits for the vici socket to answer.
pub const CHARON_START_TIMEOUT: Duration = Duration::from_secs(15);

/// Bound on quick `swanctl` commands (list, load, stats).
pub const SWANCTL_TIMEOUT: Duration = Duration::from_secs(10);

/// How long `swanctl --initiate` / `--terminate` wait for the exchange to finish.
pub const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(20);

/// The charon binary, or an error naming the packages to install.
pub fn charon_path() -> Result<PathBuf, LabError> {
    CHARON_PATHS
        .iter()
        .map(PathBuf::from)
        .find(|path| path.is_file())
        .ok_or_else(|| {
            LabError::io(
                format!(
                    "strongSwan's charon is not installed (looked at {}; Debian: \
                     strongswan-charon strongswan-swanctl libcharon-extra-plugins \
                     libstrongswan-standard-plugins)",
                    CHARON_PATHS.join(", ")
                ),
                io::Error::from(io::ErrorKind::NotFound),
            )
        })
}

static INSTANCE_COUNTER: AtomicU32 = AtomicU32::new(0);

/// Output of a bounded command.
struct Finished {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Runs `command` with stdin closed, killing it (by its own pid) if it outlives `timeout`.
fn run_bounded(mut command: Command, what: &str, timeout: Duration) -> Result<Finished, LabError> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| LabError::io(format!("cannot run `{what}`"), e))?;
    // Readers on their own threads so that a chatty child never blocks on a full pipe.
    let collect = |pipe: Option<Box<dyn Read + Send>>| {
        thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let stdout = collect(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = collect(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => thread::sleep(Duration::from_millis(20)),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(LabError::io(format!("waiting for `{what}`"), e));
            }
        }
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    match status {
        Some(status) => Ok(Finished {
            status,
            stdout,
            stderr,
        }),
        None => Err(LabError::Timeout {
            what: format!("`{what}` (killed after {timeout:?})"),
            detail: format!("{stdout}{stderr}"),
        }),
    }
}

/// swanctl only takes `--uri` as an option of a command, so it goes right after it.
fn swanctl_args(args: &[&str], uri: &str) -> Vec<String> {
    let mut full = Vec::with_capacity(args.len() + 2);
    if let Some((command, rest)) = args.split_first() {
        full.push((*command).to_owned());
        full.push("--uri".to_owned());
        full.push(uri.to_owned());
        full.extend(rest.iter().map(|arg| (*arg).to_owned()));
    }
    full
}

/// strongSwan's IKE daemon running in a lab namespace. Dropping it stops charon (SIGTERM,
/// which deletes its SAs towards the peer, then SIGKILL after the lab's grace period).
pub struct Charon {
    process: Process,
    node: Node,
    dir: PathBuf,
    strongswan_conf: PathBuf,
    swanctl_conf: PathBuf,
    vici_socket: PathBuf,
}

impl Charon {
    /// Writes the instance's configs into a new directory under the lab dir, starts charon
    /// in `node` with a private `/run`, waits (bounded by [`CHARON_START_TIMEOUT`]) until
    /// vici answers, and loads the connections and secrets with `swanctl --load-all`.
    pub fn start(lab: &Lab, node: Node, config: &StrongswanConfig) -> Result<Self, LabError> {
        let charon = charon_path()?;
        let dir = lab.dir().join(format!(
            "strongswan-{}-{}",
            node.tag(),
            INSTANCE_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let run_dir = dir.join("run");
        let swanctl_dir = dir.join("swanctl");
        let vici_socket = dir.join("charon.vici");
        let strongswan_conf = dir.join("strongswan.conf");
        let swanctl_conf = swanctl_dir.join("swanctl.conf");
        let invalid = |e: StrongswanConfigError| {
            LabError::io(
                format!("strongSwan config for {node}"),
                io::Error::new(io::ErrorKind::InvalidInput, e),
            )
        };
        let daemon_text = config.strongswan_conf(&vici_socket).map_err(invalid)?;
        let swanctl_text = config.swanctl_conf().map_err(invalid)?;

        let make = |path: &Path| {
            fs::create_dir_all(path)
                .map_err(|e| LabError::io(format!("creating {}", path.display()), e))
        };
        make(&run_dir)?;
        for sub in SWANCTL_CREDENTIAL_DIRS {
            make(&swanctl_dir.join(sub))?;
        }
        let write = |path: &Path, text: &str| {
            fs::write(path, text)
                .map_err(|e| LabError::io(format!("writing {}", path.display()), e))
        };
        write(&strongswan_conf, &daemon_text)?;
        write(&swanctl_conf, &swanctl_text)?;

        // `ip netns exec` has already unshared the mount namespace, so the bind mount stays
        // private to this process; `exec` keeps the pid the lab tracks charon's own.
        let run_arg = run_dir.to_string_lossy().into_owned();
        let conf_arg = strongswan_conf.to_string_lossy().into_owned();
        let charon_arg = charon.to_string_lossy().into_owned();
        let process = lab.spawn(
            node,
            "charon",
            &[
                "sh",
                "-c",
                "mount --bind \"$1\" /run && STRONGSWAN_CONF=\"$2\" && export STRONGSWAN_CONF \
                 && exec \"$3\"",
                "charon-run",
                &run_arg,
                &conf_arg,
                &charon_arg,
            ],
        )?;
        let instance = Self {
            process,
            node,
            dir,
            strongswan_conf,
            swanctl_conf,
            vici_socket,
        };
        instance.wait_vici()?;
        instance.load_all()?;
        Ok(instance)
    }

    fn wait_vici(&self) -> Result<(), LabError> {
        let deadline = Instant::now() + CHARON_START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.process.exit_status() {
                return Err(self.failure(format!(
                    "charon in {} exited during start-up: {status}",
                    self.node
                )));
            }
            let last = if self.vici_socket.exists() {
                match self.swanctl(&["--stats"], SWANCTL_TIMEOUT) {
                    Ok(_) => return Ok(()),
                    Err(e) => e.to_string(),
                }
            } else {
                format!("{} does not exist yet", self.vici_socket.display())
            };
            if Instant::now() >= deadline {
                return Err(self.failure(format!(
                    "charon in {} did not answer on vici within {CHARON_START_TIMEOUT:?}: {last}",
                    self.node
                )));
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    fn failure(&self, message: String) -> LabError {
        LabError::Gateway {
            message,
            log: self.log(),
        }
    }

    /// Runs `swanctl COMMAND --uri <this instance> ARGS...` (the command is `args[0]`,
    /// e.g. `--list-conns`), bounded by `timeout`; returns stdout, or an error carrying the
    /// output and charon's log.
    pub fn swanctl(&self, args: &[&str], timeout: Duration) -> Result<String, LabError> {
        let full = swanctl_args(args, &self.vici_uri());
        let what = format!("swanctl {}", full.join(" "));
        let mut command = Command::new("swanctl");
        command
            .args(&full)
            .env("STRONGSWAN_CONF", &self.strongswan_conf);
        let finished = run_bounded(command, &what, timeout)?;
        if finished.status.success() {
            Ok(finished.stdout)
        } else {
            Err(LabError::Command {
                command: what,
                status: finished.status.code(),
                stderr: format!("{}{}", finished.stdout, finished.stderr),
            })
        }
    }

    /// `swanctl --load-all` from this instance's swanctl.conf (also unloads what the file
    /// no longer has).
    pub fn load_all(&self) -> Result<String, LabError> {
        let file = self.swanctl_conf.to_string_lossy().into_owned();
        self.swanctl(
            &["--load-all", "--noprompt", "--file", &file],
            SWANCTL_TIMEOUT,
        )
        .map_err(|e| self.failure(format!("loading {file} into charon: {e}")))
    }

    /// Rewrites swanctl.conf from `config` and loads it. Daemon-wide settings
    /// (retransmission, `charon_extra`) only change with a new instance.
    pub fn reload(&self, config: &StrongswanConfig) -> Result<String, LabError> {
        let text = config.swanctl_conf().map_err(|e| {
            LabError::io(
                format!("strongSwan config for {}", self.node),
                io::Error::new(io::ErrorKind::InvalidInput, e),
            )
        })?;
        fs::write(&self.swanctl_conf, text)
            .map_err(|e| LabError::io(format!("writing {}", self.swanctl_conf.display()), e))?;
        self.load_all()
    }

    /// Replaces swanctl.conf with `text` as written (e.g. by `v6gate export`) and loads it,
    /// so that a config from outside the lab's model is what charon runs.
    pub fn load_swanctl(&self, text: &str) -> Result<String, LabError> {
        fs::write(&self.swanctl_conf, text)
            .map_err(|e| LabError::io(format!("writing {}", self.swanctl_conf.display()), e))?;
        self.load_all()
    }

    /// Initiates CHILD_SA `child` (and its IKE_SA if needed) and waits for the outcome,
    /// bounded by [`EXCHANGE_TIMEOUT`]; returns swanctl's log of the exchange.
    pub fn initiate(&self, child: &str) -> Result<String, LabError> {
        let secs = EXCHANGE_TIMEOUT.as_secs().to_string();
        self.swanctl(
            &["--initiate", "--child", child, "--timeout", &secs],
            EXCHANGE_TIMEOUT + Duration::from_secs(5),
        )
        .map_err(|e| self.failure(format!("initiating {child} from {}: {e}", self.node)))
    }

    /// Deletes IKE_SA `ike` with all its children, waiting for the peer's answer.
    pub fn terminate(&self, ike: &str) -> Result<String, LabError> {
        let secs = EXCHANGE_TIMEOUT.as_secs().to_string();
        self.swanctl(
            &["--terminate", "--ike", ike, "--timeout", &secs],
            EXCHANGE_TIMEOUT + Duration::from_secs(5),
        )
        .map_err(|e| self.failure(format!("terminating {ike} in {}: {e}", self.node)))
    }

    /// `swanctl --list-sas`; [`parse_list_sas`] reads it.
    pub fn list_sas(&self) -> Result<String, LabError> {
        self.swanctl(&["--list-sas"], SWANCTL_TIMEOUT)
    }

    /// The current SAs, parsed.
    pub fn ike_sas(&self) -> Result<Vec<IkeSaSummary>, LabError> {
        Ok(parse_list_sas(&self.list_sas()?))
    }

    /// Polls `--list-sas` until CHILD_SA `child` is INSTALLED (for `start`/`trap`
    /// actions and peer-initiated SAs); returns the listing that showed it.
    pub fn wait_child_installed(&self, child: &str, timeout: Duration) -> Result<String, LabError> {
        let deadline = Instant::now() + timeout;
        loop {
            let listing = self.list_sas()?;
            let installed = parse_list_sas(&listing)
                .iter()
                .flat_map(|ike| &ike.children)
                .any(|sa| sa.name == child && sa.state == "INSTALLED");
            if installed {
                return Ok(listing);
            }
            if Instant::now() >= deadline {
                return Err(LabError::Timeout {
                    what: format!("CHILD_SA {child} in {} to be installed", self.node),
                    detail: format!("{listing}\n--- charon log ---\n{}", self.log()),
                });
            }
            thread::sleep(Duration::from_millis(200));
        }
    }

    /// Polls `--list-sas` until no IKE_SA called `ike` is left (DPD, deletes).
    pub fn wait_ike_gone(&self, ike: &str, timeout: Duration) -> Result<(), LabError> {
        let deadline = Instant::now() + timeout;
        loop {
            let listing = self.list_sas()?;
            if !parse_list_sas(&listing).iter().any(|sa| sa.name == ike) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(LabError::Timeout {
                    what: format!("IKE_SA {ike} in {} to go away", self.node),
                    detail: format!("{listing}\n--- charon log ---\n{}", self.log()),
                });
            }
            thread::sleep(Duration::from_millis(200));
        }
    }

    /// Everything charon logged so far (its stderr).
    pub fn log(&self) -> String {
        self.process.stderr()
    }

    pub fn node(&self) -> Node {
        self.node
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// The instance directory: configs, private `/run`, vici socket.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn vici_uri(&self) -> String {
        format!("unix://{}", self.vici_socket.display())
    }

    /// SIGTERM (charon deletes its SAs towards the peer) and insist on a clean exit.
    pub fn stop(self) -> Result<(), LabError> {
        let status = self
            .process
            .terminate(TERMINATE_GRACE)
            .map_err(|e| LabError::io("stopping charon", e))?;
        if status.success() {
            Ok(())
        } else {
            Err(self.failure(format!(
                "charon in {} exited uncleanly on SIGTERM: {status}",
                self.node
            )))
        }
    }

    /// SIGKILL: the peer sees silence, not DELETEs, as after a crash or a cut line.
    pub fn kill(self) -> Result<(), LabError> {
        self.process
            .kill()
            .map(drop)
            .map_err(|e| LabError::io("killing charon", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swanctl_takes_the_uri_after_its_command() {
        assert_eq!(
            swanctl_args(&["--initiate", "--child", "lan4"], "unix:///x"),
            ["--initiate", "--uri", "unix:///x", "--child", "lan4"]
        );
        assert!(swanctl_args(&[], "unix:///x").is_empty());
    }
}
