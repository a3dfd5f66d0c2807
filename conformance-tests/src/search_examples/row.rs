//! One row of the search table: a request and its hand-written expected outcome, with const
//! builders so the table reads as data.

/// What the table says about the Bundle's `total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Total {
    /// When present it must equal the number of matches found across all pages.
    Consistent,
    Exactly(u64),
    Absent,
}

/// A search and what it must return. Resources are written `Type/id`.
#[derive(Debug, Clone, Copy)]
pub struct Row {
    pub what: &'static str,
    /// `GET Patient?name=x`, `POST Patient/_search?name=x` (the query goes in a form body) or
    /// `GET ?_type=Patient&...` (system level); paths are relative to the FHIR base and query
    /// values are written unencoded.
    pub request: &'static str,
    /// The status expected; anything but 200 must come with an OperationOutcome.
    pub status: u16,
    /// Every entry with search.mode `match`, each once.
    pub matches: &'static [&'static str],
    /// Every entry with search.mode `include`.
    pub included: &'static [&'static str],
    /// The matches must come in exactly the listed order.
    pub ordered: bool,
    pub total: Total,
    /// Text the error OperationOutcome must contain (case-insensitive).
    pub outcome_mentions: Option<&'static str>,
    /// Sends `Prefer: handling=strict`.
    pub strict: bool,
}

/// A search expected to succeed with exactly `matches`.
pub const fn found(what: &'static str, request: &'static str, matches: &'static [&'static str]) -> Row {
    Row {
        what,
        request,
        status: 200,
        matches,
        included: &[],
        ordered: false,
        total: Total::Consistent,
        outcome_mentions: None,
        strict: false,
    }
}

/// A search expected to fail with `status` and an OperationOutcome.
pub const fn refused(what: &'static str, request: &'static str, status: u16) -> Row {
    Row { status, ..found(what, request, &[]) }
}

impl Row {
    pub const fn including(self, included: &'static [&'static str]) -> Row {
        Row { included, ..self }
    }

    pub const fn in_order(self) -> Row {
        Row { ordered: true, ..self }
    }

    pub const fn total(self, total: u64) -> Row {
        Row { total: Total::Exactly(total), ..self }
    }

    pub const fn without_total(self) -> Row {
        Row { total: Total::Absent, ..self }
    }

    pub const fn mentioning(self, text: &'static str) -> Row {
        Row { outcome_mentions: Some(text), ..self }
    }

    pub const fn strict(self) -> Row {
        Row { strict: true, ..self }
    }
}
