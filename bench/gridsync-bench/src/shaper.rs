//! A shaping TCP proxy on loopback: each direction is delayed by a one-way latency and
//! paced to a bit rate, like a rural mobile link. A new connection also waits one round
//! trip before its first byte leaves (the TCP handshake).

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
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

/// A running proxy.
#[derive(Debug)]
pub struct ShapingProxy {
    /// Address to connect to.
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl ShapingProxy {
    /// Starts a proxy to `target` with the given link shape.
    pub fn start(target: SocketAddr, link: Link) -> std::io::Result<ShapingProxy> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        std::thread::spawn(move || {
            while !s2.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let accepted = Instant::now();
                        std::thread::spawn(move || connection(client, target, link, accepted));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Ok(ShapingProxy { addr, stop })
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

fn connection(client: TcpStream, target: SocketAddr, link: Link, accepted: Instant) {
    if client.set_nonblocking(false).is_err() {
        return;
    }
    let Ok(server) = TcpStream::connect(target) else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    // The handshake costs a round trip before the client's first byte can travel.
    let up = std::thread::spawn(move || pipe(client, s2, link, accepted + 2 * link.delay));
    pipe(server, c2, link, accepted);
    up.join().ok();
}

/// Copies `from` to `to`: a reader stamps each chunk with its arrival time, a writer
/// releases it when the paced link has carried it plus the one-way delay.
fn pipe(mut from: TcpStream, mut to: TcpStream, link: Link, link_free_at: Instant) {
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
