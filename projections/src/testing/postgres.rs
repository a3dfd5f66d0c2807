//! PostgreSQL test server (filled in by the postgres work).
pub struct PostgresServer;
