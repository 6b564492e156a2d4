//! The HTTPS shell of the HTTP providers: reqwest with rustls.
//!
//! One client per entry and family. Its resolver returns only addresses of the family the entry
//! publishes and its sockets bind to that family's wildcard, so an update for an AAAA record
//! leaves over IPv6 (providers that take the caller's address then see the right one, and a
//! broken IPv4 uplink cannot hold up the IPv6 record). No redirects are followed: credentials
//! go to the configured server only.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use control::ddns::Family;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use super::provider::{Auth, MAX_BODY, Method, Request, Response};

/// Whole-request timeout: connect, TLS, answer.
const TIMEOUT: Duration = Duration::from_secs(20);
/// Largest CA file read.
const MAX_CA_FILE: u64 = 1 << 20;

/// Resolves names to addresses of one family only.
struct FamilyResolver(Family);

impl Resolve for FamilyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let family = self.0;
        Box::pin(async move {
            let found = tokio::net::lookup_host((name.as_str(), 0)).await?;
            let addrs: Vec<SocketAddr> = found.filter(|a| Family::of(a.ip()) == family).collect();
            if addrs.is_empty() {
                return Err(format!("{} has no {family} address", name.as_str()).into());
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// An HTTPS client for one entry and family.
#[derive(Debug, Clone)]
pub struct Http {
    client: reqwest::Client,
}

impl Http {
    /// `ca_file`: trust only the certificate authorities in this PEM file (a private CA)
    /// instead of the built-in roots.
    pub fn new(family: Family, ca_file: Option<&Path>) -> anyhow::Result<Self> {
        let wildcard: IpAddr = match family {
            Family::Ipv4 => Ipv4Addr::UNSPECIFIED.into(),
            Family::Ipv6 => Ipv6Addr::UNSPECIFIED.into(),
        };
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .https_only(true)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(TIMEOUT)
            .user_agent(concat!("v6gate/", env!("CARGO_PKG_VERSION")))
            .local_address(wildcard)
            .dns_resolver(Arc::new(FamilyResolver(family)));
        if let Some(path) = ca_file {
            let pem = read_bounded(path)?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .with_context(|| format!("reading certificates from {}", path.display()))?;
            if certs.is_empty() {
                anyhow::bail!("{} holds no certificate", path.display());
            }
            builder = builder.tls_built_in_root_certs(false);
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        Ok(Self {
            client: builder.build().context("building the HTTPS client")?,
        })
    }

    /// Sends `request`; an error is a transport problem (no answer at all), said without the
    /// URL's secret.
    pub async fn send(&self, request: &Request) -> Result<Response, String> {
        let method = match request.method {
            Method::Get => reqwest::Method::GET,
            Method::Patch => reqwest::Method::PATCH,
        };
        let mut builder = self.client.request(method, &request.url);
        builder = match &request.auth {
            Auth::None => builder,
            Auth::Basic { user, password } => builder.basic_auth(user, Some(password.expose())),
            Auth::Bearer(token) => builder.bearer_auth(token.expose()),
        };
        if let Some(body) = &request.body {
            builder = builder
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone());
        }
        let mut response = builder.send().await.map_err(|e| describe(&e))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|s| Duration::from_secs(s.min(24 * 3600)));
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| describe(&e))? {
            let room = MAX_BODY.saturating_sub(body.len());
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if body.len() >= MAX_BODY {
                break;
            }
        }
        Ok(Response {
            status,
            retry_after,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }
}

/// The error chain without the URL, which may carry the secret.
fn describe(error: &reqwest::Error) -> String {
    let mut text = String::from(if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else if error.is_body() || error.is_decode() {
        "broken answer"
    } else {
        "request failed"
    });
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn read_bounded(path: &Path) -> anyhow::Result<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(MAX_CA_FILE)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {}", path.display()))?;
    Ok(bytes)
}
