//! Value Domain's `dyn.fcg`: `GET …/dyn.fcg?d=DOMAIN&p=PASSWORD&h=HOST&i=ADDRESS`.
//!
//! Success is `status=0` in the body; any other status is a refusal (wrong password, unknown
//! domain or host), which retrying cannot fix. The endpoint answers 503 to a second call
//! within 60 s, so a 503 waits at least that long.

use std::net::IpAddr;
use std::time::Duration;

use control::ddns::schedule::Outcome;

use super::{Request, Response, encode, first_line, status_outcome};
use crate::ddns::secret::Secret;

/// Value Domain's own spacing rule.
pub const LEAST_WAIT: Duration = Duration::from_secs(60);

/// `d` and `h` of a hostname: the zone (configured, else the hostname's parent) and the part
/// before it (empty at the zone's apex).
pub fn domain_and_host<'a>(hostname: &'a str, zone: Option<&'a str>) -> (&'a str, &'a str) {
    let domain = zone.unwrap_or_else(|| hostname.split_once('.').map_or(hostname, |(_, d)| d));
    let host = hostname
        .strip_suffix(domain)
        .and_then(|h| h.strip_suffix('.'))
        .unwrap_or("");
    (domain, host)
}

pub fn request(
    server: &str,
    hostname: &str,
    zone: Option<&str>,
    password: &Secret,
    addr: IpAddr,
) -> Request {
    let (domain, host) = domain_and_host(hostname, zone);
    let password = encode(password.expose());
    let url = format!(
        "{server}?d={}&p={password}&h={}&i={}",
        encode(domain),
        encode(host),
        encode(&addr.to_string())
    );
    Request::get(url).with_url_secret(password)
}

pub fn outcome(response: &Response) -> Outcome {
    if let Some(outcome) = status_outcome(response, Some(LEAST_WAIT)) {
        return outcome;
    }
    let status = response
        .body
        .lines()
        .find_map(|l| l.trim().strip_prefix("status="))
        .map(str::trim);
    match status {
        Some("0") => Outcome::Accepted,
        Some(code) => Outcome::Stop {
            reason: format!(
                "Value Domain answered status={code}: {}",
                detail(&response.body)
            ),
        },
        None => Outcome::Retry {
            reason: format!("unexpected answer: {}", first_line(&response.body)),
            at_least: Some(LEAST_WAIT),
        },
    }
}

/// The line after the status, where Value Domain says why.
fn detail(body: &str) -> String {
    body.lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with("status="))
        .map(|l| l.chars().take(120).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVER: &str = "https://dyn.value-domain.com/cgi-bin/dyn.fcg";

    #[test]
    fn the_documented_query() {
        // The field write-up's form: dyn.fcg?d=DOMAIN&p=PASSWORD&h=HOST&i=ADDR.
        let r = request(
            SERVER,
            "www.example.jp",
            None,
            &Secret::new("pass"),
            "203.0.113.5".parse().unwrap(),
        );
        assert_eq!(
            r.url,
            "https://dyn.value-domain.com/cgi-bin/dyn.fcg?d=example.jp&p=pass&h=www&i=203.0.113.5"
        );
        assert!(!format!("{r:?}").contains("p=pass"));
    }

    #[test]
    fn zones_split_the_name() {
        assert_eq!(
            domain_and_host("www.example.jp", None),
            ("example.jp", "www")
        );
        assert_eq!(
            domain_and_host("a.b.example.co.jp", Some("example.co.jp")),
            ("example.co.jp", "a.b")
        );
        assert_eq!(
            domain_and_host("example.jp", Some("example.jp")),
            ("example.jp", "")
        );
        let r = request(
            SERVER,
            "home.example.jp",
            None,
            &Secret::new("p&w"),
            "2001:db8::1".parse().unwrap(),
        );
        assert!(
            r.url.ends_with("&p=p%26w&h=home&i=2001%3Adb8%3A%3A1"),
            "{}",
            r.url
        );
    }

    #[test]
    fn answers() {
        assert_eq!(
            outcome(&Response::new(200, "status=0\nOK\n")),
            Outcome::Accepted
        );
        assert!(matches!(
            outcome(&Response::new(200, "status=1\nERROR: password\n")),
            Outcome::Stop { reason } if reason.contains("status=1") && reason.contains("password")
        ));
        assert_eq!(
            outcome(&Response::new(503, "")),
            Outcome::Retry {
                reason: "HTTP 503".into(),
                at_least: Some(LEAST_WAIT)
            }
        );
        assert!(matches!(
            outcome(&Response::new(200, "<html>")),
            Outcome::Retry { .. }
        ));
    }
}
