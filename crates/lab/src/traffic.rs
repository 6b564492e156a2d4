//! Traffic between lab machines: ping, and TCP transfers whose every byte is checked.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::process::Output;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::error::LabError;
use crate::lab::Lab;
use crate::netns::enter_netns;
use crate::topology::Node;

/// Result of [`Lab::tcp_transfer`].
#[derive(Clone, Copy, Debug)]
pub struct Transfer {
    /// Bytes the receiver got.
    pub bytes: u64,
    /// From connect to the receiver's acknowledgement of the last byte.
    pub elapsed: Duration,
}

impl Transfer {
    pub fn bits_per_second(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        self.bytes as f64 * 8.0 / secs
    }
}

impl Lab {
    /// `ping -c count -W 1` from `node`; true when every echo came back.
    pub fn ping(&self, node: Node, destination: IpAddr, count: u32) -> bool {
        self.ping_output(node, destination, count, &[])
            .status
            .success()
    }

    /// `ping -n -c count -W 1 -i 0.2 [extra...] destination` from `node`.
    pub fn ping_output(
        &self,
        node: Node,
        destination: IpAddr,
        count: u32,
        extra: &[&str],
    ) -> Output {
        let count = count.to_string();
        let destination = destination.to_string();
        let mut args = vec!["ping", "-n", "-c", &count, "-W", "1", "-i", "0.2"];
        args.extend_from_slice(extra);
        args.push(&destination);
        self.exec(node, &args)
    }

    /// Sends `bytes` over TCP from `client` to a listener bound to `server_address` (port 0
    /// picks one) in `server`, using threads that enter the namespaces. The whole exchange
    /// is bounded by `timeout`. The receiver checks every byte against what the sender wrote.
    pub fn tcp_transfer(
        &self,
        server: Node,
        server_address: SocketAddr,
        client: Node,
        bytes: u64,
        timeout: Duration,
    ) -> Result<Transfer, LabError> {
        let deadline = Instant::now() + timeout;
        let server_ns = self.namespace(server).to_owned();
        let client_ns = self.namespace(client).to_owned();
        let (port_tx, port_rx) = mpsc::channel::<io::Result<SocketAddr>>();

        let receiver = thread::spawn(move || -> io::Result<u64> {
            let listener = enter_netns(&server_ns).and_then(|()| TcpListener::bind(server_address));
            let listener = match listener {
                Ok(listener) => listener,
                Err(e) => {
                    let _ = port_tx.send(Err(io::Error::new(e.kind(), e.to_string())));
                    return Err(e);
                }
            };
            let _ = port_tx.send(listener.local_addr());
            receive(listener, deadline)
        });

        let bound = port_rx
            .recv_timeout(timeout)
            .map_err(|_| LabError::Timeout {
                what: format!("the TCP listener in {server}"),
                detail: String::new(),
            })?
            .map_err(|e| {
                LabError::io(format!("TCP listener on {server_address} in {server}"), e)
            })?;

        let sender = thread::spawn(move || -> io::Result<Transfer> {
            enter_netns(&client_ns)?;
            send(bound, bytes, deadline)
        });

        let sent = sender
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("sender thread panicked")));
        let received = receiver
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("receiver thread panicked")));
        let transfer =
            sent.map_err(|e| LabError::io(format!("TCP sender {client} -> {bound}"), e))?;
        let got = received
            .map_err(|e| LabError::io(format!("TCP receiver on {bound} in {server}"), e))?;
        Ok(Transfer {
            bytes: got,
            elapsed: transfer.elapsed,
        })
    }
}

fn remaining(deadline: Instant) -> io::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "transfer deadline passed",
        ))
    } else {
        Ok(left)
    }
}

/// Bytes a sender writes at a time; the content restarts with each.
const TRANSFER_CHUNK: usize = 64 * 1024;

/// Byte `offset` of a transfer: a pattern the receiver checks, so a packet that reached it
/// with other content than was sent (a checksum completed wrongly) fails the transfer.
fn transfer_byte(offset: u64) -> u8 {
    ((offset % TRANSFER_CHUNK as u64) % 251) as u8
}

/// Accepts one connection, checks and counts bytes until EOF, and acknowledges with the count.
fn receive(listener: TcpListener, deadline: Instant) -> io::Result<u64> {
    listener.set_nonblocking(true)?;
    let mut stream = loop {
        match listener.accept() {
            Ok((stream, _)) => break stream,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                remaining(deadline)?;
                thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(e),
        }
    };
    stream.set_nonblocking(false)?;
    let mut buffer = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        stream.set_read_timeout(Some(remaining(deadline)?))?;
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => {
                if let Some(at) = (0..n).find(|&i| buffer[i] != transfer_byte(total + i as u64)) {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("byte {} differs from what was sent", total + at as u64),
                    ));
                }
                total += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    stream.set_write_timeout(Some(remaining(deadline)?))?;
    stream.write_all(&total.to_be_bytes())?;
    Ok(total)
}

/// Connects, writes `bytes` bytes, half-closes and waits for the receiver's count.
fn send(to: SocketAddr, bytes: u64, deadline: Instant) -> io::Result<Transfer> {
    let start = Instant::now();
    let mut stream = TcpStream::connect_timeout(&to, remaining(deadline)?)?;
    let chunk: Vec<u8> = (0..TRANSFER_CHUNK as u64).map(transfer_byte).collect();
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        stream.set_write_timeout(Some(remaining(deadline)?))?;
        stream.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    stream.shutdown(std::net::Shutdown::Write)?;
    let mut ack = [0u8; 8];
    stream.set_read_timeout(Some(remaining(deadline)?))?;
    stream.read_exact(&mut ack)?;
    Ok(Transfer {
        bytes: u64::from_be_bytes(ack),
        elapsed: start.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::{LabOptions, addr};

    fn lab(options: LabOptions) -> Lab {
        Lab::two_sites(options).unwrap_or_else(|e| panic!("cannot build the lab: {e}"))
    }

    #[test]
    fn tcp_transfer_across_the_wan() {
        let lab = lab(LabOptions::default());
        let transfer = lab
            .tcp_transfer(
                Node::SiteB,
                SocketAddr::new(addr::SITE_B_WAN6.into(), 0),
                Node::SiteA,
                3 * 1024 * 1024 + 17,
                Duration::from_secs(20),
            )
            .unwrap();
        assert_eq!(transfer.bytes, 3 * 1024 * 1024 + 17);
        assert!(transfer.bits_per_second() > 0.0);
    }
}
