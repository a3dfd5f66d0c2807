//! InfluxDB test server (filled in by the tsdb work).
pub struct InfluxServer;
