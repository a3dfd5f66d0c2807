//! Statistics of a series of values, with the definitions the time-series database uses
//! (sample standard deviation and variance, median averaging the two middle values), so that
//! `$stats` answers the same from either source.

/// The supported codes of http://hl7.org/fhir/observation-statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Statistic {
    Average,
    Maximum,
    Minimum,
    Count,
    Median,
    StdDev,
    Sum,
    Variance,
}

impl Statistic {
    pub const ALL: [Statistic; 8] = [
        Statistic::Average,
        Statistic::Maximum,
        Statistic::Minimum,
        Statistic::Count,
        Statistic::Median,
        Statistic::StdDev,
        Statistic::Sum,
        Statistic::Variance,
    ];

    /// The code in http://hl7.org/fhir/observation-statistics.
    pub fn code(self) -> &'static str {
        match self {
            Statistic::Average => "average",
            Statistic::Maximum => "maximum",
            Statistic::Minimum => "minimum",
            Statistic::Count => "count",
            Statistic::Median => "median",
            Statistic::StdDev => "std-dev",
            Statistic::Sum => "sum",
            Statistic::Variance => "variance",
        }
    }

    pub fn display(self) -> &'static str {
        match self {
            Statistic::Average => "Average",
            Statistic::Maximum => "Maximum",
            Statistic::Minimum => "Minimum",
            Statistic::Count => "Count",
            Statistic::Median => "Median",
            Statistic::StdDev => "Standard Deviation",
            Statistic::Sum => "Sum",
            Statistic::Variance => "Variance",
        }
    }

    pub fn from_code(code: &str) -> Option<Statistic> {
        Statistic::ALL.into_iter().find(|s| s.code() == code)
    }
}

/// One computed statistic; `value` is None where it is undefined (no values, or a deviation
/// of fewer than two).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StatisticValue {
    pub statistic: Statistic,
    pub value: Option<f64>,
}

/// Computes `statistics` over `values`.
pub fn compute_statistics(values: &[f64], statistics: &[Statistic]) -> Vec<StatisticValue> {
    let n = values.len() as f64;
    let sum: f64 = values.iter().sum();
    let mean = (!values.is_empty()).then(|| sum / n);
    let variance = mean.filter(|_| values.len() > 1).map(|m| values.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (n - 1.0));
    statistics
        .iter()
        .map(|&statistic| {
            let value = match statistic {
                Statistic::Average => mean,
                Statistic::Maximum => values.iter().copied().reduce(f64::max),
                Statistic::Minimum => values.iter().copied().reduce(f64::min),
                Statistic::Count => Some(n),
                Statistic::Sum => Some(sum),
                Statistic::Median => median(values),
                Statistic::StdDev => variance.map(f64::sqrt),
                Statistic::Variance => variance,
            };
            StatisticValue { statistic, value }
        })
        .collect()
}

fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    match sorted.len() {
        0 => None,
        len if len % 2 == 1 => Some(sorted[mid]),
        _ => Some((sorted[mid - 1] + sorted[mid]) / 2.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistics_match_hand_computed_values() {
        let values = [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0];
        let got: Vec<_> = compute_statistics(&values, &Statistic::ALL).into_iter().map(|s| s.value.unwrap()).collect();
        // mean 5, sum of squares 32, sample variance 32/7.
        assert_eq!(got[..5], [5.0, 9.0, 2.0, 8.0, 4.5]);
        assert!((got[5] - (32.0f64 / 7.0).sqrt()).abs() < 1e-12);
        assert_eq!(got[6], 40.0);
        assert!((got[7] - 32.0 / 7.0).abs() < 1e-12);
    }

    #[test]
    fn undefined_statistics_are_none() {
        let one = compute_statistics(&[3.0], &[Statistic::StdDev, Statistic::Median, Statistic::Count]);
        assert_eq!(one.iter().map(|s| s.value).collect::<Vec<_>>(), vec![None, Some(3.0), Some(1.0)]);
        let none = compute_statistics(&[], &[Statistic::Average, Statistic::Count]);
        assert_eq!(none.iter().map(|s| s.value).collect::<Vec<_>>(), vec![None, Some(0.0)]);
    }
}

/// A `$stats` question: statistics of one vital sign of one patient over `[start, end)`,
/// either as one window or in windows of `window` aligned to the Unix epoch.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesQuery {
    /// The Patient's logical id.
    pub patient_id: String,
    pub kind: crate::VitalSign,
    pub start: time::OffsetDateTime,
    pub end: time::OffsetDateTime,
    pub window: Option<std::time::Duration>,
    pub statistics: Vec<Statistic>,
}

/// The statistics of one window. Without a window there is exactly one, `[start, end)`,
/// even when it holds no values; with windows, only those holding values are returned, in
/// time order.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowStats {
    pub start: time::OffsetDateTime,
    pub end: time::OffsetDateTime,
    pub values: Vec<StatisticValue>,
}

/// Answers `query` from the store's Observations (when no time-series database is
/// configured).
pub async fn series_from_store(store: &dyn fhir_store::ResourceStore, query: &SeriesQuery) -> Result<Vec<WindowStats>, crate::ProjectionError> {
    let _ = (store, query);
    unimplemented!("filled in by the $stats work")
}
