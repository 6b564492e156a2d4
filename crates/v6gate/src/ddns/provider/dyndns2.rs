//! The dyndns2 protocol: `GET BASE/nic/update?hostname=H&myip=ADDR` with HTTP basic auth.
//!
//! Its return codes, as the protocol's documentation defines them: `good` and `nochg` mean the
//! record holds the address (a repeated `nochg` is itself abuse, which the schedule never
//! sends); `badauth`, `!donator`, `notfqdn`, `nohost`, `numhost`, `abuse`, `!yours` and
//! `badagent` need a person before the client may try again; `dnserr` and `911` are the
//! provider's trouble, to be retried no sooner than 10 minutes later.

use std::net::IpAddr;
use std::time::Duration;

use control::ddns::schedule::Outcome;

use super::{Auth, Request, Response, encode, first_line, status_outcome};
use crate::ddns::secret::Secret;

/// The least wait after `911` or `dnserr`.
pub const SERVER_TROUBLE_WAIT: Duration = Duration::from_secs(600);

pub fn request(base: &str, hostname: &str, user: &str, password: Secret, addr: IpAddr) -> Request {
    let url = format!(
        "{}/nic/update?hostname={}&myip={}",
        base.trim_end_matches('/'),
        encode(hostname),
        encode(&addr.to_string())
    );
    let mut r = Request::get(url);
    r.auth = Auth::Basic {
        user: user.to_owned(),
        password,
    };
    r
}

pub fn outcome(response: &Response) -> Outcome {
    if let Some(outcome) = status_outcome(response, None) {
        return outcome;
    }
    let line = first_line(&response.body);
    let code = line.split_whitespace().next().unwrap_or("");
    match code {
        "good" | "nochg" => Outcome::Accepted,
        "badauth" | "!donator" | "notfqdn" | "nohost" | "numhost" | "abuse" | "!yours"
        | "badagent" => Outcome::Stop {
            reason: format!("the provider answered {code}"),
        },
        "dnserr" | "911" => Outcome::Retry {
            reason: format!("the provider answered {code}"),
            at_least: Some(SERVER_TROUBLE_WAIT),
        },
        _ => Outcome::Retry {
            reason: format!("unexpected answer: {line}"),
            at_least: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_request() {
        let r = request(
            "https://members.example/",
            "home.example.org",
            "me",
            Secret::new("pw"),
            "198.51.100.7".parse().unwrap(),
        );
        assert_eq!(
            r.url,
            "https://members.example/nic/update?hostname=home.example.org&myip=198.51.100.7"
        );
        assert!(matches!(r.auth, Auth::Basic { ref user, .. } if user == "me"));
        assert!(!format!("{r:?}").contains("pw"));
    }

    #[test]
    fn return_codes() {
        for ok in ["good 198.51.100.7", "nochg 198.51.100.7", "good"] {
            assert_eq!(outcome(&Response::new(200, ok)), Outcome::Accepted, "{ok}");
        }
        for stop in [
            "badauth", "nohost", "notfqdn", "!yours", "abuse", "numhost", "badagent",
        ] {
            assert!(
                matches!(outcome(&Response::new(200, stop)), Outcome::Stop { .. }),
                "{stop}"
            );
        }
        for later in ["911", "dnserr"] {
            assert_eq!(
                outcome(&Response::new(200, later)),
                Outcome::Retry {
                    reason: format!("the provider answered {later}"),
                    at_least: Some(SERVER_TROUBLE_WAIT)
                }
            );
        }
        assert!(matches!(
            outcome(&Response::new(401, "badauth")),
            Outcome::Stop { .. }
        ));
        assert!(matches!(
            outcome(&Response::new(200, "")),
            Outcome::Retry { .. }
        ));
    }
}
