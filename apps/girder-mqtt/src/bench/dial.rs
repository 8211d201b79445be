//! Dialling the broker without making the kernel search for a source port.
//!
//! Thousands of connections from one address to one `addr:port` make every further
//! `connect(2)` walk the ephemeral port range, checking each port already in use against the
//! established table: measured, half of the load generator's CPU during the idle run (15,000
//! connections) went to `__inet_hash_connect`, and on a 2-core machine that is CPU the broker
//! under test does not get. On loopback each client binds a source address and port of its
//! own first (`127.0.0.2` and up, where nothing else on the machine dials from), which the
//! kernel checks in one look-up. Anywhere else, or if binding fails, it dials as usual.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicU32, Ordering};

use tokio::net::{TcpSocket, TcpStream};

/// The first source port handed out; with `PORTS` of them per source address.
const FIRST_PORT: u32 = 10_000;
const PORTS: u32 = 50_000;
/// Source addresses `127.0.0.2 ..= 127.0.0.(1 + ADDRESSES)`.
const ADDRESSES: u32 = 250;
/// How many source ports a client tries before it lets the kernel pick one.
const TRIES: usize = 16;

/// The next source address and port, shared by every client of the process so that no two
/// live ones pick the same pair (they wrap after 12.5 million, long closed by then).
static NEXT: AtomicU32 = AtomicU32::new(0);

fn next_source() -> SocketAddr {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let host = 2 + (n / PORTS) % ADDRESSES;
    let port = FIRST_PORT + n % PORTS;
    SocketAddr::V4(SocketAddrV4::new(
        Ipv4Addr::new(127, 0, 0, host as u8),
        port as u16,
    ))
}

/// Connects to `addr`, from a source address and port of its own when `addr` is on IPv4
/// loopback.
pub async fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    if let SocketAddr::V4(v4) = addr {
        if v4.ip().is_loopback() {
            for _ in 0..TRIES {
                let socket = TcpSocket::new_v4()?;
                // A port whose last connection is in TIME_WAIT can be bound again.
                socket.set_reuseaddr(true)?;
                match socket.bind(next_source()) {
                    Ok(()) => return socket.connect(addr).await,
                    // Taken by something else on the machine (a listener on that port).
                    Err(e) if e.kind() == io::ErrorKind::AddrInUse => continue,
                    Err(_) => break,
                }
            }
        }
    }
    TcpStream::connect(addr).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    #[tokio::test]
    async fn clients_dial_from_distinct_sources_and_reach_the_listener() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut sources = std::collections::HashSet::new();
        let mut clients = Vec::new();
        for _ in 0..200 {
            let mut c = connect(addr).await.unwrap();
            let (mut s, from) = listener.accept().await.unwrap();
            assert!(sources.insert(from), "{from} used twice");
            assert_ne!(from.ip(), addr.ip(), "the kernel's own source address");
            c.write_all(b"x").await.unwrap();
            let mut b = [0u8; 1];
            s.read_exact(&mut b).await.unwrap();
            clients.push((c, s));
        }
    }

    #[tokio::test]
    async fn a_source_taken_by_a_listener_is_skipped() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // A wildcard listener on the next source port makes that one unbindable.
        let next = NEXT.load(Ordering::Relaxed);
        let port = (FIRST_PORT + next % PORTS) as u16;
        let blocker = std::net::TcpListener::bind(("0.0.0.0", port));
        let c = connect(addr).await.unwrap();
        let (_s, from) = listener.accept().await.unwrap();
        assert_eq!(c.local_addr().unwrap(), from);
        if blocker.is_ok() {
            assert_ne!(from.port(), port);
        }
    }
}
