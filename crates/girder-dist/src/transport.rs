//! The network under distribution: real TCP and UDP sockets ([`Tokio`], the default), or
//! anything else that moves bytes, such as a simulated network in deterministic tests.
//!
//! [`DistNode`](crate::DistNode) listens and dials through [`Network`]; [`Membership`](crate::Membership)
//! sends its datagrams through it. Everything above (handshake, TLS, frames) is the same on
//! any network.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncWrite};

/// A connected byte stream.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Stream for T {}

/// A boxed [`Stream`].
pub type BoxStream = Box<dyn Stream>;

/// A listening socket.
pub trait Listener: Send + 'static {
    /// The next incoming connection and where it came from.
    fn accept(&mut self) -> BoxFuture<'_, io::Result<(BoxStream, SocketAddr)>>;
    /// The address it listens on.
    fn local_addr(&self) -> io::Result<SocketAddr>;
}

/// A datagram socket.
pub trait Datagrams: Send + Sync + 'static {
    /// Sends one datagram.
    fn send_to<'a>(&'a self, buf: &'a [u8], to: SocketAddr) -> BoxFuture<'a, io::Result<usize>>;
    /// Receives one datagram.
    fn recv_from<'a>(&'a self, buf: &'a mut [u8])
        -> BoxFuture<'a, io::Result<(usize, SocketAddr)>>;
    /// The address it is bound to.
    fn local_addr(&self) -> io::Result<SocketAddr>;
}

/// Where connections and datagrams go.
pub trait Network: fmt::Debug + Send + Sync + 'static {
    /// Listens for connections on `addr` (port 0: any free port).
    fn listen(&self, addr: SocketAddr) -> BoxFuture<'_, io::Result<Box<dyn Listener>>>;
    /// Connects to `addr`.
    fn connect(&self, addr: SocketAddr) -> BoxFuture<'_, io::Result<BoxStream>>;
    /// Binds a datagram socket on `addr`.
    fn bind_datagrams(&self, addr: SocketAddr) -> BoxFuture<'_, io::Result<Arc<dyn Datagrams>>>;
}

/// The real network: tokio's TCP (with `TCP_NODELAY`, as small messages must not wait) and
/// UDP sockets.
///
/// ```
/// # #[tokio::main] async fn main() {
/// use girder_dist::transport::{Network, Tokio};
/// let listener = Tokio.listen("127.0.0.1:0".parse().unwrap()).await.unwrap();
/// assert_ne!(listener.local_addr().unwrap().port(), 0);
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Tokio;

/// Receive buffer asked for datagram sockets (bytes).
const DATAGRAM_BUFFER: usize = 4 << 20;

/// The default network, shared.
pub fn tokio_network() -> Arc<dyn Network> {
    Arc::new(Tokio)
}

impl Network for Tokio {
    fn listen(&self, addr: SocketAddr) -> BoxFuture<'_, io::Result<Box<dyn Listener>>> {
        Box::pin(async move {
            let l = tokio::net::TcpListener::bind(addr).await?;
            Ok(Box::new(l) as Box<dyn Listener>)
        })
    }

    fn connect(&self, addr: SocketAddr) -> BoxFuture<'_, io::Result<BoxStream>> {
        Box::pin(async move {
            let s = tokio::net::TcpStream::connect(addr).await?;
            s.set_nodelay(true)?;
            Ok(Box::new(s) as BoxStream)
        })
    }

    fn bind_datagrams(&self, addr: SocketAddr) -> BoxFuture<'_, io::Result<Arc<dyn Datagrams>>> {
        Box::pin(async move {
            use socket2::{Domain, Protocol, Socket, Type};
            let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
            // Room for bursts: under a flood the reader keeps up on average, but while its
            // thread is descheduled for a few milliseconds the usual 208 KiB fills in about
            // two, and the kernel then drops real members' datagrams with the flood's. The
            // kernel caps this at net.core.rmem_max.
            let _ = socket.set_recv_buffer_size(DATAGRAM_BUFFER);
            socket.set_nonblocking(true)?;
            socket.bind(&addr.into())?;
            let s = tokio::net::UdpSocket::from_std(socket.into())?;
            Ok(Arc::new(s) as Arc<dyn Datagrams>)
        })
    }
}

impl Listener for tokio::net::TcpListener {
    fn accept(&mut self) -> BoxFuture<'_, io::Result<(BoxStream, SocketAddr)>> {
        Box::pin(async move {
            let (s, from) = tokio::net::TcpListener::accept(self).await?;
            s.set_nodelay(true)?;
            Ok((Box::new(s) as BoxStream, from))
        })
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        tokio::net::TcpListener::local_addr(self)
    }
}

impl Datagrams for tokio::net::UdpSocket {
    fn send_to<'a>(&'a self, buf: &'a [u8], to: SocketAddr) -> BoxFuture<'a, io::Result<usize>> {
        Box::pin(tokio::net::UdpSocket::send_to(self, buf, to))
    }

    fn recv_from<'a>(
        &'a self,
        buf: &'a mut [u8],
    ) -> BoxFuture<'a, io::Result<(usize, SocketAddr)>> {
        Box::pin(tokio::net::UdpSocket::recv_from(self, buf))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        tokio::net::UdpSocket::local_addr(self)
    }
}
