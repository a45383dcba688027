//! UDP through a published port: one socket per client address, opened (and connected
//! to 127.0.0.1:PORT) inside the container by the connector, so the container's replies
//! come back on it and go out through the host socket to that client. Flows idle for a
//! minute are closed; datagrams that arrive before a flow's socket exists wait in a small
//! bounded queue.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// A flow unused this long is closed.
pub(super) const IDLE: Duration = Duration::from_secs(60);
/// The most flows at once (each holds a socket in the container).
pub(super) const MAX_FLOWS: usize = 1024;
/// Datagrams waiting for a flow's socket, over all flows.
pub(super) const MAX_PENDING_BYTES: usize = 1 << 20;
/// The largest UDP payload.
pub(super) const DATAGRAM: usize = 65535;
/// Datagrams moved per wake-up and socket.
pub(super) const BATCH: usize = 64;

pub(super) struct Flow {
    /// Index of the host socket the client talks to.
    pub listener: usize,
    pub client: SocketAddr,
    /// The container side, once the connector delivered it.
    pub inner: Option<UdpSocket>,
    pub pending: Vec<Vec<u8>>,
    pub last: Instant,
    pub generation: u32,
}

impl Flow {
    pub fn new(listener: usize, client: SocketAddr, generation: u32) -> Flow {
        Flow {
            listener,
            client,
            inner: None,
            pending: Vec::new(),
            last: Instant::now(),
            generation,
        }
    }

    /// Sends what waited for the socket; returns the bytes released from the queue.
    pub fn flush(&mut self) -> usize {
        let mut freed = 0;
        if let Some(s) = &self.inner {
            for d in self.pending.drain(..) {
                freed += d.len();
                if let Err(e) = s.send(&d) {
                    tracing::debug!(error = %e, "udp send into the container");
                }
            }
        }
        freed
    }

    /// Moves the container's replies to the client through the host socket.
    pub fn replies(&mut self, host: &UdpSocket, buf: &mut [u8]) {
        let Some(s) = &self.inner else { return };
        for _ in 0..BATCH {
            match s.recv(buf) {
                Ok(n) => {
                    self.last = Instant::now();
                    if let Err(e) = host.send_to(&buf[..n], self.client) {
                        tracing::debug!(error = %e, client = %self.client, "udp send to client");
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                // ICMP port unreachable from the container (nothing listens yet): the
                // client's next datagram may find it.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => continue,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::debug!(error = %e, "udp recv from the container");
                    return;
                }
            }
        }
    }
}
