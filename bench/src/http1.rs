//! The open-loop generator's HTTP/1.1 client: one keep-alive connection, one request in flight,
//! requests pre-formatted once. hyper's client costs ~12 µs of the generator's core per request
//! (a dispatch task and a channel between the caller and the connection); this is one write and
//! usually one read, so the generator's core stays far from saturated and its own queueing does
//! not decide the latency it reports. Responses are parsed with `httparse`; only bodies framed
//! by `Content-Length` (or none) are accepted, which is what both servers under test send.

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Headers a response may carry; more is an error.
const MAX_HEADERS: usize = 32;
/// A response's header block larger than this is an error.
const MAX_HEAD: usize = 16 * 1024;

/// `GET {path} HTTP/1.1` with a `Host` header, ready to write.
pub fn request(path: &str, host: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").into_bytes()
}

/// What one exchange returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body_len: usize,
}

pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    /// The server said `Connection: close`: the next request needs a new connection.
    closing: bool,
}

impl Conn {
    pub async fn connect(target: &str) -> anyhow::Result<Conn> {
        let stream = TcpStream::connect(target)
            .await
            .with_context(|| format!("connecting to {target}"))?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            buf: Vec::with_capacity(4096),
            closing: false,
        })
    }

    /// False once the server has announced it closes the connection.
    pub fn reusable(&self) -> bool {
        !self.closing
    }

    /// Writes `request` and reads one whole response.
    pub async fn exchange(&mut self, request: &[u8]) -> anyhow::Result<Answer> {
        self.stream.write_all(request).await?;
        self.buf.clear();
        let (status, head_len, body_len) = loop {
            if self.read_more().await? == 0 {
                bail!("the server closed the connection before answering");
            }
            if let Some(head) = self.parse_head()? {
                break head;
            }
            if self.buf.len() > MAX_HEAD {
                bail!("response headers larger than {MAX_HEAD} bytes");
            }
        };
        let total = head_len + body_len;
        while self.buf.len() < total {
            if self.read_more().await? == 0 {
                bail!("the server closed the connection inside a response body");
            }
        }
        if self.buf.len() > total {
            bail!("the server sent more than one response to one request");
        }
        Ok(Answer { status, body_len })
    }

    async fn read_more(&mut self) -> std::io::Result<usize> {
        if self.buf.capacity() - self.buf.len() < 1024 {
            self.buf.reserve(4096);
        }
        self.stream.read_buf(&mut self.buf).await
    }

    /// `(status, header block length, body length)` once the header block is complete.
    fn parse_head(&mut self) -> anyhow::Result<Option<(u16, usize, usize)>> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut headers);
        let head_len = match response.parse(&self.buf).context("parsing a response")? {
            httparse::Status::Complete(n) => n,
            httparse::Status::Partial => return Ok(None),
        };
        let status = response.code.context("a response without a status")?;
        let mut body_len = 0usize;
        for h in response.headers.iter() {
            if h.name.eq_ignore_ascii_case("content-length") {
                body_len = std::str::from_utf8(h.value)
                    .ok()
                    .and_then(|v| v.trim().parse().ok())
                    .context("an unreadable Content-Length")?;
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                bail!("a response with Transfer-Encoding (only Content-Length is supported)");
            } else if h.name.eq_ignore_ascii_case("connection")
                && h.value.eq_ignore_ascii_case(b"close")
            {
                self.closing = true;
            }
        }
        Ok(Some((status, head_len, body_len)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A server that answers each request with the next of `replies`, each written in pieces of
    /// `piece` bytes so that the client sees split reads.
    async fn server(replies: Vec<&'static [u8]>, piece: usize) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            for reply in replies {
                let mut got = Vec::new();
                while !got.ends_with(b"\r\n\r\n") {
                    let n = s.read(&mut buf).await.unwrap();
                    if n == 0 {
                        return;
                    }
                    got.extend_from_slice(&buf[..n]);
                }
                for chunk in reply.chunks(piece) {
                    s.write_all(chunk).await.unwrap();
                    s.flush().await.unwrap();
                    tokio::task::yield_now().await;
                }
            }
        });
        addr
    }

    #[tokio::test]
    async fn keep_alive_answers_are_read_whole_even_when_split() {
        let a: &'static [u8] =
            b"HTTP/1.1 302 Found\r\nLocation: https://a.example/\r\nContent-Length: 5\r\n\r\nhello";
        let b: &'static [u8] = b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n";
        let addr = server(vec![a, b], 7).await;
        let mut c = Conn::connect(&addr).await.unwrap();
        let req = request("/x", &addr);
        assert_eq!(
            c.exchange(&req).await.unwrap(),
            Answer {
                status: 302,
                body_len: 5
            }
        );
        assert!(c.reusable());
        assert_eq!(
            c.exchange(&req).await.unwrap(),
            Answer {
                status: 404,
                body_len: 0
            }
        );
    }

    #[tokio::test]
    async fn connection_close_is_noticed() {
        let a: &'static [u8] =
            b"HTTP/1.1 302 Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
        let addr = server(vec![a], 1024).await;
        let mut c = Conn::connect(&addr).await.unwrap();
        let answer = c.exchange(&request("/x", &addr)).await.unwrap();
        assert_eq!(answer.status, 302);
        assert!(!c.reusable());
    }

    #[tokio::test]
    async fn chunked_and_truncated_answers_are_errors() {
        let chunked: &'static [u8] =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        let addr = server(vec![chunked], 1024).await;
        let mut c = Conn::connect(&addr).await.unwrap();
        let err = c.exchange(&request("/x", &addr)).await.unwrap_err();
        assert!(err.to_string().contains("Transfer-Encoding"), "{err}");

        let short: &'static [u8] = b"HTTP/1.1 302 Found\r\nContent-Length: 10\r\n\r\nabc";
        let addr = server(vec![short], 1024).await;
        let mut c = Conn::connect(&addr).await.unwrap();
        let err = c.exchange(&request("/x", &addr)).await.unwrap_err();
        assert!(err.to_string().contains("inside a response body"), "{err}");
    }
}
