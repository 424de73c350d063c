//! One HTTPS connection's handshake: bounded in time, counted by result, never a panic.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::metrics::{Handshake, Metrics};

/// A client that has not finished its handshake by then is dropped, so stalled or malicious
/// clients cannot pin tasks and sockets.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// rustls' error when the resolver had no certificate (it sends the client an alert).
const NO_CERTIFICATE: &str = "no server certificate chain resolved";

/// Runs the server side of the handshake. `None` when it failed or timed out (logged at debug:
/// scanners and broken clients are routine on a public port); rustls has then already sent the
/// client its alert where one applies.
pub async fn accept(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
    metrics: &Metrics,
) -> Option<TlsStream<TcpStream>> {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => {
            metrics.tls_handshake(Handshake::Ok);
            Some(tls)
        }
        Ok(Err(error)) => {
            let result = classify(&error);
            metrics.tls_handshake(result);
            tracing::debug!(%peer, %error, ?result, "TLS handshake failed");
            None
        }
        Err(_) => {
            metrics.tls_handshake(Handshake::Timeout);
            tracing::debug!(%peer, "TLS handshake timed out");
            None
        }
    }
}

/// An unknown server name (or none, without a fallback certificate) apart from every other
/// failure. tokio-rustls hands rustls' error back inside the `io::Error`.
fn classify(error: &std::io::Error) -> Handshake {
    match error
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::General(message)) if message == NO_CERTIFICATE => {
            Handshake::UnknownName
        }
        _ => Handshake::Failed,
    }
}
