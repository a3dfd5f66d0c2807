//! The rule every test with an external peer follows, and the free port it listens on.

use std::net::{Ipv4Addr, TcpListener};

/// Says why a test cannot run: prints `skipped: <why>` and gives None, or panics when
/// `TESSERA_REQUIRE_PEERS=1` asks for every peer to be there.
pub fn skip<T>(why: &str) -> Option<T> {
    if std::env::var("TESSERA_REQUIRE_PEERS").as_deref() == Ok("1") {
        panic!("TESSERA_REQUIRE_PEERS=1 but {why}");
    }
    eprintln!("skipped: {why}");
    None
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("bind a free port")
        .port()
}
