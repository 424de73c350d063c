//! Loopback ports for programs that must be told their port before they start (pebble,
//! challtestsrv, a proxy whose HTTP port pebble validates, a Postgres restarted in place).
//!
//! Such a port cannot be held open until the program binds it, so it is chosen below the
//! kernel's ephemeral range: a port the kernel hands to `bind(0)` or to an outgoing connection
//! (the tests make thousands) could otherwise be taken between the choice and the program's
//! bind, which once made pebble exit with "address already in use" in CI. A process-wide
//! counter keeps the tests of one binary, which run in parallel, apart; the random start keeps
//! two test processes apart.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// Where the kernel's ephemeral ports start (Linux default when the file cannot be read).
fn ephemeral_low() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768)
}

/// A loopback port below the ephemeral range that is free for TCP and UDP right now.
pub fn free_port() -> u16 {
    static NEXT: OnceLock<AtomicU32> = OnceLock::new();
    let high = u32::from(ephemeral_low());
    let low = (high / 2).max(10_000);
    let span = high.saturating_sub(low).max(1);
    let next = NEXT.get_or_init(|| AtomicU32::new(rand::random::<u32>() % span));
    for _ in 0..span {
        let port = (low + next.fetch_add(1, Ordering::Relaxed) % span) as u16;
        let tcp = std::net::TcpListener::bind(("127.0.0.1", port));
        let udp = std::net::UdpSocket::bind(("127.0.0.1", port));
        if tcp.is_ok() && udp.is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {low}..{high}");
}
