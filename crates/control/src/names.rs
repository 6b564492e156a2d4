//! Path endpoints given by name: a host name as `remote`, a device as `local_device`.
//!
//! The validated [`Path`](crate::Path) keeps an address in `local` and `remote` either way; for
//! a name or a device it is the unspecified address of the path's family until the daemon
//! resolves the name (A for an IPv4 path, AAAA for an IPv6 one) or reads the device's address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// What endpoint checking needs from the config checker.
pub(crate) trait EndpointCheck {
    fn error(&mut self, key: &str, message: String);
    /// A unicast, non-link-local address, or `None` after reporting why not.
    fn endpoint(&mut self, key: &str, text: &str) -> Option<IpAddr>;
    /// Whether `name` can be a Linux interface name, after reporting why not.
    fn device_name(&mut self, key: &str, name: &str) -> bool;
}

/// The two ends of a path as validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ends {
    pub local: IpAddr,
    pub remote: IpAddr,
    pub remote_name: Option<String>,
    pub local_device: Option<String>,
}

/// The endpoint keys of one path as written.
pub(crate) struct Written<'a> {
    /// Key prefix: `tunnel[0]` for the single-path form, `tunnel[0].path[1]` for a path table.
    pub prefix: &'a str,
    pub local: Option<&'a str>,
    pub remote: Option<&'a str>,
    pub local_device: Option<&'a str>,
    pub family: Option<&'a str>,
    /// Added to "missing field" messages: how to write the missing key in this form.
    pub missing_hint: &'a str,
}

/// Longest DNS name in text form (RFC 1035 §2.3.4: 255 octets on the wire).
const MAX_NAME_LEN: usize = 253;
/// Longest DNS label (RFC 1035 §2.3.4).
const MAX_LABEL_LEN: usize = 63;

/// Why `text` cannot be a DNS host name (RFC 1123 §2.1 letters, digits and hyphens), if not.
pub(crate) fn host_name_problem(text: &str) -> Option<String> {
    let name = text.strip_suffix('.').unwrap_or(text);
    if name.is_empty() {
        return Some("is empty".into());
    }
    if name.len() > MAX_NAME_LEN {
        return Some(format!("is longer than {MAX_NAME_LEN} characters"));
    }
    if !name.bytes().any(|b| b.is_ascii_alphabetic()) {
        return Some(format!("{text:?} has no letter, so it is no host name"));
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Some(format!("{text:?} has an empty label"));
        }
        if label.len() > MAX_LABEL_LEN {
            return Some(format!(
                "{label:?} is longer than {MAX_LABEL_LEN} characters"
            ));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Some(format!(
                "{label:?} holds a character other than a letter, a digit or a hyphen"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Some(format!("{label:?} starts or ends with a hyphen"));
        }
    }
    None
}

fn looks_like_address(text: &str) -> bool {
    text.contains(':') || text.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

fn unspecified(ipv6: bool) -> IpAddr {
    if ipv6 {
        Ipv6Addr::UNSPECIFIED.into()
    } else {
        Ipv4Addr::UNSPECIFIED.into()
    }
}

/// Checks the endpoint keys of one path; reports every problem through `check`.
pub(crate) fn path_ends(check: &mut impl EndpointCheck, w: &Written<'_>) -> Option<Ends> {
    let key = |field: &str| format!("{}.{field}", w.prefix);
    let mut ok = true;

    let local = match (w.local, w.local_device) {
        (Some(_), Some(_)) => {
            check.error(
                &key("local_device"),
                "a path's source is either `local` (an address) or `local_device` (follow \
                 that device's address), not both"
                    .into(),
            );
            ok = false;
            None
        }
        (Some(text), None) => {
            let addr = check.endpoint(&key("local"), text);
            ok &= addr.is_some();
            addr
        }
        (None, Some(device)) => {
            ok &= check.device_name(&key("local_device"), device);
            None
        }
        (None, None) => {
            check.error(
                &key("local"),
                format!("missing field `local`{}", w.missing_hint),
            );
            ok = false;
            None
        }
    };

    let (remote, remote_name) = match w.remote {
        None => {
            check.error(
                &key("remote"),
                format!("missing field `remote`{}", w.missing_hint),
            );
            (None, None)
        }
        Some(text) if looks_like_address(text) => (check.endpoint(&key("remote"), text), None),
        Some(text) => match host_name_problem(text) {
            None => (None, Some(text.trim_end_matches('.').to_ascii_lowercase())),
            Some(problem) => {
                check.error(
                    &key("remote"),
                    format!("expected an address or a host name: {problem}"),
                );
                (None, None)
            }
        },
    };
    ok &= remote.is_some() || remote_name.is_some();

    let family = match w.family {
        None => None,
        Some("ipv6") => Some(true),
        Some("ipv4") => Some(false),
        Some(other) => {
            check.error(
                &key("family"),
                format!("expected \"ipv4\" or \"ipv6\", found {other:?}"),
            );
            return None;
        }
    };
    if !ok {
        return None;
    }

    let mut ipv6 = family;
    for (field, addr) in [("local", local), ("remote", remote)] {
        let Some(addr) = addr else { continue };
        match ipv6 {
            Some(v6) if v6 != addr.is_ipv6() => {
                let said = match (family, local) {
                    (Some(_), _) => format!("`family` makes the path {}", family_name(v6)),
                    (None, Some(local)) => format!("local {local} is {}", family_name(v6)),
                    (None, None) => format!("the path is {}", family_name(v6)),
                };
                check.error(
                    &key(field),
                    format!(
                        "{addr} is {}, but {said}; both ends of a path are of one family",
                        family_name(addr.is_ipv6()),
                    ),
                );
                return None;
            }
            _ => ipv6 = Some(addr.is_ipv6()),
        }
    }
    let Some(ipv6) = ipv6 else {
        check.error(
            &key("family"),
            "with a named `remote` and a `local_device` nothing says which family the path \
             runs over; write family = \"ipv4\" (A records) or \"ipv6\" (AAAA records)"
                .into(),
        );
        return None;
    };
    if let (Some(local), Some(remote)) = (local, remote)
        && local == remote
    {
        check.error(
            &key("remote"),
            format!("is the same address as `local` ({local})"),
        );
        return None;
    }
    Some(Ends {
        local: local.unwrap_or_else(|| unspecified(ipv6)),
        remote: remote.unwrap_or_else(|| unspecified(ipv6)),
        remote_name,
        local_device: w.local_device.map(str::to_owned),
    })
}

fn family_name(ipv6: bool) -> &'static str {
    if ipv6 { "IPv6" } else { "IPv4" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Errors(Vec<(String, String)>);

    impl EndpointCheck for Errors {
        fn error(&mut self, key: &str, message: String) {
            self.0.push((key.to_owned(), message));
        }
        fn endpoint(&mut self, key: &str, text: &str) -> Option<IpAddr> {
            let parsed = text.parse().ok();
            if parsed.is_none() {
                self.error(key, "bad".into());
            }
            parsed
        }
        fn device_name(&mut self, _key: &str, name: &str) -> bool {
            name.len() <= 15
        }
    }

    fn ends(
        local: Option<&str>,
        remote: &str,
        device: Option<&str>,
        family: Option<&str>,
    ) -> (Option<Ends>, Vec<(String, String)>) {
        let mut errors = Errors::default();
        let w = Written {
            prefix: "p",
            local,
            remote: Some(remote),
            local_device: device,
            family,
            missing_hint: "",
        };
        (path_ends(&mut errors, &w), errors.0)
    }

    #[test]
    fn a_named_remote_takes_the_family_of_local() {
        let (e, errors) = ends(Some("2001:db8::1"), "Peer.Example.JP.", None, None);
        assert!(errors.is_empty(), "{errors:?}");
        let e = e.unwrap();
        assert_eq!(e.remote, IpAddr::from(Ipv6Addr::UNSPECIFIED));
        assert_eq!(e.remote_name.as_deref(), Some("peer.example.jp"));
    }

    #[test]
    fn a_device_takes_the_family_of_remote() {
        let (e, errors) = ends(None, "198.51.100.7", Some("ppp0"), None);
        assert!(errors.is_empty(), "{errors:?}");
        let e = e.unwrap();
        assert_eq!(e.local, IpAddr::from(Ipv4Addr::UNSPECIFIED));
        assert_eq!(e.local_device.as_deref(), Some("ppp0"));
    }

    #[test]
    fn name_and_device_need_a_family() {
        let (e, errors) = ends(None, "home-v4.example.jp", Some("ppp0"), None);
        assert!(e.is_none());
        assert_eq!(errors[0].0, "p.family");
        let (e, _) = ends(None, "home-v4.example.jp", Some("ppp0"), Some("ipv4"));
        assert_eq!(e.unwrap().remote, IpAddr::from(Ipv4Addr::UNSPECIFIED));
    }

    #[test]
    fn family_must_agree_with_addresses() {
        let (e, errors) = ends(Some("2001:db8::1"), "x.example", None, Some("ipv4"));
        assert!(e.is_none());
        assert_eq!(errors[0].0, "p.local");
        assert!(errors[0].1.contains("`family` makes the path IPv4"));
    }

    #[test]
    fn local_and_local_device_exclude_each_other() {
        let (e, errors) = ends(Some("2001:db8::1"), "x.example", Some("eth0"), None);
        assert!(e.is_none());
        assert_eq!(errors[0].0, "p.local_device");
    }

    #[test]
    fn host_names_follow_rfc_1123() {
        assert_eq!(host_name_problem("home-v6.example.jp"), None);
        assert_eq!(host_name_problem("a.b."), None);
        assert!(host_name_problem("-a.example").is_some());
        assert!(host_name_problem("a..example").is_some());
        assert!(host_name_problem("a_b.example").is_some());
        assert!(host_name_problem(&format!("{}.jp", "a".repeat(64))).is_some());
        assert!(host_name_problem("1234").is_some());
    }

    #[test]
    fn malformed_names_are_errors_on_remote() {
        let (e, errors) = ends(Some("2001:db8::1"), "bad_name.example", None, None);
        assert!(e.is_none());
        assert_eq!(errors[0].0, "p.remote");
    }
}
