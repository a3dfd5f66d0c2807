//! The parsed form of one HL7 v2 message: segments, fields, repetitions, components and
//! subcomponents, every value already unescaped and decoded to Rust text.
//!
//! Numbering follows the standard: fields, repetitions, components and subcomponents are
//! 1-based, and in MSH field 1 is the field separator and field 2 the encoding characters.
//! An absent part reads as `""`; the HL7 explicit null `""` (two quote characters) is kept as
//! written, see [`is_null`].

/// The delimiters a message declares in MSH-1 and MSH-2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delimiters {
    pub field: char,
    pub component: char,
    pub repetition: char,
    /// None when MSH-2 declares no escape character.
    pub escape: Option<char>,
    pub subcomponent: char,
    /// The v2.7 truncation character (the fifth character of MSH-2), when declared.
    pub truncation: Option<char>,
}

impl Default for Delimiters {
    fn default() -> Self {
        Delimiters { field: '|', component: '^', repetition: '~', escape: Some('\\'), subcomponent: '&', truncation: None }
    }
}

impl Delimiters {
    /// MSH-2 as declared, e.g. `^~\&` or `^~\&#`.
    pub fn encoding_characters(&self) -> String {
        let mut s = String::new();
        s.push(self.component);
        s.push(self.repetition);
        if let Some(escape) = self.escape {
            s.push(escape);
        }
        s.push(self.subcomponent);
        if let Some(truncation) = self.truncation {
            s.push(truncation);
        }
        s
    }
}

/// The character set a message was decoded from (MSH-18).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charset {
    Ascii,
    Latin1,
    Utf8,
}

/// One whole message.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub(crate) segments: Vec<Segment>,
    pub(crate) delimiters: Delimiters,
    pub(crate) charset: Charset,
}

/// One segment; `sequence` counts the segments of the same name (the first OBX is 1).
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub(crate) name: String,
    pub(crate) sequence: usize,
    /// `fields[0]` is field 1.
    pub(crate) fields: Vec<Field>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Field {
    pub(crate) repetitions: Vec<Repetition>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Repetition {
    pub(crate) components: Vec<Component>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Component {
    pub(crate) subcomponents: Vec<String>,
}

/// Where in a message a value is (ERR-2, "ERL"): 0 for a part not named.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Location {
    pub segment: String,
    pub sequence: usize,
    pub field: usize,
    pub repetition: usize,
    pub component: usize,
    pub subcomponent: usize,
}

impl Location {
    /// A field of a segment (first repetition).
    pub fn field(segment: &str, sequence: usize, field: usize) -> Location {
        Location { segment: segment.into(), sequence, field, repetition: 1, ..Location::default() }
    }

    /// The same location narrowed to a component.
    pub fn with_component(mut self, component: usize) -> Location {
        self.component = component;
        self
    }

    /// The same location narrowed to a repetition.
    pub fn with_repetition(mut self, repetition: usize) -> Location {
        self.repetition = repetition;
        self
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.segment)?;
        if self.sequence > 1 {
            write!(f, "[{}]", self.sequence)?;
        }
        if self.field > 0 {
            write!(f, "-{}", self.field)?;
            if self.repetition > 1 {
                write!(f, "({})", self.repetition)?;
            }
            if self.component > 0 {
                write!(f, ".{}", self.component)?;
                if self.subcomponent > 0 {
                    write!(f, ".{}", self.subcomponent)?;
                }
            }
        }
        Ok(())
    }
}

/// True for the HL7 explicit null `""` ("delete this value").
pub fn is_null(value: &str) -> bool {
    value == "\"\""
}

impl Message {
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// The first segment with this name.
    pub fn segment(&self, name: &str) -> Option<&Segment> {
        self.segments.iter().find(|s| s.name == name)
    }

    /// Every segment with this name, in message order.
    pub fn segments_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Segment> + 'a {
        self.segments.iter().filter(move |s| s.name == name)
    }

    /// The MSH segment (a parsed message always starts with one).
    pub fn msh(&self) -> &Segment {
        &self.segments[0]
    }

    pub fn delimiters(&self) -> Delimiters {
        self.delimiters
    }

    pub fn charset(&self) -> Charset {
        self.charset
    }

    /// MSH-9.1, e.g. `ORU`.
    pub fn message_code(&self) -> &str {
        self.msh().component(9, 1)
    }

    /// MSH-9.2, e.g. `R01`.
    pub fn trigger_event(&self) -> &str {
        self.msh().component(9, 2)
    }

    /// MSH-10.
    pub fn control_id(&self) -> &str {
        self.msh().value(10)
    }

    /// MSH-12.1, e.g. `2.5.1`.
    pub fn version(&self) -> &str {
        self.msh().component(12, 1)
    }
}

impl Segment {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// 1 for the first segment of this name in the message, 2 for the second, ...
    pub fn sequence(&self) -> usize {
        self.sequence
    }

    /// Number of fields present (trailing empty ones may be missing).
    pub fn field_count(&self) -> usize {
        self.fields.len()
    }

    /// Field `n` (1-based), if present.
    pub fn field(&self, n: usize) -> Option<&Field> {
        n.checked_sub(1).and_then(|i| self.fields.get(i))
    }

    /// Every repetition of field `n` (empty when the field is absent or empty).
    pub fn repetitions(&self, n: usize) -> &[Repetition] {
        match self.field(n) {
            Some(field) if !field.is_empty() => &field.repetitions,
            _ => &[],
        }
    }

    /// The first repetition of field `n`, when it has a value.
    pub fn first(&self, n: usize) -> Option<&Repetition> {
        self.repetitions(n).first()
    }

    /// Field `n`, first repetition, first component, first subcomponent.
    pub fn value(&self, n: usize) -> &str {
        self.component(n, 1)
    }

    /// Field `n`, first repetition, component `c`, first subcomponent.
    pub fn component(&self, n: usize, c: usize) -> &str {
        self.first(n).map(|r| r.component(c)).unwrap_or("")
    }

    /// The location of field `n` of this segment, for error reports.
    pub fn location(&self, n: usize) -> Location {
        Location::field(&self.name, self.sequence, n)
    }
}

impl Field {
    pub fn repetitions(&self) -> &[Repetition] {
        &self.repetitions
    }

    /// True when no repetition holds any text.
    pub fn is_empty(&self) -> bool {
        self.repetitions.iter().all(Repetition::is_empty)
    }
}

impl Repetition {
    pub fn components(&self) -> &[Component] {
        &self.components
    }

    /// Component `c` (1-based), first subcomponent; `""` if absent.
    pub fn component(&self, c: usize) -> &str {
        self.subcomponent(c, 1)
    }

    /// Component `c`, subcomponent `s` (both 1-based); `""` if absent.
    pub fn subcomponent(&self, c: usize, s: usize) -> &str {
        c.checked_sub(1)
            .and_then(|i| self.components.get(i))
            .and_then(|comp| s.checked_sub(1).and_then(|j| comp.subcomponents.get(j)))
            .map(String::as_str)
            .unwrap_or("")
    }

    /// Every subcomponent of component `c` (empty if absent).
    pub fn subcomponents(&self, c: usize) -> &[String] {
        c.checked_sub(1).and_then(|i| self.components.get(i)).map(|comp| comp.subcomponents.as_slice()).unwrap_or(&[])
    }

    /// True when no component holds any text.
    pub fn is_empty(&self) -> bool {
        self.components.iter().all(|c| c.subcomponents.iter().all(String::is_empty))
    }
}

impl Component {
    pub fn subcomponents(&self) -> &[String] {
        &self.subcomponents
    }
}
