//! Cloudflare API v4 with a bearer token: the zone and the record are looked up once
//! (`GET /zones?name=`, `GET /zones/{zone}/dns_records?type=&name=`), then each update is one
//! `PATCH /zones/{zone}/dns_records/{record}` with `{"content": ADDRESS}`.

use std::net::IpAddr;

use control::ddns::Family;
use control::ddns::schedule::Outcome;
use serde::Deserialize;

use super::{Auth, Method, Request, Response, encode, first_line, status_outcome};
use crate::ddns::secret::Secret;

/// One entry's conversation with the API; keeps the ids it learned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    api: String,
    zone: String,
    hostname: String,
    family: Family,
    zone_id: Option<String>,
    record_id: Option<String>,
}

#[derive(Deserialize)]
struct Envelope {
    success: bool,
    #[serde(default)]
    errors: Vec<ApiError>,
    #[serde(default)]
    result: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct ApiError {
    #[serde(default)]
    code: i64,
    #[serde(default)]
    message: String,
}

/// Most requests one update takes: zone, record, patch.
pub const MAX_STEPS: usize = 3;

impl Session {
    /// `zone` defaults to the hostname's parent.
    pub fn new(api: &str, zone: Option<&str>, hostname: &str, family: Family) -> Self {
        let zone = zone.map(str::to_owned).unwrap_or_else(|| {
            hostname
                .split_once('.')
                .map_or(hostname, |(_, z)| z)
                .to_owned()
        });
        Self {
            api: api.trim_end_matches('/').to_owned(),
            zone,
            hostname: hostname.to_owned(),
            family,
            zone_id: None,
            record_id: None,
        }
    }

    /// The next request towards publishing `addr`.
    pub fn request(&self, token: &Secret, addr: IpAddr) -> Request {
        let mut r = match (&self.zone_id, &self.record_id) {
            (None, _) => Request::get(format!("{}/zones?name={}", self.api, encode(&self.zone))),
            (Some(zone), None) => Request::get(format!(
                "{}/zones/{zone}/dns_records?type={}&name={}",
                self.api,
                self.family.record_type(),
                encode(&self.hostname)
            )),
            (Some(zone), Some(record)) => {
                let mut r = Request::get(format!("{}/zones/{zone}/dns_records/{record}", self.api));
                r.method = Method::Patch;
                r.body = Some(serde_json::json!({ "content": addr.to_string() }).to_string());
                r
            }
        };
        r.auth = Auth::Bearer(token.clone());
        r
    }

    /// Reads the answer to [`Session::request`]: `None` = send the next request.
    pub fn handle(&mut self, response: &Response) -> Option<Outcome> {
        let patching = self.record_id.is_some();
        if patching && response.status == 404 {
            // The record was deleted or re-created: look it up again next time.
            self.record_id = None;
            return Some(Outcome::Retry {
                reason: "the record is gone; looking it up again".into(),
                at_least: None,
            });
        }
        if let Some(outcome) = status_outcome(response, None) {
            return Some(outcome);
        }
        let envelope: Envelope = match serde_json::from_str(&response.body) {
            Ok(e) => e,
            Err(_) => {
                return Some(Outcome::Retry {
                    reason: format!("unexpected answer: {}", first_line(&response.body)),
                    at_least: None,
                });
            }
        };
        if !envelope.success {
            let why: Vec<String> = envelope
                .errors
                .iter()
                .map(|e| {
                    format!(
                        "{} {}",
                        e.code,
                        e.message.chars().take(80).collect::<String>()
                    )
                })
                .collect();
            return Some(Outcome::Stop {
                reason: format!("Cloudflare refused: {}", why.join("; ")),
            });
        }
        if patching {
            return Some(Outcome::Accepted);
        }
        let id = envelope
            .result
            .as_ref()
            .and_then(|r| r.as_array())
            .and_then(|list| list.first())
            .and_then(|first| first.get("id"))
            .and_then(|id| id.as_str())
            .filter(|id| is_id(id));
        match (id, self.zone_id.is_none()) {
            (Some(id), true) => self.zone_id = Some(id.to_owned()),
            (Some(id), false) => self.record_id = Some(id.to_owned()),
            (None, true) => {
                return Some(Outcome::Stop {
                    reason: format!("the token sees no zone {}", self.zone),
                });
            }
            (None, false) => {
                return Some(Outcome::Stop {
                    reason: format!(
                        "zone {} has no {} record {}; create it once, v6gate keeps it current",
                        self.zone,
                        self.family.record_type(),
                        self.hostname
                    ),
                });
            }
        }
        None
    }
}

/// Cloudflare ids are 32 hex digits; anything else must not reach a URL path.
fn is_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Ids and shapes from the API v4 reference's examples.
    const ZONE: &str = "023e105f4ecef8ad9ca31a8372d0c353";
    const RECORD: &str = "372e67954025e0ba6aaa6d586b9e0b59";

    fn api() -> Session {
        Session::new(
            "https://api.cloudflare.com/client/v4",
            None,
            "www.example.com",
            Family::Ipv6,
        )
    }

    #[test]
    fn looks_up_once_then_patches() {
        let token = Secret::new("tok");
        let addr: IpAddr = "2001:db8::5".parse().unwrap();
        let mut s = api();
        let r = s.request(&token, addr);
        assert_eq!(
            r.url,
            "https://api.cloudflare.com/client/v4/zones?name=example.com"
        );
        assert_eq!(r.auth, Auth::Bearer(token.clone()));
        let zones = format!(
            r#"{{"success":true,"errors":[],"messages":[],"result":[{{"id":"{ZONE}","name":"example.com"}}]}}"#
        );
        assert_eq!(s.handle(&Response::new(200, &zones)), None);
        let r = s.request(&token, addr);
        assert_eq!(
            r.url,
            format!(
                "https://api.cloudflare.com/client/v4/zones/{ZONE}/dns_records?type=AAAA&name=www.example.com"
            )
        );
        let records = format!(
            r#"{{"success":true,"errors":[],"result":[{{"id":"{RECORD}","type":"AAAA","name":"www.example.com","content":"2001:db8::1"}}]}}"#
        );
        assert_eq!(s.handle(&Response::new(200, &records)), None);
        let r = s.request(&token, addr);
        assert_eq!(r.method, Method::Patch);
        assert_eq!(
            r.url,
            format!("https://api.cloudflare.com/client/v4/zones/{ZONE}/dns_records/{RECORD}")
        );
        assert_eq!(r.body.as_deref(), Some(r#"{"content":"2001:db8::5"}"#));
        let ok = r#"{"success":true,"errors":[],"result":{"id":"x"}}"#;
        assert_eq!(s.handle(&Response::new(200, ok)), Some(Outcome::Accepted));
        // The next update goes straight to PATCH.
        assert_eq!(s.request(&token, addr).method, Method::Patch);
        assert!(!format!("{:?}", s.request(&token, addr)).contains("tok"));
    }

    #[test]
    fn refusals() {
        let mut s = api();
        assert!(matches!(
            s.handle(&Response::new(
                403,
                r#"{"success":false,"errors":[{"code":10000,"message":"Authentication error"}]}"#
            )),
            Some(Outcome::Stop { .. })
        ));
        let mut s = api();
        assert!(matches!(
            s.handle(&Response::new(200, r#"{"success":true,"result":[]}"#)),
            Some(Outcome::Stop { reason }) if reason.contains("no zone")
        ));
        let mut s = api();
        let evil = r#"{"success":true,"result":[{"id":"../../x"}]}"#;
        assert!(matches!(
            s.handle(&Response::new(200, evil)),
            Some(Outcome::Stop { .. })
        ));
        assert!(matches!(
            api().handle(&Response::new(429, "")),
            Some(Outcome::Retry { .. })
        ));
    }
}
