//! What each provider is sent and what its answers mean: pure functions from an address to a
//! request and from a response to an [`Outcome`]. The HTTP shell (`super::http`) sends them.

pub mod cloudflare;
pub mod dyndns2;
pub mod template;
pub mod value_domain;

use std::fmt;
use std::time::Duration;

use control::ddns::schedule::Outcome;

use super::secret::Secret;

/// Longest response body read from a provider; the answers that matter are a few bytes.
pub const MAX_BODY: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Patch,
}

/// How a request proves who sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    None,
    Basic { user: String, password: Secret },
    Bearer(Secret),
}

/// One HTTPS request, ready to send.
#[derive(Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    /// The whole URL, which may carry the secret in its query (Value Domain, templates).
    pub url: String,
    pub auth: Auth,
    /// A JSON body.
    pub body: Option<String>,
    /// The secret the URL carries, if any, so `Debug` can hide it.
    url_secret: Option<String>,
}

impl Request {
    pub fn get(url: String) -> Self {
        Self {
            method: Method::Get,
            url,
            auth: Auth::None,
            body: None,
            url_secret: None,
        }
    }

    /// Marks `encoded` (as it appears in the URL) as secret.
    pub fn with_url_secret(mut self, encoded: String) -> Self {
        self.url_secret = Some(encoded);
        self
    }

    /// The URL as it may be logged.
    pub fn shown_url(&self) -> String {
        match &self.url_secret {
            Some(secret) if !secret.is_empty() => self.url.replace(secret.as_str(), "<redacted>"),
            _ => self.url.clone(),
        }
    }
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("url", &self.shown_url())
            .field("auth", &self.auth)
            .field("body", &self.body)
            .finish()
    }
}

/// What came back: the HTTP status, `Retry-After` in seconds if given, and the body (cut at
/// [`MAX_BODY`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub retry_after: Option<Duration>,
    pub body: String,
}

impl Response {
    pub fn new(status: u16, body: &str) -> Self {
        Self {
            status,
            retry_after: None,
            body: body.to_owned(),
        }
    }
}

/// What the HTTP status alone says, for every provider: 401/403 stop the entry (the
/// credentials are wrong and retrying only looks like an attack), 429 and 5xx are retried
/// later, other 4xx stop it (the request itself is wrong), 2xx and 3xx are for the provider to
/// read. `least` is the shortest wait the provider is known to ask for after a refusal.
pub fn status_outcome(response: &Response, least: Option<Duration>) -> Option<Outcome> {
    let code = response.status;
    let retry = |reason: String| Outcome::Retry {
        reason,
        at_least: response.retry_after.or(least),
    };
    match code {
        200..=399 => None,
        401 | 403 => Some(Outcome::Stop {
            reason: format!("HTTP {code}: the provider refused the credentials"),
        }),
        408 | 429 => Some(retry(format!(
            "HTTP {code}: the provider asks to slow down"
        ))),
        400..=499 => Some(Outcome::Stop {
            reason: format!("HTTP {code}: {}", first_line(&response.body)),
        }),
        _ => Some(retry(format!("HTTP {code}"))),
    }
}

/// The first line of a body, cut to 120 characters, for messages.
pub fn first_line(body: &str) -> String {
    body.lines()
        .next()
        .unwrap_or("")
        .trim()
        .chars()
        .take(120)
        .collect()
}

/// Percent-encodes everything but RFC 3986 unreserved characters, for query values.
pub fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_follows_rfc_3986() {
        // RFC 3986 §2.3: unreserved characters stay; `:` of an IPv6 address is %3A.
        assert_eq!(encode("2001:db8::1"), "2001%3Adb8%3A%3A1");
        assert_eq!(encode("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
        assert_eq!(encode("A-z_0.9~"), "A-z_0.9~");
    }

    #[test]
    fn statuses_every_provider_shares() {
        let stop = |code| {
            matches!(
                status_outcome(&Response::new(code, ""), None),
                Some(Outcome::Stop { .. })
            )
        };
        let retry = |code| {
            matches!(
                status_outcome(&Response::new(code, ""), None),
                Some(Outcome::Retry { .. })
            )
        };
        assert!(stop(401) && stop(403) && stop(404));
        assert!(retry(429) && retry(500) && retry(503));
        assert_eq!(status_outcome(&Response::new(200, ""), None), None);
        let mut r = Response::new(503, "");
        r.retry_after = Some(Duration::from_secs(90));
        assert_eq!(
            status_outcome(&r, Some(Duration::from_secs(60))),
            Some(Outcome::Retry {
                reason: "HTTP 503".into(),
                at_least: Some(Duration::from_secs(90))
            })
        );
    }

    proptest::proptest! {
        /// Whatever a server answers, reading it never panics, and every provider reads
        /// 401/403 as a stop and 5xx as a retry.
        #[test]
        fn any_answer_is_read(status in 100u16..600, body in ".{0,300}", bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let lossy = String::from_utf8_lossy(&bytes).into_owned();
            for body in [body.as_str(), lossy.as_str()] {
                let r = Response::new(status, body);
                let outcomes = [
                    value_domain::outcome(&r),
                    dyndns2::outcome(&r),
                    template::outcome(&r),
                    cloudflare::Session::new("https://api.example", None, "a.example", control::ddns::Family::Ipv6)
                        .handle(&r)
                        .unwrap_or(Outcome::Accepted),
                ];
                for o in outcomes {
                    match status {
                        401 | 403 => {
                            let stop = matches!(o, Outcome::Stop { .. });
                            proptest::prop_assert!(stop, "{o:?}");
                        },
                        500..=599 => {
                            let retry = matches!(o, Outcome::Retry { .. });
                            proptest::prop_assert!(retry, "{o:?}");
                        },
                        _ => {}
                    }
                }
            }
        }
    }

    #[test]
    fn debug_hides_url_secrets() {
        let r = Request::get("https://h.example/u?p=s3cr%3At".into())
            .with_url_secret("s3cr%3At".into());
        let shown = format!("{r:?}");
        assert!(!shown.contains("s3cr"), "{shown}");
        assert!(shown.contains("p=<redacted>"));
    }
}
