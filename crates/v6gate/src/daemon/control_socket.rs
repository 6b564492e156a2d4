//! The control socket: one JSON request per connection, answered by the daemon's main loop.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::OwnedReadHalf;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use crate::status::{Request, Response};

pub(super) struct Server {
    path: PathBuf,
    listener: Option<std::os::unix::net::UnixListener>,
    task: Option<JoinHandle<()>>,
}

impl Server {
    /// Binds the instance's socket. The caller holds the instance lock, so a socket already
    /// there is a crashed run's and is replaced; anything that is not a socket is refused and
    /// left in place.
    pub(super) fn bind(path: &Path) -> anyhow::Result<Self> {
        match sys::runtime_dir::is_socket(path)? {
            None => {}
            Some(true) => std::fs::remove_file(path)
                .with_context(|| format!("removing stale socket {}", path.display()))?,
            Some(false) => bail!(
                "{} exists and is not a socket; refusing to replace it (control_socket)",
                path.display()
            ),
        }
        let listener = std::os::unix::net::UnixListener::bind(path).with_context(|| {
            format!("binding control socket {} (control_socket)", path.display())
        })?;
        // Status shows addresses and counters and reload changes routing: root only.
        sys::runtime_dir::make_private(path)?;
        listener.set_nonblocking(true)?;
        Ok(Self {
            path: path.to_path_buf(),
            listener: Some(listener),
            task: None,
        })
    }

    pub(super) fn start(&mut self, requests: mpsc::Sender<(Request, oneshot::Sender<Response>)>) {
        let Some(listener) = self.listener.take() else {
            return;
        };
        let listener = match UnixListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                warn!("control socket unusable: {e}");
                return;
            }
        };
        self.task = Some(tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => {
                        let requests = requests.clone();
                        tokio::spawn(async move {
                            if let Err(e) = serve_one(stream, requests).await {
                                debug!("control connection: {e:#}");
                            }
                        });
                    }
                    Err(e) => {
                        warn!("control socket accept: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        }));
    }

    pub(super) fn close(self) {
        if let Some(task) = &self.task {
            task.abort();
        }
        // Only our socket: a path that became something else meanwhile stays.
        if let Ok(Some(true)) = sys::runtime_dir::is_socket(&self.path) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

async fn serve_one(
    stream: UnixStream,
    requests: mpsc::Sender<(Request, oneshot::Sender<Response>)>,
) -> anyhow::Result<()> {
    let (read, mut write) = stream.into_split();
    let response = match read_request(read).await? {
        Ok(request) => {
            let (tx, rx) = oneshot::channel();
            requests
                .send((request, tx))
                .await
                .context("daemon is stopping")?;
            rx.await.context("daemon dropped the request")?
        }
        Err(message) => Response::Error { message },
    };
    let mut out = serde_json::to_string(&response)?;
    out.push('\n');
    write.write_all(out.as_bytes()).await?;
    Ok(())
}

/// Longest request line accepted; a request is a few dozen bytes.
pub(super) const MAX_REQUEST: u64 = 64 << 10;

/// One request line, read with a bound on its size and on the time it takes. The inner error
/// is the message to answer with.
async fn read_request(read: OwnedReadHalf) -> anyhow::Result<Result<Request, String>> {
    let mut line = Vec::new();
    // One byte more than allowed tells an over-long request from one that fits exactly.
    let mut reader = BufReader::new(read.take(MAX_REQUEST + 1));
    tokio::time::timeout(Duration::from_secs(5), reader.read_until(b'\n', &mut line))
        .await
        .context("client sent no request in time")??;
    if line.len() as u64 > MAX_REQUEST {
        return Ok(Err(format!("bad request: longer than {MAX_REQUEST} bytes")));
    }
    let Ok(text) = std::str::from_utf8(&line) else {
        return Ok(Err("bad request: not UTF-8".to_owned()));
    };
    Ok(serde_json::from_str::<Request>(text.trim()).map_err(|e| format!("bad request: {e}")))
}
