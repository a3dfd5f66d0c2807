//! Real database servers for tests: PostgreSQL and InfluxDB 1.x started from the Debian
//! packages' binaries in a temporary directory on a free port, stopped and restarted at will
//! (fault tests), and killed when dropped. A missing binary means the test is skipped — or,
//! with `TESSERA_REQUIRE_PEERS=1`, fails.

mod influx;
mod postgres;

pub use influx::InfluxServer;
pub use postgres::PostgresServer;

/// Called when a peer's binaries are not installed: prints `skipped: <why>` and returns, or
/// panics when peers are required (CI).
pub fn peer_missing(why: &str) {
    if std::env::var("TESSERA_REQUIRE_PEERS").is_ok_and(|v| v == "1") {
        panic!("required test peer missing: {why} (run scripts/install-test-deps.sh)");
    }
    println!("skipped: {why}");
}

/// A free TCP port on the loopback interface.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}
