//! UDP through a published port: one socket per client address, opened (and connected
//! to 127.0.0.1:PORT) inside the container by the connector, so the container's replies
//! come back on it and go out through the host socket to that client. Flows idle for a
//! minute are closed; datagrams that arrive before a flow's socket exists wait in a small
//! bounded queue.

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use nix::sys::epoll::{EpollEvent, EpollFlags};

use super::connector;
use super::portspec::Protocol;
use super::relay::{key, token, Listener, Relay, Sock, K_FLOW, SWEEP};

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

/// UDP through the relay's host sockets.
impl Relay {
    /// Closes idle UDP flows.
    pub fn tick(&mut self) {
        let Some(t) = self.next_sweep else { return };
        let now = Instant::now();
        if now < t {
            return;
        }
        let idle: Vec<usize> = self
            .flows
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, f)| {
                f.as_ref()
                    .filter(|f| now.duration_since(f.last) >= IDLE)
                    .map(|_| i)
            })
            .collect();
        for i in idle {
            self.drop_flow(i);
        }
        self.next_sweep = (self.flows.live > 0).then(|| now + SWEEP);
    }

    pub(super) fn on_udp_listener(&mut self, idx: usize) {
        if self.udp_buf.is_empty() {
            self.udp_buf = vec![0u8; DATAGRAM];
        }
        for _ in 0..BATCH {
            let Some(Listener {
                sock: Sock::Udp(s),
                mapping,
            }) = self.listeners.get(idx)
            else {
                return;
            };
            let port = mapping.container_port;
            let (n, from) = match s.recv_from(&mut self.udp_buf) {
                Ok(v) => v,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            };
            if let Some(&fi) = self.flow_index.get(&(idx, from)) {
                let pending_ok = self.pending_bytes + n <= MAX_PENDING_BYTES;
                if let Some(f) = self.flows.get_mut(fi) {
                    f.last = Instant::now();
                    match &f.inner {
                        Some(inner) => {
                            let _ = inner.send(&self.udp_buf[..n]);
                        }
                        None if pending_ok => {
                            f.pending.push(self.udp_buf[..n].to_vec());
                            self.pending_bytes += n;
                        }
                        None => tracing::debug!("udp: queue full, datagram dropped"),
                    }
                }
                continue;
            }
            if self.flows.live >= MAX_FLOWS
                || self.connector.is_none()
                || self.pending_bytes + n > MAX_PENDING_BYTES
            {
                tracing::debug!(client = %from, "udp: too many flows, datagram dropped");
                continue;
            }
            let g = self.next_generation();
            let mut f = Flow::new(idx, from, g);
            f.pending.push(self.udp_buf[..n].to_vec());
            self.pending_bytes += n;
            let fi = self.flows.insert(f);
            self.flow_index.insert((idx, from), fi);
            self.request(connector::request(Protocol::Udp, port, token(true, g, fi)));
            if self.next_sweep.is_none() {
                self.next_sweep = Some(Instant::now() + SWEEP);
            }
        }
    }

    pub(super) fn flow_delivered(
        &mut self,
        idx: usize,
        generation: u32,
        errno: i32,
        fd: Option<OwnedFd>,
    ) {
        let ok = matches!(self.flows.get_mut(idx), Some(f) if f.generation == generation);
        if !ok {
            return;
        }
        let Some(fd) = fd.filter(|_| errno == 0) else {
            tracing::debug!(errno, "udp: opening a socket inside the container failed");
            self.drop_flow(idx);
            return;
        };
        let ev = EpollEvent::new(EpollFlags::EPOLLIN, key(K_FLOW, generation, idx));
        if let Err(e) = self.epoll.add(&fd, ev) {
            tracing::debug!(error = %e, "epoll add udp flow");
        }
        if let Some(f) = self.flows.get_mut(idx) {
            f.inner = Some(UdpSocket::from(fd));
            let freed = f.flush();
            self.pending_bytes = self.pending_bytes.saturating_sub(freed);
        }
    }

    pub(super) fn on_flow(&mut self, idx: usize, generation: u32) {
        if self.udp_buf.is_empty() {
            self.udp_buf = vec![0u8; DATAGRAM];
        }
        let Some(f) = self.flows.slots.get_mut(idx).and_then(|f| f.as_mut()) else {
            return;
        };
        if f.generation != generation {
            return;
        }
        if let Some(Listener {
            sock: Sock::Udp(host),
            ..
        }) = self.listeners.get(f.listener)
        {
            f.replies(host, &mut self.udp_buf);
        }
    }

    fn drop_flow(&mut self, idx: usize) {
        if let Some(f) = self.flows.remove(idx) {
            self.flow_index.remove(&(f.listener, f.client));
            let queued: usize = f.pending.iter().map(Vec::len).sum();
            self.pending_bytes = self.pending_bytes.saturating_sub(queued);
        }
    }
}
