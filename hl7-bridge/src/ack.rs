//! Acknowledgements: original mode (AA/AE/AR) and enhanced mode (CA/CE/CR, chosen by MSH-15
//! and MSH-16), with an ERR segment per error (HL7 table 0357 code and location), built in
//! the inbound message's delimiters, version and character set, with sending and receiving
//! application and facility swapped.

use crate::error::Hl7Error;
use crate::message::{Charset, Delimiters, Location};
use crate::parse::{charset_named, encode_escapes, encode_text, RawHeader};

/// MSA-1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum AckCode {
    /// Application accept / error / reject (original mode, or the application ACK).
    AA,
    AE,
    AR,
    /// Commit accept / error / reject (enhanced mode accept ACK).
    CA,
    CE,
    CR,
}

impl AckCode {
    pub fn as_str(self) -> &'static str {
        match self {
            AckCode::AA => "AA",
            AckCode::AE => "AE",
            AckCode::AR => "AR",
            AckCode::CA => "CA",
            AckCode::CE => "CE",
            AckCode::CR => "CR",
        }
    }

    /// True for AA and CA.
    pub fn is_accept(self) -> bool {
        matches!(self, AckCode::AA | AckCode::CA)
    }
}

/// What happened to a message, before it is expressed in the sender's acknowledgement mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Accepted,
    /// Content error: the sender may fix and resend (AE/CE).
    Error,
    /// The message as a whole is refused (AR/CR).
    Rejected,
}

/// The acknowledgement mode the sender asked for and the reply it gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckMode {
    /// MSH-15 and MSH-16 empty: one application ACK, always.
    Original,
    /// Enhanced mode with the MSH-15 (accept) and MSH-16 (application) conditions.
    Enhanced { accept: Condition, application: Condition },
}

/// Table 0155: when an acknowledgement is wanted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    Always,
    Never,
    ErrorOnly,
    SuccessOnly,
}

impl Condition {
    fn parse(value: &str) -> Option<Condition> {
        match value.trim() {
            "AL" => Some(Condition::Always),
            "NE" => Some(Condition::Never),
            "ER" => Some(Condition::ErrorOnly),
            "SU" => Some(Condition::SuccessOnly),
            _ => None,
        }
    }

    fn wants(self, verdict: Verdict) -> bool {
        match self {
            Condition::Always => true,
            Condition::Never => false,
            Condition::ErrorOnly => verdict != Verdict::Accepted,
            Condition::SuccessOnly => verdict == Verdict::Accepted,
        }
    }
}

impl AckMode {
    /// Enhanced mode when MSH-15 or MSH-16 holds a table-0155 value; an empty one of the two
    /// means "always" for MSH-15 and "never" for MSH-16 in that mode.
    pub fn of(header: &RawHeader) -> AckMode {
        let accept = Condition::parse(&header.accept_ack_type);
        let application = Condition::parse(&header.application_ack_type);
        if accept.is_none() && application.is_none() {
            return AckMode::Original;
        }
        AckMode::Enhanced { accept: accept.unwrap_or(Condition::Always), application: application.unwrap_or(Condition::Never) }
    }

    /// The MSA-1 code to answer `verdict` with on this connection, or None when the sender
    /// asked for no acknowledgement in this case. Tessera processes a message completely
    /// before replying, so in enhanced mode the accept ACK already reflects the commit; when
    /// only an application ACK is wanted, it is sent inline instead.
    pub fn reply(self, verdict: Verdict) -> Option<AckCode> {
        let original = match verdict {
            Verdict::Accepted => AckCode::AA,
            Verdict::Error => AckCode::AE,
            Verdict::Rejected => AckCode::AR,
        };
        match self {
            AckMode::Original => Some(original),
            AckMode::Enhanced { accept, application } => {
                if accept.wants(verdict) {
                    Some(match verdict {
                        Verdict::Accepted => AckCode::CA,
                        Verdict::Error => AckCode::CE,
                        Verdict::Rejected => AckCode::CR,
                    })
                } else if application.wants(verdict) {
                    Some(original)
                } else {
                    None
                }
            }
        }
    }
}

/// Builds the ACK message for `header` (None: the input had no readable MSH; defaults are
/// used and MSA-2 stays empty). `now` is the HL7 timestamp for MSH-7, `control_id` the ACK's
/// own MSH-10.
pub fn build_ack(header: Option<&RawHeader>, code: AckCode, errors: &[Hl7Error], now: &str, control_id: &str) -> Vec<u8> {
    let fallback = RawHeader { field_separator: '|', encoding_characters: "^~\\&".into(), ..RawHeader::default() };
    let h = header.unwrap_or(&fallback);
    // The delimiters the parser accepts for the inbound message, or the standard ones.
    let d = h.delimiters.unwrap_or_default();
    let f = d.field;
    let c = d.component;
    let version = if h.version.trim().is_empty() { "2.5.1" } else { h.version.as_str() };
    let processing = if h.processing_id.is_empty() { "P" } else { h.processing_id.as_str() };
    let trigger = &h.trigger_event;
    let esc = |text: &str| encode_escapes(text, &d);

    let mut msh = format!(
        "MSH{f}{enc}{f}{ra}{f}{rf}{f}{sa}{f}{sf}{f}{now}{f}{f}ACK{c}{trigger}{c}ACK{f}{id}{f}{processing}{f}{version}",
        enc = d.encoding_characters(),
        ra = h.receiving_application,
        rf = h.receiving_facility,
        sa = h.sending_application,
        sf = h.sending_facility,
        id = esc(control_id),
    );
    if !h.character_set.is_empty() {
        msh.push_str(&format!("{f}{f}{f}{f}{f}{f}{}", h.character_set));
    }
    let old_style = version_before(version, (2, 5));
    let mut segments = vec![msh];
    let mut msa = format!("MSA{f}{}{f}{}", code.as_str(), h.control_id);
    if old_style {
        if let Some(first) = errors.first() {
            msa.push_str(&format!("{f}{}", esc(&first.message)));
        }
    }
    segments.push(msa);
    for error in errors {
        segments.push(err_segment(error, &d, old_style));
    }
    let text = segments.join("\r") + "\r";
    // In the character set the inbound MSH-18 declared (UTF-8 when none or unknown).
    encode_text(&text, charset_named(&h.character_set).unwrap_or(Charset::Utf8))
}

/// ERR: v2.5+ puts the location in ERR-2, the table-0357 code in ERR-3, the severity in
/// ERR-4 and the text in ERR-8; earlier versions use ERR-1 (ELD).
fn err_segment(error: &Hl7Error, d: &Delimiters, old_style: bool) -> String {
    let (f, c, s) = (d.field, d.component, d.subcomponent);
    let esc = |text: &str| encode_escapes(text, d);
    let location = error.location.clone().unwrap_or_default();
    let code = error.code.code();
    let text = esc(error.code.text());
    if old_style {
        return format!(
            "ERR{f}{seg}{c}{seq}{c}{field}{c}{code}{s}{text}{s}HL70357",
            seg = esc(&location.segment),
            seq = number(location.sequence),
            field = number(location.field),
        );
    }
    format!(
        "ERR{f}{f}{erl}{f}{code}{c}{text}{c}HL70357{f}E{f}{f}{f}{f}{message}",
        erl = erl(&location, d),
        message = esc(&error.message),
    )
}

/// ERR-2 (ERL): segment ^ sequence ^ field ^ repetition ^ component ^ subcomponent, empty
/// parts left out at the end.
fn erl(location: &Location, d: &Delimiters) -> String {
    if location.segment.is_empty() && location.sequence == 0 {
        return String::new();
    }
    let parts = [
        encode_escapes(&location.segment, d),
        number(location.sequence),
        number(location.field),
        number(location.repetition),
        number(location.component),
        number(location.subcomponent),
    ];
    let used = parts.iter().rposition(|p| !p.is_empty()).map_or(0, |i| i + 1);
    parts[..used].join(&d.component.to_string())
}

fn number(n: usize) -> String {
    if n == 0 {
        String::new()
    } else {
        n.to_string()
    }
}

/// `version` (e.g. `2.3.1`) is older than `(major, minor)`; unreadable versions count as new.
fn version_before(version: &str, (major, minor): (u32, u32)) -> bool {
    let mut parts = version.trim().split('.').map(|p| p.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(a), Some(b)) => (a, b) < (major, minor),
        _ => false,
    }
}
