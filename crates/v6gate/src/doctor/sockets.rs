//! Another IKE daemon on UDP 500 / 4500 (charon, pluto, racoon, a router's own IKE): v6gate
//! could not bind, or the two would answer each other's peers. And the running daemon, when
//! its control socket answers.

use std::fs;

use control::{Config, Mode};

use super::Check;
use crate::status::{self, Request, Response, TunnelState};

const IKE_PORTS: [u16; 2] = [500, 4500];

pub(super) fn checks(config: Option<&Config>) -> Vec<Check> {
    let mut out = Vec::new();
    let ipsec = config.is_some_and(|c| c.tunnels.iter().any(|t| t.mode == Mode::Ipsec));
    for port in IKE_PORTS {
        let name = format!("UDP {port}");
        let holders: Vec<(u32, String)> = udp_inodes(port)
            .into_iter()
            .filter_map(owner)
            .filter(|(_, comm)| comm != "v6gate")
            .collect();
        out.push(match holders.first() {
            None => Check::pass(name, "free, or held by v6gate"),
            Some((pid, comm)) => {
                let detail = format!(
                    "{comm} (pid {pid}) holds UDP {port}: v6gate cannot take IKE on it, or the \
                     two answer each other's peers"
                );
                let fix = format!("stop {comm} (`systemctl disable --now` its service)");
                if ipsec {
                    Check::fail(name, detail, fix)
                } else {
                    Check::warn(name, detail, fix)
                }
            }
        });
    }
    if let Some(config) = config {
        out.push(daemon(config));
    }
    out
}

/// Socket inodes bound to local UDP `port`, IPv4 and IPv6.
fn udp_inodes(port: u16) -> Vec<u64> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/udp", "/proc/net/udp6"] {
        let text = fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let bound = fields
                .get(1)
                .and_then(|local| local.rsplit_once(':'))
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            if bound == Some(port) {
                inodes.extend(fields.get(9).and_then(|i| i.parse::<u64>().ok()));
            }
        }
    }
    inodes
}

/// The process holding socket `inode`, with its command name.
fn owner(inode: u64) -> Option<(u32, String)> {
    let wanted = format!("socket:[{inode}]");
    for entry in fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        let holds = fds
            .flatten()
            .any(|fd| fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == wanted.as_str()));
        if holds {
            let comm = fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
            return Some((pid, comm.trim().to_owned()));
        }
    }
    None
}

fn daemon(config: &Config) -> Check {
    let name = "daemon";
    let socket = &config.gateway.control_socket;
    match status::query(socket, &Request::Status) {
        Ok(Response::Status(s)) => {
            let down: Vec<String> = s
                .tunnels
                .iter()
                .filter(|t| t.state != TunnelState::Up)
                .map(|t| format!("{} is {}", t.name, t.state))
                .collect();
            if down.is_empty() {
                Check::pass(name, format!("running (pid {}), every tunnel up", s.pid))
            } else {
                Check::warn(
                    name,
                    format!("running (pid {}), but {}", s.pid, down.join(", ")),
                    "`v6gate status` shows each path and the last error",
                )
            }
        }
        _ => Check::pass(
            name,
            format!(
                "not running (no answer on {}); host checks only",
                socket.display()
            ),
        ),
    }
}
