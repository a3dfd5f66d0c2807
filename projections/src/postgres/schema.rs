//! The projection's schema: the sqlx migrations that own the tables, the stable row ids, and
//! the monthly partitions of `measurements` (names, bounds, creation).

use std::borrow::Cow;

use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AssertSqlSafe, PgConnection, SqlSafeStr};
use time::{Month as CalendarMonth, OffsetDateTime, UtcOffset};
use uuid::Uuid;

use crate::ProjectionError;

/// The migrations, in order. A released file is never edited: changes come as a new file.
const MIGRATIONS: &[(i64, &str, &str)] = &[(1, "schema", include_str!("migrations/0001_schema.sql"))];

pub(crate) fn migrator() -> Migrator {
    Migrator::with_migrations(
        MIGRATIONS
            .iter()
            .map(|&(version, description, sql)| {
                Migration::new(version, Cow::Borrowed(description), MigrationType::Simple, sql.into_sql_str(), false)
            })
            .collect(),
    )
}

/// The namespace of the UUIDv5 row ids. Fixed for ever: the ids are stored and joined on.
const ROW_NAMESPACE: Uuid = Uuid::from_u128(0x6a1f_0c2e_93d4_5b7a_8e61_d2c4_0f3b_9a57);

/// The `id` of the row a resource projects to (`patients.id`, `devices.id`, and the
/// `patient_id`/`device_id` columns pointing at them): the UUIDv5 of `"{type}/{id}"`.
pub(crate) fn row_uuid(resource_type: &str, id: &str) -> Uuid {
    Uuid::new_v5(&ROW_NAMESPACE, format!("{resource_type}/{id}").as_bytes())
}

/// A calendar month in UTC: one partition of `measurements`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Month {
    pub year: i32,
    /// 1 to 12.
    pub month: u8,
}

impl Month {
    pub fn of(at: OffsetDateTime) -> Month {
        let utc = at.to_offset(UtcOffset::UTC);
        Month { year: utc.year(), month: u8::from(utc.month()) }
    }

    pub fn next(self) -> Month {
        if self.month >= 12 {
            Month { year: self.year + 1, month: 1 }
        } else {
            Month { year: self.year, month: self.month + 1 }
        }
    }

    /// `measurements_y2026m03`.
    pub fn partition_name(self) -> String {
        format!("measurements_y{:04}m{:02}", self.year, self.month)
    }

    /// The first instant of the month, as a PostgreSQL timestamptz literal.
    fn start_literal(self) -> String {
        format!("{:04}-{:02}-01 00:00:00+00", self.year, self.month)
    }

    /// Whether PostgreSQL can hold the month (timestamptz reaches back to 4713 BC) and our
    /// partition names stay well formed.
    fn representable(self) -> bool {
        (0..=9999).contains(&self.year) && CalendarMonth::try_from(self.month).is_ok()
    }
}

/// Creates the partition of `month` unless it exists. Runs inside the caller's transaction.
pub(crate) async fn create_partition(connection: &mut PgConnection, month: Month) -> Result<(), ProjectionError> {
    if !month.representable() {
        return Err(ProjectionError::Config(format!("no partition can hold {}-{:02}", month.year, month.month)));
    }
    // The name and bounds are built from two integers, so the text is safe to run.
    let sql = format!(
        "create table if not exists {} partition of measurements for values from ('{}') to ('{}')",
        month.partition_name(),
        month.start_literal(),
        month.next().start_literal()
    );
    sqlx::query(AssertSqlSafe(sql)).execute(connection).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn months_are_utc_and_roll_over_the_year() {
        assert_eq!(Month::of(datetime!(2026-03-31 23:30 -02:00)), Month { year: 2026, month: 4 });
        assert_eq!(Month::of(datetime!(2026-12-05 10:00 UTC)).next(), Month { year: 2027, month: 1 });
        assert_eq!(Month { year: 2019, month: 7 }.partition_name(), "measurements_y2019m07");
        assert_eq!(Month { year: 2026, month: 12 }.next().start_literal(), "2027-01-01 00:00:00+00");
    }

    #[test]
    fn row_ids_are_stable_and_typed() {
        assert_eq!(row_uuid("Patient", "p1"), row_uuid("Patient", "p1"));
        assert_ne!(row_uuid("Patient", "p1"), row_uuid("Device", "p1"));
        assert_eq!(row_uuid("Patient", "p1").get_version_num(), 5);
    }
}
