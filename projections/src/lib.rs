//! Projections: followers of the store's change feed that keep other databases in sync —
//! PostgreSQL relational tables for reporting and BI (`postgres/`) and vital-sign time
//! series in a line-protocol database such as InfluxDB (`tsdb/`).
//!
//! Every projection is driven by one `Follower`: it reads the feed from the projection's
//! durable checkpoint, hands contiguous batches to `Projection::apply` (which applies the
//! batch and advances the checkpoint together), and follows the feed for ever, backing off
//! while the target database is down. What a resource becomes in a projection is decided
//! once, purely, in `mapping.rs`.

mod alerts;
mod error;
mod follower;
mod mapping;
pub mod postgres;
mod state;
pub mod testing;
mod stats;
pub mod tsdb;
mod vitals;

pub use alerts::{AlertRule, AlertRules, Severity};
pub use error::ProjectionError;
pub use follower::{Follower, FollowerOptions, Progress, Projection, ProjectionStatus, StatusHandle};
pub use mapping::{project, DeviceRow, DeviceStatus, Measurement, PatientRow, Projected};
pub use state::{current_resources, ConsistencyReport, CurrentResource};
pub use stats::{compute_statistics, measured_observations, series_from_store, SeriesQuery, Statistic, StatisticValue, WindowStats};
pub use vitals::VitalSign;
