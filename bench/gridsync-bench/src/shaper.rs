//! A shaping TCP proxy on loopback: each direction is delayed by a one-way latency and
//! paced to a bit rate, like a rural mobile link. A new connection also waits one round
//! trip before its first byte leaves (the TCP handshake). It can also cut every open
//! connection at a fixed interval, like a link that drops, and count the answer bytes the
//! client received of answers that a cut then cut short (received for nothing: the
//! client asks again).
//!
//! Also compiled into the scenario test `tests/tests/resume.rs` (`#[path]`), so the
//! benchmark and the test shape and cut the link the same way.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Bytes written to the far side at a time (so pacing is smooth).
const PIECE: usize = 512;

/// Shape of the link.
#[derive(Debug, Clone, Copy)]
pub struct Link {
    /// One-way delay.
    pub delay: Duration,
    /// Bytes per second in each direction.
    pub bytes_per_sec: f64,
}

/// What went through a proxy.
#[derive(Debug, Default)]
pub struct LinkStats {
    /// Bytes delivered to clients (answers, headers included).
    pub down: AtomicU64,
    /// Bytes delivered to servers (requests).
    pub up: AtomicU64,
    /// Of `down`, bytes of answers that a cut stopped before their end.
    pub lost_down: AtomicU64,
    /// Cuts that found at least one connection open.
    pub cuts: AtomicU64,
    /// Of those, cuts that stopped an answer part-way.
    pub cuts_mid_answer: AtomicU64,
}

impl LinkStats {
    fn get(v: &AtomicU64) -> u64 {
        v.load(Ordering::SeqCst)
    }
    /// `(down, lost_down, cuts, cuts_mid_answer)` now.
    pub fn snapshot(&self) -> (u64, u64, u64, u64) {
        (
            Self::get(&self.down),
            Self::get(&self.lost_down),
            Self::get(&self.cuts),
            Self::get(&self.cuts_mid_answer),
        )
    }
}

/// One proxied connection, as the cutter sees it.
struct Conn {
    client: TcpStream,
    server: TcpStream,
    /// Bytes delivered to the client of the answer in flight (0 between answers).
    in_flight: AtomicU64,
    closed: AtomicBool,
}

/// A running proxy.
#[derive(Debug)]
pub struct ShapingProxy {
    /// Address to connect to.
    pub addr: SocketAddr,
    /// What went through it.
    pub stats: Arc<LinkStats>,
    stop: Arc<AtomicBool>,
}

impl ShapingProxy {
    /// Starts a proxy to `target` with the given link shape.
    pub fn start(target: SocketAddr, link: Link) -> std::io::Result<ShapingProxy> {
        Self::start_cutting(target, link, None)
    }

    /// Starts a proxy to `target` with the given link shape that, if `cut_every` is set,
    /// cuts every open connection (both ways) at each multiple of it after the start.
    pub fn start_cutting(
        target: SocketAddr,
        link: Link,
        cut_every: Option<Duration>,
    ) -> std::io::Result<ShapingProxy> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(LinkStats::default());
        let conns: Arc<Mutex<Vec<Arc<Conn>>>> = Arc::default();
        let (s2, st2, c2) = (stop.clone(), stats.clone(), conns.clone());
        std::thread::spawn(move || {
            while !s2.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let accepted = Instant::now();
                        let (st3, c3) = (st2.clone(), c2.clone());
                        std::thread::spawn(move || {
                            connection(client, target, link, accepted, st3, c3)
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        if let Some(every) = cut_every {
            let (s2, st2) = (stop.clone(), stats.clone());
            std::thread::spawn(move || cutter(every, s2, st2, conns));
        }
        Ok(ShapingProxy { addr, stats, stop })
    }

    /// URL of the proxy.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for ShapingProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Cuts every open connection at each multiple of `every`.
fn cutter(
    every: Duration,
    stop: Arc<AtomicBool>,
    stats: Arc<LinkStats>,
    conns: Arc<Mutex<Vec<Arc<Conn>>>>,
) {
    let start = Instant::now();
    let mut n = 1u32;
    while !stop.load(Ordering::SeqCst) {
        let at = start + every * n;
        let now = Instant::now();
        if at > now {
            std::thread::sleep((at - now).min(Duration::from_millis(50)));
            continue;
        }
        n += 1;
        let open: Vec<Arc<Conn>> = {
            let mut list = conns.lock().unwrap_or_else(|p| p.into_inner());
            let open = list
                .drain(..)
                .filter(|c| !c.closed.load(Ordering::SeqCst))
                .collect();
            open
        };
        if open.is_empty() {
            continue;
        }
        stats.cuts.fetch_add(1, Ordering::SeqCst);
        let mut mid_answer = false;
        for c in open {
            c.closed.store(true, Ordering::SeqCst);
            let _ = c.client.shutdown(Shutdown::Both);
            let _ = c.server.shutdown(Shutdown::Both);
            let lost = c.in_flight.swap(0, Ordering::SeqCst);
            if lost > 0 {
                mid_answer = true;
                stats.lost_down.fetch_add(lost, Ordering::SeqCst);
            }
        }
        if mid_answer {
            stats.cuts_mid_answer.fetch_add(1, Ordering::SeqCst);
        }
    }
}

fn connection(
    client: TcpStream,
    target: SocketAddr,
    link: Link,
    accepted: Instant,
    stats: Arc<LinkStats>,
    conns: Arc<Mutex<Vec<Arc<Conn>>>>,
) {
    if client.set_nonblocking(false).is_err() {
        return;
    }
    let Ok(server) = TcpStream::connect(target) else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (Ok(c2), Ok(s2), Ok(c3), Ok(s3)) = (
        client.try_clone(),
        server.try_clone(),
        client.try_clone(),
        server.try_clone(),
    ) else {
        return;
    };
    let conn = Arc::new(Conn {
        client: c3,
        server: s3,
        in_flight: AtomicU64::new(0),
        closed: AtomicBool::new(false),
    });
    conns
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(conn.clone());
    // The handshake costs a round trip before the client's first byte can travel.
    let st2 = stats.clone();
    let up = std::thread::spawn(move || {
        pipe(client, s2, link, accepted + 2 * link.delay, Side::Up(st2))
    });
    pipe(
        server,
        c2,
        link,
        accepted,
        Side::Down(stats, conn.clone(), Answer::default()),
    );
    up.join().ok();
    conn.closed.store(true, Ordering::SeqCst);
}

/// Which way a pipe carries bytes, and what it counts.
enum Side {
    /// Requests to the server.
    Up(Arc<LinkStats>),
    /// Answers to the client, followed through their HTTP framing.
    Down(Arc<LinkStats>, Arc<Conn>, Answer),
}

/// Where the answer being delivered is: in its head, or in a body of known length.
#[derive(Default)]
struct Answer {
    head: Vec<u8>,
    body_left: Option<u64>,
}

impl Answer {
    /// Follows `bytes` delivered to the client; returns whether an answer ended in them.
    fn delivered(&mut self, mut bytes: &[u8]) -> bool {
        let mut ended = false;
        while !bytes.is_empty() {
            match self.body_left {
                Some(left) => {
                    let n = (bytes.len() as u64).min(left);
                    bytes = &bytes[n as usize..];
                    self.body_left = Some(left - n);
                    if left == n {
                        self.body_left = None;
                        ended = true;
                    }
                }
                None => {
                    self.head.push(bytes[0]);
                    bytes = &bytes[1..];
                    if self.head.ends_with(b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&self.head).to_ascii_lowercase();
                        let len = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<u64>().ok())
                            .unwrap_or(0);
                        self.head.clear();
                        if len == 0 {
                            ended = true;
                        } else {
                            self.body_left = Some(len);
                        }
                    }
                }
            }
        }
        ended
    }
}

/// Copies `from` to `to`: a reader stamps each chunk with its arrival time, a writer
/// releases it when the paced link has carried it plus the one-way delay.
fn pipe(mut from: TcpStream, mut to: TcpStream, link: Link, link_free_at: Instant, mut side: Side) {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    let reader = std::thread::spawn(move || {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.send((Instant::now(), buf[..n].to_vec())).is_err() {
                        break;
                    }
                }
            }
        }
    });
    let mut free = link_free_at;
    'chunks: for (arrived, chunk) in rx {
        for piece in chunk.chunks(PIECE) {
            let start = free.max(arrived);
            let end = start + Duration::from_secs_f64(piece.len() as f64 / link.bytes_per_sec);
            free = end;
            let deliver = end + link.delay;
            let now = Instant::now();
            if deliver > now {
                std::thread::sleep(deliver - now);
            }
            if to.write_all(piece).is_err() {
                break 'chunks;
            }
            let n = piece.len() as u64;
            match &mut side {
                Side::Up(stats) => {
                    stats.up.fetch_add(n, Ordering::SeqCst);
                }
                Side::Down(stats, conn, answer) => {
                    stats.down.fetch_add(n, Ordering::SeqCst);
                    if answer.delivered(piece) {
                        conn.in_flight.store(0, Ordering::SeqCst);
                    } else if !conn.closed.load(Ordering::SeqCst) {
                        conn.in_flight.fetch_add(n, Ordering::SeqCst);
                    }
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    reader.join().ok();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_and_paces_both_directions() {
        // An echo server behind the proxy.
        let echo = TcpListener::bind("127.0.0.1:0").unwrap();
        let target = echo.local_addr().unwrap();
        std::thread::spawn(move || {
            if let Ok((mut s, _)) = echo.accept() {
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        });
        let link = Link {
            delay: Duration::from_millis(50),
            bytes_per_sec: 40_000.0,
        };
        let proxy = ShapingProxy::start(target, link).unwrap();
        let mut c = TcpStream::connect(proxy.addr).unwrap();
        let t = Instant::now();
        c.write_all(&[7u8; 4000]).unwrap();
        let mut got = vec![0u8; 4000];
        c.read_exact(&mut got).unwrap();
        let secs = t.elapsed().as_secs_f64();
        assert!(got.iter().all(|b| *b == 7));
        // Handshake 0.1 s + 0.1 s pacing (the echo overlaps it) + 2 x 0.05 s delay = 0.31 s.
        assert!(secs >= 0.29, "too fast for the link: {secs} s");
        assert!(secs < 1.5, "far slower than the link: {secs} s");
    }
}
