//! The control socket: one JSON request per connection, answered by the daemon's main loop.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
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
    /// Binds now, so a second daemon with the same socket fails at start rather than later.
    pub(super) fn bind(path: &Path) -> anyhow::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating {} (control_socket)", dir.display()))?;
        }
        if path.exists() {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                bail!(
                    "another v6gate is already answering on {} (control_socket)",
                    path.display()
                );
            }
            // A stale socket from a crash: nobody listens, so it is safe to replace.
            std::fs::remove_file(path)
                .with_context(|| format!("removing stale socket {}", path.display()))?;
        }
        let listener = std::os::unix::net::UnixListener::bind(path).with_context(|| {
            format!("binding control socket {} (control_socket)", path.display())
        })?;
        use std::os::unix::fs::PermissionsExt;
        // Status shows addresses and counters and reload changes routing: root only.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("restricting {}", path.display()))?;
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
        let _ = std::fs::remove_file(&self.path);
    }
}

async fn serve_one(
    stream: UnixStream,
    requests: mpsc::Sender<(Request, oneshot::Sender<Response>)>,
) -> anyhow::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(read);
    tokio::time::timeout(Duration::from_secs(5), reader.read_line(&mut line))
        .await
        .context("client sent no request in time")??;
    let response = match serde_json::from_str::<Request>(line.trim()) {
        Ok(request) => {
            let (tx, rx) = oneshot::channel();
            requests
                .send((request, tx))
                .await
                .context("daemon is stopping")?;
            rx.await.context("daemon dropped the request")?
        }
        Err(e) => Response::Error {
            message: format!("bad request: {e}"),
        },
    };
    let mut out = serde_json::to_string(&response)?;
    out.push('\n');
    write.write_all(out.as_bytes()).await?;
    Ok(())
}
