//! Names and the files and prefixes other sections lean on: peer and AFTR names resolve, a
//! MAP-E CE has its delegated prefix, DDNS credentials are root's alone.

use std::fs;
use std::net::{IpAddr, ToSocketAddrs};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use control::Config;
use control::softwire::{Aftr, SoftwireKind};

use super::Check;

pub(super) fn checks(config: Option<&Config>) -> Vec<Check> {
    let Some(config) = config else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for t in config.enabled_tunnels() {
        for p in &t.paths {
            if let Some(name) = &p.remote_name {
                let label = format!("peer name: {}/{}", t.name, p.name);
                out.push(resolves(&label, name, Some(p.local.is_ipv6())));
            }
        }
    }
    for s in &config.softwires {
        match &s.kind {
            SoftwireKind::DsLite(d) => {
                if let Aftr::Name(name) = &d.aftr {
                    out.push(resolves(
                        &format!("AFTR name: {}", s.name),
                        name,
                        Some(true),
                    ));
                }
            }
            SoftwireKind::MapE(m) => out.push(delegated_prefix(
                &format!("MAP-E prefix: {}", s.name),
                &m.device_prefix,
                &global_ipv6_on(&m.device_prefix),
            )),
        }
    }
    for d in &config.ddns {
        out.push(secret(
            &format!("DDNS credentials: {}", d.name),
            &d.credentials_file,
        ));
    }
    out
}

/// `name` through the host's resolver (getaddrinfo), in the family the path needs.
fn resolves(label: &str, name: &str, ipv6: Option<bool>) -> Check {
    let found: Vec<IpAddr> = match (name, 0).to_socket_addrs() {
        Ok(addrs) => addrs
            .map(|a| a.ip())
            .filter(|a| ipv6.is_none_or(|v6| a.is_ipv6() == v6))
            .collect(),
        Err(e) => {
            return Check::fail(
                label,
                format!("{name} does not resolve ({e}): the tunnel has no address to send to"),
                "check the name and /etc/resolv.conf (`getent ahosts NAME`), or write the \
                 address",
            );
        }
    };
    let family = match ipv6 {
        Some(true) => "IPv6 ",
        Some(false) => "IPv4 ",
        None => "",
    };
    if found.is_empty() {
        return Check::fail(
            label,
            format!("{name} resolves, but to no {family}address"),
            "publish the record the path's family needs (AAAA for IPv6, A for IPv4)",
        );
    }
    let list: Vec<String> = found.iter().map(ToString::to_string).collect();
    Check::pass(label, format!("{name} is {}", list.join(", ")))
}

/// The global IPv6 addresses on `device`, from /proc/net/if_inet6.
fn global_ipv6_on(device: &str) -> Vec<String> {
    let text = fs::read_to_string("/proc/net/if_inet6").unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (hex, dev) = (f.first()?, f.get(5)?);
            let addr = std::net::Ipv6Addr::from(u128::from_str_radix(hex, 16).ok()?);
            (*dev == device && addr.segments()[0] & 0xe000 == 0x2000).then(|| addr.to_string())
        })
        .collect()
}

fn delegated_prefix(label: &str, device: &str, addresses: &[String]) -> Check {
    if addresses.is_empty() {
        Check::fail(
            label,
            format!(
                "no global IPv6 address on {device}: the MAP rule has no prefix to derive the \
                 IPv4 address and ports from"
            ),
            format!(
                "check that {device} is the LAN side of the delegated prefix (DHCPv6-PD) or \
                 the IPoE uplink, and that it has its address: `ip -6 addr show dev {device}`"
            ),
        )
    } else {
        Check::pass(label, format!("{device} has {}", addresses.join(", ")))
    }
}

/// A secret file v6gate reads as root: root's, and nobody else's to read or change.
fn secret(label: &str, path: &Path) -> Check {
    let shown = path.display();
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) => {
            return Check::fail(
                label,
                format!("{shown}: {e}"),
                "create it with the provider's user:password, owned by root, mode 0600",
            );
        }
    };
    let mode = meta.permissions().mode() & 0o777;
    let mut problems = Vec::new();
    if !meta.is_file() {
        problems.push("is not a plain file".to_owned());
    }
    if meta.uid() != 0 {
        problems.push(format!(
            "belongs to uid {}, who can change what v6gate sends",
            meta.uid()
        ));
    }
    if mode & 0o077 != 0 {
        problems.push(format!("has mode {mode:04o}: others can read the password"));
    }
    if problems.is_empty() {
        Check::pass(label, format!("{shown}: root's, mode {mode:04o}"))
    } else {
        Check::fail(
            label,
            format!("{shown} {}", problems.join("; ")),
            format!("chown root:root {shown} && chmod 600 {shown}"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::Outcome;

    #[test]
    fn a_secret_others_can_read_or_change_fails() {
        let dir = std::env::temp_dir().join(format!("v6gate-doctor-secret-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let file = dir.join("ddns.secret");
        fs::write(&file, "user:pass\n").unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
        // The tests run as root (the end-to-end ones need it), so the file is root's.
        let root = sys::runtime_dir::effective_uid() == 0;
        let c = secret("DDNS credentials: x", &file);
        assert_eq!(
            c.result,
            if root { Outcome::Pass } else { Outcome::Fail },
            "{c:?}"
        );
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
        let c = secret("DDNS credentials: x", &file);
        assert_eq!(c.result, Outcome::Fail);
        assert!(c.detail.contains("mode 0644"), "{c:?}");
        assert!(c.fix.contains("chmod 600"), "{c:?}");
        if root {
            fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
            std::os::unix::fs::chown(&file, Some(65534), None).unwrap();
            let c = secret("DDNS credentials: x", &file);
            assert_eq!(c.result, Outcome::Fail);
            assert!(c.detail.contains("uid 65534"), "{c:?}");
        }
        let c = secret("DDNS credentials: x", &dir.join("absent"));
        assert_eq!(c.result, Outcome::Fail);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn names_resolve_or_say_why_not() {
        // /etc/hosts answers localhost; .invalid never resolves (RFC 6761).
        let c = resolves("peer name: t/p", "localhost", None);
        assert_eq!(c.result, Outcome::Pass, "{c:?}");
        let c = resolves("peer name: t/p", "peer.invalid", Some(true));
        assert_eq!(c.result, Outcome::Fail, "{c:?}");
        assert!(!c.fix.is_empty());
    }

    #[test]
    fn a_map_e_device_without_its_prefix_fails() {
        let c = delegated_prefix("MAP-E prefix: v6plus", "lan0", &[]);
        assert_eq!(c.result, Outcome::Fail);
        assert!(c.detail.contains("lan0"), "{c:?}");
        let c = delegated_prefix("MAP-E prefix: v6plus", "lan0", &["2001:db8:1:2::1".into()]);
        assert_eq!(c.result, Outcome::Pass);
        // The loopback never has a global address.
        assert!(global_ipv6_on("lo").is_empty());
    }
}
