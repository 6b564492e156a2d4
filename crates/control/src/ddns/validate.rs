//! `[[ddns]]` tables: their shape as serde sees it, and their checks.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Value;

use super::{AddressSource, Ddns, Family, Provider, Select, Server};
use crate::duration::{format_duration, parse_duration};
use crate::model::Tunnel;
use crate::names::{EndpointCheck, host_name_problem};

/// `[[ddns]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct FileDdns {
    pub name: String,
    pub provider: String,
    pub hostname: String,
    pub credentials_file: String,
    pub address: FileAddress,
    pub server: Option<String>,
    pub zone: Option<String>,
    pub ca_file: Option<String>,
    pub min_interval: Option<Value>,
}

/// `address = { device, family, select }` or `{ tunnel, path }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct FileAddress {
    pub device: Option<String>,
    pub family: Option<String>,
    pub select: Option<String>,
    pub tunnel: Option<String>,
    pub path: Option<String>,
}

/// What checking `[[ddns]]` needs from the config checker besides endpoint checks.
pub(crate) trait DdnsCheck: EndpointCheck {
    fn warn(&mut self, key: &str, message: String);
    /// Whether `name` is a valid entry name, after reporting why not.
    fn entry_name(&mut self, key: &str, name: &str) -> bool;
    /// Directory relative file names are resolved against.
    fn config_dir(&self) -> Option<&Path>;
}

/// Longest `min_interval`: an hour keeps a moved address from staying stale for a day.
const MAX_MIN_INTERVAL: Duration = Duration::from_secs(3600);

/// Checks every `[[ddns]]` table; the valid ones come back in file order.
pub(crate) fn entries(
    check: &mut impl DdnsCheck,
    list: Vec<FileDdns>,
    tunnels: &[Tunnel],
) -> Vec<Ddns> {
    let mut out: Vec<(usize, Ddns)> = Vec::new();
    for (i, file) in list.into_iter().enumerate() {
        if let Some(entry) = entry(check, i, file, tunnels) {
            out.push((i, entry));
        }
    }
    for (n, (i, a)) in out.iter().enumerate() {
        for (j, b) in &out[..n] {
            if a.name == b.name {
                check.error(
                    &format!("ddns[{i}].name"),
                    format!("{:?} is already the name of ddns[{j}]", a.name),
                );
            }
            let same_family = a.family().is_some() && a.family() == b.family();
            if a.hostname == b.hostname && a.provider == b.provider && same_family {
                check.error(
                    &format!("ddns[{i}].hostname"),
                    format!(
                        "ddns[{j}] already publishes the {} record of {}; two entries would \
                         overwrite each other",
                        a.family().map_or("", Family::record_type),
                        a.hostname
                    ),
                );
            }
        }
    }
    out.into_iter().map(|(_, e)| e).collect()
}

fn entry(check: &mut impl DdnsCheck, i: usize, file: FileDdns, tunnels: &[Tunnel]) -> Option<Ddns> {
    let key = |field: &str| format!("ddns[{i}].{field}");
    let mut ok = check.entry_name(&key("name"), &file.name);

    let provider = Provider::ALL
        .into_iter()
        .find(|p| p.as_str() == file.provider);
    if provider.is_none() {
        let known: Vec<&str> = Provider::ALL.iter().map(|p| p.as_str()).collect();
        check.error(
            &key("provider"),
            format!(
                "expected one of {}, found {:?}",
                known.join(", "),
                file.provider
            ),
        );
    }

    let hostname = file.hostname.trim_end_matches('.').to_ascii_lowercase();
    if let Some(problem) = host_name_problem(&file.hostname) {
        check.error(&key("hostname"), format!("expected a host name: {problem}"));
        ok = false;
    } else if !hostname.contains('.') {
        check.error(
            &key("hostname"),
            format!("{hostname:?} has no domain; write the full name"),
        );
        ok = false;
    }

    let credentials_file = secret_file(check, &key("credentials_file"), &file.credentials_file);
    let address = address(check, &key("address"), &file.address, tunnels);
    let ca_file = match &file.ca_file {
        None => Some(None),
        Some(text) => readable_file(check, &key("ca_file"), text).map(Some),
    };
    let provider = provider?;
    let server = server(check, &key("server"), provider, file.server.as_deref());
    let zone = zone(
        check,
        &key("zone"),
        provider,
        file.zone.as_deref(),
        &hostname,
    );
    if provider == Provider::Rfc2136 && file.ca_file.is_some() {
        check.error(
            &key("ca_file"),
            "rfc2136 updates are signed with TSIG, not sent over TLS; drop `ca_file`".into(),
        );
        ok = false;
    }

    let min_interval = match &file.min_interval {
        None => Some(provider.default_min_interval()),
        Some(Value::String(text)) => match parse_duration(text) {
            Ok(d) if d > MAX_MIN_INTERVAL => {
                check.error(
                    &key("min_interval"),
                    format!(
                        "{text} is longer than {}; a moved address would stay unpublished too \
                         long",
                        format_duration(MAX_MIN_INTERVAL)
                    ),
                );
                None
            }
            Ok(d) => {
                if d < provider.rule() {
                    check.warn(
                        &key("min_interval"),
                        format!(
                            "{text} is shorter than the {} s {provider} asks for between \
                             updates; it may refuse or block this host",
                            provider.rule().as_secs()
                        ),
                    );
                }
                Some(d)
            }
            Err(why) => {
                check.error(
                    &key("min_interval"),
                    format!("expected a duration like \"60s\" or \"5m\", found {text:?}: {why}"),
                );
                None
            }
        },
        Some(other) => {
            check.error(
                &key("min_interval"),
                format!("expected a duration like \"60s\", found {other}"),
            );
            None
        }
    };

    if !ok {
        return None;
    }
    Some(Ddns {
        name: file.name,
        provider,
        hostname,
        credentials_file: credentials_file?,
        address: address?,
        server: server?,
        zone: zone?,
        ca_file: ca_file?,
        min_interval: min_interval?,
    })
}

fn address(
    check: &mut impl DdnsCheck,
    key: &str,
    file: &FileAddress,
    tunnels: &[Tunnel],
) -> Option<AddressSource> {
    match (&file.device, &file.tunnel, &file.path) {
        (Some(device), None, None) => {
            let device_ok = check.device_name(&format!("{key}.device"), device);
            let family = match file.family.as_deref() {
                Some("ipv4") => Some(Family::Ipv4),
                Some("ipv6") => Some(Family::Ipv6),
                Some(other) => {
                    check.error(
                        &format!("{key}.family"),
                        format!("expected \"ipv4\" or \"ipv6\", found {other:?}"),
                    );
                    None
                }
                None => {
                    check.error(
                        &format!("{key}.family"),
                        "missing field `family` (\"ipv4\" publishes A, \"ipv6\" AAAA)".into(),
                    );
                    None
                }
            };
            let select = match (file.select.as_deref(), family) {
                (None, _) => Some(Select::Stable),
                (Some(_), Some(Family::Ipv4)) => {
                    check.error(
                        &format!("{key}.select"),
                        "chooses among IPv6 addresses (stable or temporary); an IPv4 device \
                         publishes its global address"
                            .into(),
                    );
                    None
                }
                (Some(text), _) => {
                    let found = [Select::Stable, Select::Temporary, Select::Any]
                        .into_iter()
                        .find(|s| s.as_str() == text);
                    if found.is_none() {
                        check.error(
                            &format!("{key}.select"),
                            format!(
                                "expected \"stable\", \"temporary\" or \"any\", found {text:?}"
                            ),
                        );
                    }
                    found
                }
            };
            if !device_ok {
                return None;
            }
            Some(AddressSource::Device {
                device: device.clone(),
                family: family?,
                select: select?,
            })
        }
        (None, Some(tunnel), Some(path)) => {
            for field in ["family", "select"] {
                let given = if field == "family" {
                    file.family.is_some()
                } else {
                    file.select.is_some()
                };
                if given {
                    check.error(
                        &format!("{key}.{field}"),
                        "belongs to a device address; a path's address has the path's family"
                            .into(),
                    );
                }
            }
            let Some(t) = tunnels.iter().find(|t| &t.name == tunnel) else {
                check.error(
                    &format!("{key}.tunnel"),
                    format!("no [[tunnel]] is called {tunnel:?}"),
                );
                return None;
            };
            if t.path(path).is_none() {
                check.error(
                    &format!("{key}.path"),
                    format!("tunnel {tunnel:?} has no path called {path:?}"),
                );
                return None;
            }
            (file.family.is_none() && file.select.is_none()).then(|| AddressSource::Path {
                tunnel: tunnel.clone(),
                path: path.clone(),
            })
        }
        _ => {
            check.error(
                key,
                "expected { device = \"…\", family = \"ipv4\" | \"ipv6\" } or \
                 { tunnel = \"…\", path = \"…\" }"
                    .into(),
            );
            None
        }
    }
}

fn server(
    check: &mut impl DdnsCheck,
    key: &str,
    provider: Provider,
    text: Option<&str>,
) -> Option<Server> {
    match (provider, text) {
        (Provider::Rfc2136, None) => {
            check.error(
                key,
                "missing field `server` (the primary name server, like \"[2001:db8::53]:53\")"
                    .into(),
            );
            None
        }
        (Provider::Rfc2136, Some(text)) => match text.parse::<SocketAddr>() {
            Ok(addr) if addr.port() != 0 && !addr.ip().is_unspecified() => Some(Server::Dns(addr)),
            _ => {
                check.error(
                    key,
                    format!(
                        "expected an address and port like \"[2001:db8::53]:53\" or \
                         \"198.51.100.53:53\", found {text:?}"
                    ),
                );
                None
            }
        },
        (Provider::Dyndns2 | Provider::Url, None) => {
            check.error(
                key,
                format!(
                    "missing field `server` ({})",
                    if provider == Provider::Url {
                        "the whole URL, with {ip} where the address goes"
                    } else {
                        "the provider's https:// base URL; /nic/update is appended"
                    }
                ),
            );
            None
        }
        (_, text) => {
            let url = text.or(provider.default_server())?;
            if !url.starts_with("https://") || url.len() <= "https://".len() {
                check.error(
                    key,
                    format!(
                        "expected an https:// URL (the secret must not cross the network in \
                         clear), found {url:?}"
                    ),
                );
                return None;
            }
            if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
                check.error(key, "a URL holds no spaces or control characters".into());
                return None;
            }
            if provider == Provider::Url && !url.contains("{ip}") {
                check.error(
                    key,
                    "the template has no {ip}; the provider would never learn the address".into(),
                );
                return None;
            }
            Some(Server::Https(url.to_owned()))
        }
    }
}

fn zone(
    check: &mut impl DdnsCheck,
    key: &str,
    provider: Provider,
    text: Option<&str>,
    hostname: &str,
) -> Option<Option<String>> {
    let Some(text) = text else {
        return Some(None);
    };
    if !matches!(
        provider,
        Provider::Rfc2136 | Provider::Cloudflare | Provider::ValueDomain
    ) {
        check.error(
            key,
            format!("{provider} does not take a zone; rfc2136, cloudflare and value-domain do"),
        );
        return None;
    }
    let zone = text.trim_end_matches('.').to_ascii_lowercase();
    if let Some(problem) = host_name_problem(text) {
        check.error(key, format!("expected a domain name: {problem}"));
        return None;
    }
    if hostname != zone && !hostname.ends_with(&format!(".{zone}")) {
        check.error(
            key,
            format!("{hostname} is not inside zone {zone}; the server would refuse the update"),
        );
        return None;
    }
    Some(Some(zone))
}

fn resolve(check: &impl DdnsCheck, text: &str) -> PathBuf {
    let path = PathBuf::from(text);
    match check.config_dir() {
        Some(dir) if path.is_relative() => dir.join(path),
        _ => path,
    }
}

/// A regular file (not a link) that can be opened now.
fn readable_file(check: &mut impl DdnsCheck, key: &str, text: &str) -> Option<PathBuf> {
    let path = resolve(check, text);
    match std::fs::symlink_metadata(&path) {
        Ok(meta) if meta.file_type().is_symlink() => {
            check.error(
                key,
                format!(
                    "{} is a symbolic link; name the file itself, so nobody who can change \
                     the link can change what v6gate reads",
                    path.display()
                ),
            );
            None
        }
        Ok(meta) if !meta.is_file() => {
            check.error(key, format!("{} is not a regular file", path.display()));
            None
        }
        Ok(_) => Some(path),
        Err(e) => {
            check.error(key, format!("cannot read {}: {e}", path.display()));
            None
        }
    }
}

/// Like `psk_file`: a regular file; readable by others, or owned by someone other than root,
/// is a warning.
fn secret_file(check: &mut impl DdnsCheck, key: &str, text: &str) -> Option<PathBuf> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    let path = readable_file(check, key, text)?;
    let meta = std::fs::metadata(&path).ok()?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        check.warn(
            key,
            format!(
                "{} has mode {mode:04o}: others on this host can read the secret; chmod 600 it",
                path.display()
            ),
        );
    }
    if meta.uid() != 0 {
        check.warn(
            key,
            format!(
                "{} belongs to uid {}, not root: that user can change what v6gate sends; \
                 chown root it",
                path.display(),
                meta.uid()
            ),
        );
    }
    Some(path)
}
