//! A real PostgreSQL for tests: `initdb` into a temporary directory, `pg_ctl` on a free
//! loopback port, a fresh database per test, stop and start again at will (fault tests), and
//! an immediate shutdown plus removal of the directory when dropped.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::{Connection, Executor};

use super::{free_port, peer_missing};

/// One PostgreSQL server of the test's own.
pub struct PostgresServer {
    bin: PathBuf,
    /// Holds `data/` (the cluster), `socket/` and `server.log`; removed on drop.
    dir: PathBuf,
    port: u16,
    /// initdb refuses to run as root: the Debian package's `postgres` user runs the server.
    as_postgres_user: bool,
}

impl PostgresServer {
    /// Creates and starts a cluster; None (after `peer_missing`) when PostgreSQL is not
    /// installed. Panics when an installed PostgreSQL fails to start: that is a broken test
    /// machine, not a skipped peer.
    pub fn start() -> Option<PostgresServer> {
        let Some(bin) = find_bin_dir() else {
            peer_missing("PostgreSQL not installed (initdb)");
            return None;
        };
        let as_postgres_user = is_root();
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!("tessera-pg-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed)));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("socket")).expect("create the postgres test directory");
        let mut server = PostgresServer { bin, dir, port: 0, as_postgres_user };
        if as_postgres_user {
            let chown = Command::new("chown").arg("-R").arg("postgres:postgres").arg(&server.dir).output();
            assert!(chown.is_ok_and(|o| o.status.success()), "chown {} to postgres", server.dir.display());
        }
        let data = server.data_dir();
        let initdb = server.run(
            "initdb",
            &["-D", path_str(&data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync", "--no-instructions"],
        );
        assert!(initdb.status.success(), "initdb failed: {}", String::from_utf8_lossy(&initdb.stderr));
        // A port found free can be taken by someone else before the server binds it: retry
        // with another.
        let mut last_error = String::new();
        for _ in 0..5 {
            server.port = free_port();
            match server.try_start() {
                Ok(()) => return Some(server),
                Err(error) => last_error = error,
            }
        }
        panic!("postgres did not start: {last_error}");
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        self.url_of("postgres")
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Creates a fresh database and returns its URL.
    pub async fn create_database(&self, name: &str) -> String {
        let mut connection = sqlx::PgConnection::connect(&self.url()).await.expect("connect to the test postgres");
        let quoted = format!("\"{}\"", name.replace('"', "\"\""));
        connection
            .execute(sqlx::AssertSqlSafe(format!("create database {quoted}")))
            .await
            .unwrap_or_else(|e| panic!("create database {name}: {e}"));
        let _ = connection.close().await;
        self.url_of(name)
    }

    /// Stops the server (`pg_ctl stop -m fast`), returning once it is down.
    pub fn stop(&self) {
        let out = self.pg_ctl(&["stop", "-m", "fast", "-w", "-t", "60"]);
        assert!(out.status.success(), "pg_ctl stop failed: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Starts the stopped server again, same directory and port, returning once it accepts
    /// connections.
    pub fn start_again(&self) {
        if let Err(error) = self.try_start() {
            panic!("postgres did not start again: {error}");
        }
    }

    fn try_start(&self) -> Result<(), String> {
        let options = format!("-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off", self.port, path_str(&self.dir.join("socket")));
        let log = self.dir.join("server.log");
        let out = self.pg_ctl(&["start", "-w", "-t", "60", "-l", path_str(&log), "-o", &options]);
        if out.status.success() {
            return Ok(());
        }
        let log = std::fs::read_to_string(&log).unwrap_or_default();
        // A failed start may leave a half-started postmaster behind.
        let _ = self.pg_ctl(&["stop", "-m", "immediate", "-w"]);
        Err(format!("{}{}\n{log}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    }

    fn url_of(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn pg_ctl(&self, args: &[&str]) -> Output {
        let data = self.data_dir();
        let mut all = vec!["-D", path_str(&data)];
        all.extend_from_slice(args);
        self.run("pg_ctl", &all)
    }

    /// Runs one of the server's programs, as `postgres` when we are root.
    fn run(&self, program: &str, args: &[&str]) -> Output {
        let program = self.bin.join(program);
        let mut command = if self.as_postgres_user {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(&program);
            command
        } else {
            Command::new(&program)
        };
        command.args(args).output().unwrap_or_else(|e| panic!("run {}: {e}", program.display()))
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        if self.data_dir().join("postmaster.pid").exists() {
            let _ = self.pg_ctl(&["stop", "-m", "immediate", "-w"]);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The `bin` directory of the newest /usr/lib/postgresql/<version>, else the directory on
/// PATH holding `initdb`.
fn find_bin_dir() -> Option<PathBuf> {
    let installed = std::fs::read_dir("/usr/lib/postgresql").into_iter().flatten().flatten().filter_map(|entry| {
        let version: u32 = entry.file_name().to_str()?.parse().ok()?;
        let bin = entry.path().join("bin");
        bin.join("initdb").is_file().then_some((version, bin))
    });
    if let Some((_, bin)) = installed.max_by_key(|(version, _)| *version) {
        return Some(bin);
    }
    std::env::split_paths(&std::env::var_os("PATH")?).find(|dir| dir.join("initdb").is_file())
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}
