//! The `url` provider: one HTTPS GET built from a template, for the long tail of services
//! (MyDNS.jp `directip.html?MID=…&PWD={token}&IPV4ADDR={ip}`, DuckDNS
//! `update?domains=…&token={token}&ip={ip}`, NetMeister).
//!
//! `{ip}`, `{hostname}` and `{token}` are replaced, percent-encoded. Any 2xx is success unless
//! the body starts with `KO` (DuckDNS), `badauth` or `ERROR`, which stop the entry.

use std::net::IpAddr;

use control::ddns::schedule::Outcome;

use super::{Request, Response, encode, first_line, status_outcome};
use crate::ddns::secret::Secret;

pub fn request(template: &str, hostname: &str, token: &Secret, addr: IpAddr) -> Request {
    let token = encode(token.expose());
    let url = template
        .replace("{ip}", &encode(&addr.to_string()))
        .replace("{hostname}", &encode(hostname))
        .replace("{token}", &token);
    Request::get(url).with_url_secret(token)
}

pub fn outcome(response: &Response) -> Outcome {
    if let Some(outcome) = status_outcome(response, None) {
        return outcome;
    }
    let line = first_line(&response.body);
    let lower = line.to_ascii_lowercase();
    if lower.starts_with("ko") || lower.starts_with("badauth") || lower.starts_with("error") {
        return Outcome::Stop {
            reason: format!("the provider answered {line}"),
        };
    }
    Outcome::Accepted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duckdns_shape() {
        let r = request(
            "https://www.duckdns.org/update?domains=myhome&token={token}&ipv6={ip}",
            "myhome.duckdns.org",
            &Secret::new("a7c4d0ad-114e-40ef-ba1d-d217904a50f2"),
            "2001:db8::7".parse().unwrap(),
        );
        assert_eq!(
            r.url,
            "https://www.duckdns.org/update?domains=myhome&token=a7c4d0ad-114e-40ef-ba1d-d217904a50f2&ipv6=2001%3Adb8%3A%3A7"
        );
        assert!(!format!("{r:?}").contains("a7c4d0ad"));
        assert_eq!(outcome(&Response::new(200, "OK")), Outcome::Accepted);
        assert!(matches!(
            outcome(&Response::new(200, "KO")),
            Outcome::Stop { .. }
        ));
    }
}
