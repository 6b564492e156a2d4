//! The control socket protocol: one request per connection, one JSON object per line each way.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use super::GatewayStatus;

/// What a client asks the daemon.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    Status,
    Reload,
    /// Reload, and go back to the running config unless [`Request::Confirm`] comes within
    /// `seconds`.
    ReloadConfirm {
        seconds: u64,
    },
    /// Keep the config of a pending [`Request::ReloadConfirm`].
    Confirm,
    /// Take one tunnel out of service (`v6gate down`).
    Down {
        tunnel: String,
    },
    /// Bring it back (`v6gate up`).
    Up {
        tunnel: String,
    },
    /// Start IKE on it now (`v6gate initiate`).
    Initiate {
        tunnel: String,
    },
}

/// What the daemon answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Response {
    Status(GatewayStatus),
    Reloaded {
        summary: String,
    },
    Confirmed {
        summary: String,
    },
    /// What `up`, `down` or `initiate` did.
    Done {
        summary: String,
    },
    Error {
        message: String,
    },
}

impl Response {
    pub fn done(result: Result<String, String>) -> Self {
        match result {
            Ok(summary) => Self::Done { summary },
            Err(message) => Self::Error { message },
        }
    }
}

/// Sends one request and waits (bounded) for the answer.
pub fn query(socket: &Path, request: &Request) -> anyhow::Result<Response> {
    let mut stream = UnixStream::connect(socket).with_context(|| {
        format!(
            "cannot reach the v6gate daemon at {} (is `v6gate run` running, and is this the \
             socket named by [gateway] control_socket?)",
            socket.display()
        )
    })?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut line = serde_json::to_string(request)?;
    line.push('\n');
    stream.write_all(line.as_bytes())?;
    let mut answer = String::new();
    BufReader::new(stream)
        .read_line(&mut answer)
        .context("reading the daemon's answer")?;
    if answer.trim().is_empty() {
        bail!("the daemon closed the connection without answering");
    }
    serde_json::from_str(&answer).context("the daemon's answer is not valid JSON")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_wire_format_is_stable() {
        assert_eq!(
            serde_json::to_string(&Request::Status).unwrap(),
            r#"{"cmd":"status"}"#
        );
        let r: Request = serde_json::from_str(r#"{"cmd":"reload"}"#).unwrap();
        assert_eq!(r, Request::Reload);
        let down = Request::Down {
            tunnel: "vps".into(),
        };
        assert_eq!(
            serde_json::to_string(&down).unwrap(),
            r#"{"cmd":"down","tunnel":"vps"}"#
        );
        let r: Request = serde_json::from_str(r#"{"cmd":"initiate","tunnel":"vps"}"#).unwrap();
        assert_eq!(
            r,
            Request::Initiate {
                tunnel: "vps".into()
            }
        );
    }
}
