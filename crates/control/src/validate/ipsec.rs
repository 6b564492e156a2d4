//! The ipsec side of a tunnel: `[tunnel.ike]` and the keys `mode = "ipsec"` excludes.

use std::path::PathBuf;
use std::time::Duration;

use toml::Value;

use crate::file::{FileIke, FileTunnel};
use crate::ipsec::{Encap, IkeStart, IpsecConfig, Psk};
use crate::model::Mode;

use super::*;

/// Shortest DPD delay and timeout: below a second a busy peer looks dead.
const MIN_DPD: Duration = Duration::from_secs(1);
/// Shortest SA lifetime: the IKE core rekeys up to 10 minutes before the end (9 minutes margin
/// plus up to a minute of jitter), so a lifetime must leave time before that.
const MIN_LIFETIME: Duration = Duration::from_secs(15 * 60);
/// Longest SA lifetime: a day, as strongSwan and the routers of S3/S4 allow.
const MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);

impl Checker {
    /// The ipsec side of tunnel `i`: `[tunnel.ike]`, which belongs to `mode = "ipsec"` and only
    /// to it, and the keys that mode excludes. `Some(None)` for a valid non-ipsec tunnel.
    pub(super) fn ipsec(
        &mut self,
        i: usize,
        file: &FileTunnel,
        ike: Option<FileIke>,
        mode: Option<Mode>,
    ) -> Option<Option<IpsecConfig>> {
        let key = |field: &str| format!("tunnel[{i}].{field}");
        match (mode, ike) {
            (None, _) => None,
            (Some(Mode::Ipsec), None) => {
                self.error(
                    key("ike"),
                    "mode = \"ipsec\" needs a [tunnel.ike] table with at least psk_file",
                );
                None
            }
            (Some(mode), Some(_)) if mode != Mode::Ipsec => {
                self.error(
                    key("ike"),
                    format!("[tunnel.ike] belongs to mode = \"ipsec\", not \"{mode}\""),
                );
                None
            }
            (Some(_), None) => Some(None),
            (Some(_), Some(ike)) => {
                let before = self.diagnostics.len();
                self.ipsec_shape(i, file);
                let config = self.ike(&key("ike"), ike);
                (self.diagnostics.len() == before)
                    .then_some(config)
                    .flatten()
                    .map(Some)
            }
        }
    }

    /// Keys of the tunnel that an ipsec tunnel cannot have, and the ones it must.
    pub(super) fn ipsec_shape(&mut self, i: usize, file: &FileTunnel) {
        let key = |field: &str| format!("tunnel[{i}].{field}");
        for (j, path) in file.path.iter().flatten().enumerate() {
            if path.probe.as_deref() == Some("icmp") {
                self.error(
                    format!("tunnel[{i}].path[{j}].probe"),
                    "an ipsec path is probed with keepalives inside its own ESP SA (\"keepalive\", \
                     the default) or not at all (\"none\"); an ICMP echo would leave on the \
                     active path's SA, not this one's",
                );
            }
            let remote = path.remote.trim();
            if let Some(k) = file
                .path
                .iter()
                .flatten()
                .take(j)
                .position(|q| q.remote.trim() == remote)
            {
                self.error(
                    format!("tunnel[{i}].path[{j}].remote"),
                    format!(
                        "path[{k}] already has remote {remote}; each path of an ipsec tunnel runs \
                         its own IKE SA, and IKE and ESP are told apart by the peer's address"
                    ),
                );
            }
        }
        for (field, set, why) in [
            (
                "encap_limit",
                file.encap_limit.is_some(),
                "is an RFC 2473 option; ESP has no such header",
            ),
            (
                "tclass",
                file.tclass.is_some(),
                "is not configurable for ESP: the outer header keeps the inner DSCP, as RFC 4301 \
                 §5.1.2 has it",
            ),
        ] {
            if set {
                self.error(key(field), why);
            }
        }
        for (field, list) in [
            ("local_subnets", &file.local_subnets),
            ("routes", &file.routes),
        ] {
            if list.as_ref().is_none_or(Vec::is_empty) {
                self.error(
                    key(field),
                    format!(
                        "an ipsec tunnel needs `{field}`: {}",
                        if field == "routes" {
                            "the peer's subnets, its traffic selectors"
                        } else {
                            "our subnets, the local traffic selectors"
                        }
                    ),
                );
            }
        }
    }

    /// `[tunnel.ike]` at key `prefix`.
    pub(super) fn ike(&mut self, prefix: &str, file: FileIke) -> Option<IpsecConfig> {
        let before = self.diagnostics.len();
        let key = |field: &str| format!("{prefix}.{field}");
        let psk = match (&file.psk_file, &file.psk) {
            (Some(_), Some(_)) => {
                self.error(
                    key("psk"),
                    "give the key either in psk_file or in psk, not both",
                );
                None
            }
            (None, None) => {
                self.error(
                    key("psk_file"),
                    "missing field `psk_file`: the file holding the pre-shared key (mode 0600)",
                );
                None
            }
            (Some(path), None) => self.psk_file(&key("psk_file"), path),
            (None, Some(text)) if text.is_empty() => {
                self.error(key("psk"), "is empty");
                None
            }
            (None, Some(text)) => {
                self.warn(
                    key("psk"),
                    "the pre-shared key is written in the config, which gets copied, shared and \
                     backed up; put it in a file of mode 0600 and name it in psk_file",
                );
                Some(Psk::Inline(text.clone()))
            }
        };
        let mut identity = |field: &str, value: &Option<String>| match value {
            None => Some(None),
            Some(text) => match ike::Identity::parse(text) {
                Ok(id) => Some(Some(id)),
                Err(e) => {
                    self.error(key(field), e.to_string());
                    None
                }
            },
        };
        let local_id = identity("local_id", &file.local_id);
        let remote_id = identity("remote_id", &file.remote_id);
        let remote_psks = self.remote_psks(&key("remote_psk"), file.remote_psk.as_deref());

        let proposals = self.proposals(
            &key("proposals"),
            file.proposals.as_deref(),
            ike::proposal::IkeProposal::parse,
            ike::proposal::IkeProposal::default_modern,
            |p| p.legacy,
            |_| None,
        );
        let esp_proposals = self.proposals(
            &key("esp_proposals"),
            file.esp_proposals.as_deref(),
            ike::proposal::EspProposal::parse,
            ike::proposal::EspProposal::default_modern,
            |p| p.legacy,
            esp_unsupported,
        );

        let word = |this: &mut Self, field: &str, value: &Option<String>, words: &[&str]| {
            let text = value.as_deref()?;
            let found = words.iter().position(|w| *w == text);
            if found.is_none() {
                let list: Vec<String> = words.iter().map(|w| format!("{w:?}")).collect();
                this.error(
                    key(field),
                    format!("expected one of {}, found {text:?}", list.join(", ")),
                );
            }
            Some(found)
        };
        let start = match word(self, "start", &file.start, &["auto", "respond"]) {
            None => Some(IkeStart::Auto),
            Some(found) => found.map(|n| [IkeStart::Auto, IkeStart::Respond][n]),
        };
        let encap = match word(self, "encap", &file.encap, &["auto", "udp"]) {
            None => Some(Encap::Auto),
            Some(found) => found.map(|n| [Encap::Auto, Encap::Udp][n]),
        };
        let dpd_action = match word(self, "dpd_action", &file.dpd_action, &["restart", "clear"]) {
            None => Some(ike::DpdAction::Restart),
            Some(found) => found.map(|n| [ike::DpdAction::Restart, ike::DpdAction::Clear][n]),
        };

        // The IKE core's own defaults, which are strongSwan's.
        let defaults = ike::Config::new(b"", Vec::new(), Vec::new());
        let default_dpd = defaults.dpd.expect("the IKE core enables DPD by default");
        let mut duration = |field: &str, value: &Option<Value>, lo, hi, default| match value {
            None => Some(default),
            Some(v) => self.duration(&key(field), v, lo, hi),
        };
        let dpd_delay = duration(
            "dpd_delay",
            &file.dpd_delay,
            MIN_DPD,
            MAX_TIMER,
            default_dpd.delay,
        );
        let dpd_timeout = duration(
            "dpd_timeout",
            &file.dpd_timeout,
            MIN_DPD,
            MAX_TIMER,
            default_dpd.timeout,
        );
        let ike_lifetime = duration(
            "ike_lifetime",
            &file.ike_lifetime,
            MIN_LIFETIME,
            MAX_LIFETIME,
            defaults.ike_lifetime,
        );
        let child_lifetime = duration(
            "child_lifetime",
            &file.child_lifetime,
            MIN_LIFETIME,
            MAX_LIFETIME,
            defaults.child_lifetime,
        );

        if self.diagnostics.len() != before {
            return None;
        }
        let (proposals, ike_legacy) = proposals?;
        let (esp_proposals, esp_legacy) = esp_proposals?;
        let mut config = IpsecConfig {
            psk: psk?,
            local_id: local_id?,
            remote_id: remote_id?,
            remote_psks: remote_psks?,
            proposals,
            esp_proposals,
            legacy: ike_legacy || esp_legacy,
            start: start?,
            encap: encap?,
            dpd_delay: dpd_delay?,
            dpd_timeout: dpd_timeout?,
            dpd_action: dpd_action?,
            ike_lifetime: ike_lifetime?,
            child_lifetime: child_lifetime?,
            version: crate::IkeVersion::V2,
        };
        let given = (file.proposals.is_some(), file.esp_proposals.is_some());
        for f in crate::ike_version::apply(prefix, file.version, given.0, given.1, &mut config) {
            self.error(f.key, f.message);
        }
        if config.version == crate::IkeVersion::V1 {
            for (j, (id, _)) in config.remote_psks.iter().enumerate() {
                if !matches!(id, ike::Identity::Addr(_)) {
                    self.error(
                        format!("{prefix}.remote_psk[{j}].remote_id"),
                        "IKEv1 main mode needs the key before the peer sends its ID, so only the \
                         peer's address can pick a key of its own; use an address here, or \
                         version = 2",
                    );
                }
            }
        }
        (self.diagnostics.len() == before).then_some(config)
    }

    /// `[[tunnel.ike.remote_psk]]` at `key`: an identity and a key file per entry, each
    /// identity once.
    fn remote_psks(
        &mut self,
        key: &str,
        list: Option<&[crate::file::FileRemotePsk]>,
    ) -> Option<Vec<(ike::Identity, Psk)>> {
        let before = self.diagnostics.len();
        let mut out: Vec<(ike::Identity, Psk)> = Vec::new();
        for (j, entry) in list.unwrap_or_default().iter().enumerate() {
            let at = |field: &str| format!("{key}[{j}].{field}");
            let id = match ike::Identity::parse(&entry.remote_id) {
                Ok(id) => Some(id),
                Err(e) => {
                    self.error(at("remote_id"), e.to_string());
                    None
                }
            };
            let psk = self.psk_file(&at("psk_file"), &entry.psk_file);
            if let Some(id) = &id
                && let Some(k) = out.iter().position(|(other, _)| other == id)
            {
                self.error(
                    at("remote_id"),
                    format!(
                        "remote_psk[{k}] already holds the key of {}",
                        entry.remote_id
                    ),
                );
            }
            if let (Some(id), Some(psk)) = (id, psk) {
                out.push((id, psk));
            }
        }
        (self.diagnostics.len() == before).then_some(out)
    }

    /// A list of proposals in strongSwan's syntax, each parsed by the IKE core; a legacy one is
    /// accepted with a warning. Returns the proposals and whether any is legacy.
    pub(super) fn proposals<P, E: std::fmt::Display>(
        &mut self,
        key: &str,
        list: Option<&[String]>,
        parse: impl Fn(&str) -> Result<P, E>,
        default: impl Fn() -> P,
        legacy: impl Fn(&P) -> bool,
        unsupported: impl Fn(&P) -> Option<String>,
    ) -> Option<(Vec<P>, bool)> {
        let Some(list) = list else {
            return Some((vec![default()], false));
        };
        if list.is_empty() {
            self.error(
                key,
                "must list at least one proposal (or be left out for the default)",
            );
            return None;
        }
        let before = self.diagnostics.len();
        let mut out = Vec::with_capacity(list.len());
        let mut any_legacy = false;
        for (j, text) in list.iter().enumerate() {
            let key = format!("{key}[{j}]");
            match parse(text) {
                Ok(p) => {
                    if let Some(why) = unsupported(&p) {
                        self.error(&key, why);
                    } else if legacy(&p) {
                        any_legacy = true;
                        self.warn(
                            &key,
                            format!(
                                "{text:?} allows 3DES, SHA-1 or MODP-1024, kept only for old \
                                 peers; prefer aes128gcm16 with prfsha256 and ecp256 or \
                                 modp2048"
                            ),
                        );
                    }
                    out.push(p);
                }
                Err(e) => self.error(key, e.to_string()),
            }
        }
        (self.diagnostics.len() == before).then_some((out, any_legacy))
    }

    /// `psk_file`: must be a readable regular file; one that others can read is a warning.
    pub(super) fn psk_file(&mut self, key: &str, text: &str) -> Option<Psk> {
        use std::os::unix::fs::PermissionsExt;

        let mut path = PathBuf::from(text);
        if path.is_relative()
            && let Some(dir) = &self.config_dir
        {
            path = dir.join(path);
        }
        match std::fs::metadata(&path) {
            Ok(meta) if !meta.is_file() => {
                self.error(key, format!("{} is not a regular file", path.display()));
                None
            }
            Ok(meta) => {
                let mode = meta.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    self.warn(
                        key,
                        format!(
                            "{} has mode {mode:04o}: others on this host can read the key; \
                             chmod 600 it",
                            path.display()
                        ),
                    );
                }
                Some(Psk::File(path))
            }
            Err(e) => {
                self.error(key, format!("cannot read {}: {e}", path.display()));
                None
            }
        }
    }
}

/// Why the ESP dataplane cannot run a proposal, if it cannot: it implements AES-GCM-16 and
/// AES-CBC with HMAC-SHA1-96 or HMAC-SHA2-256-128.
pub(super) fn esp_unsupported(p: &ike::proposal::EspProposal) -> Option<String> {
    use ike::crypto::Integ;
    p.integ
        .iter()
        .find(|i| !matches!(i, Integ::HmacSha1_96 | Integ::HmacSha256_128))
        .map(|i| {
            format!(
                "{i:?} is not implemented for ESP; use sha256 or sha1 with a CBC cipher, or \
                 aes128gcm16"
            )
        })
}
