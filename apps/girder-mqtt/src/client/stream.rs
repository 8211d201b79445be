//! The halves of a client's socket: a TCP socket's own halves as they are, any other stream
//! (TLS, WebSocket) boxed.
//!
//! Nearly every connection is plain TCP, and a box around each of its halves costs two
//! allocations per connection and a dynamic call per read and write for nothing.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// The read half of a client's socket.
pub enum Reader {
    /// A TCP socket's.
    Tcp(OwnedReadHalf),
    /// Any other stream's.
    Boxed(Box<dyn AsyncRead + Send + Unpin>),
}

/// The write half of a client's socket.
pub enum Writer {
    /// A TCP socket's.
    Tcp(OwnedWriteHalf),
    /// Any other stream's.
    Boxed(Box<dyn AsyncWrite + Send + Unpin>),
}

/// A TCP socket's halves.
pub fn tcp(socket: TcpStream) -> (Reader, Writer) {
    let (r, w) = socket.into_split();
    (Reader::Tcp(r), Writer::Tcp(w))
}

/// Any stream's halves, boxed.
pub fn boxed<S>(stream: S) -> (Reader, Writer)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (r, w) = tokio::io::split(stream);
    (Reader::Boxed(Box::new(r)), Writer::Boxed(Box::new(w)))
}

impl AsyncRead for Reader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Reader::Tcp(r) => Pin::new(r).poll_read(cx, buf),
            Reader::Boxed(r) => Pin::new(r).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Writer {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Writer::Tcp(w) => Pin::new(w).poll_write(cx, buf),
            Writer::Boxed(w) => Pin::new(w).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Writer::Tcp(w) => Pin::new(w).poll_write_vectored(cx, bufs),
            Writer::Boxed(w) => Pin::new(w).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Writer::Tcp(w) => w.is_write_vectored(),
            Writer::Boxed(w) => w.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Writer::Tcp(w) => Pin::new(w).poll_flush(cx),
            Writer::Boxed(w) => Pin::new(w).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Writer::Tcp(w) => Pin::new(w).poll_shutdown(cx),
            Writer::Boxed(w) => Pin::new(w).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn round_trip(
        mut r: Reader,
        mut w: Writer,
        mut peer: impl AsyncRead + AsyncWrite + Unpin,
    ) {
        w.write_all(b"ping").await.unwrap();
        let mut got = [0u8; 4];
        peer.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ping");
        peer.write_all(b"pong").await.unwrap();
        r.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"pong");
        // Shutting the write half down is an end of stream for the peer.
        w.shutdown().await.unwrap();
        assert_eq!(peer.read(&mut got).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn tcp_halves_read_write_and_shut_down() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let (r, w) = tcp(server);
        assert!(matches!((&r, &w), (Reader::Tcp(_), Writer::Tcp(_))));
        round_trip(r, w, client).await;
    }

    #[tokio::test]
    async fn boxed_halves_read_write_and_shut_down() {
        let (ours, theirs) = tokio::io::duplex(64);
        let (r, w) = boxed(ours);
        assert!(matches!((&r, &w), (Reader::Boxed(_), Writer::Boxed(_))));
        round_trip(r, w, theirs).await;
    }
}
