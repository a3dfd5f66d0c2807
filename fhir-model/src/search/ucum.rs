//! A small subset of UCUM: enough to bring the units clinical quantities are written in (mass,
//! length, volume, time, amount, pressure, temperature, rates and their ratios) to one canonical
//! unit, so that `70 kg` and `70000 g`, or `120 mm[Hg]` and `16 kPa`, are the same search value.
//!
//! A unit is parsed as UCUM's grammar has it (components joined by `.` and `/`, parentheses,
//! integer exponents, metric prefixes, `{annotations}` that mean nothing) and reduced to a
//! factor times powers of the base units g, m, s, mol and K. The canonical code is those powers
//! written out (`g`, `m`, `/s`, `g/m3`, `1` for a pure number) except that pressure is written
//! `Pa`. Units outside the subset have no canonical form; callers then keep the unit as written.

/// The UCUM code system URI.
pub(crate) const UCUM: &str = "http://unitsofmeasure.org";

/// The base units, in the order their powers are kept and written.
const BASES: [&str; 5] = ["g", "m", "s", "mol", "K"];

type Dims = [i32; 5];

const NONE: Dims = [0, 0, 0, 0, 0];
const MASS: Dims = [1, 0, 0, 0, 0];
const LENGTH: Dims = [0, 1, 0, 0, 0];
const TIME: Dims = [0, 0, 1, 0, 0];
const AMOUNT: Dims = [0, 0, 0, 1, 0];
const TEMPERATURE: Dims = [0, 0, 0, 0, 1];
const VOLUME: Dims = [0, 3, 0, 0, 0];
const PRESSURE: Dims = [1, -1, -2, 0, 0];
const FREQUENCY: Dims = [0, 0, -1, 0, 0];
const FORCE: Dims = [1, 1, -2, 0, 0];
const ENERGY: Dims = [1, 2, -2, 0, 0];
const POWER: Dims = [1, 2, -3, 0, 0];
const CATALYTIC: Dims = [0, 0, -1, 1, 0];

/// One unit atom: its symbol, whether metric prefixes apply, and its value in base units. Only
/// the temperature scales carry an offset (`K = value·factor + offset`).
struct Atom {
    symbol: &'static str,
    metric: bool,
    factor: f64,
    dims: Dims,
    offset: f64,
}

const fn atom(symbol: &'static str, metric: bool, factor: f64, dims: Dims) -> Atom {
    Atom {
        symbol,
        metric,
        factor,
        dims,
        offset: 0.0,
    }
}

/// Pressures in base units are g/(m·s²): one pascal is 1000 of them.
const PASCAL: f64 = 1000.0;
/// One joule in base units (g·m²/s²).
const JOULE: f64 = 1000.0;

static ATOMS: &[Atom] = &[
    atom("g", true, 1.0, MASS),
    atom("m", true, 1.0, LENGTH),
    atom("s", true, 1.0, TIME),
    atom("mol", true, 1.0, AMOUNT),
    atom("K", true, 1.0, TEMPERATURE),
    atom("L", true, 0.001, VOLUME),
    atom("l", true, 0.001, VOLUME),
    atom("Pa", true, PASCAL, PRESSURE),
    atom("bar", true, 1e5 * PASCAL, PRESSURE),
    atom("m[Hg]", true, 133_322.0 * PASCAL, PRESSURE),
    atom("m[H2O]", true, 9_806.65 * PASCAL, PRESSURE),
    atom("Hz", true, 1.0, FREQUENCY),
    atom("N", true, 1000.0, FORCE),
    atom("J", true, JOULE, ENERGY),
    atom("W", true, JOULE, POWER),
    atom("cal", true, 4.184 * JOULE, ENERGY),
    // The enzyme unit, µmol/min.
    atom("U", true, 1e-6 / 60.0, CATALYTIC),
    atom("kat", true, 1.0, CATALYTIC),
    atom("min", false, 60.0, TIME),
    atom("h", false, 3_600.0, TIME),
    atom("d", false, 86_400.0, TIME),
    atom("wk", false, 604_800.0, TIME),
    // The Julian year and month, which UCUM's `a` and `mo` are.
    atom("a", false, 31_557_600.0, TIME),
    atom("mo", false, 2_629_800.0, TIME),
    atom("[in_i]", false, 0.0254, LENGTH),
    atom("[ft_i]", false, 0.3048, LENGTH),
    atom("[yd_i]", false, 0.9144, LENGTH),
    atom("[mi_i]", false, 1_609.344, LENGTH),
    atom("[lb_av]", false, 453.592_37, MASS),
    atom("[oz_av]", false, 28.349_523_125, MASS),
    atom("%", false, 0.01, NONE),
    atom("10*", false, 10.0, NONE),
    atom("10^", false, 10.0, NONE),
    Atom {
        symbol: "Cel",
        metric: true,
        factor: 1.0,
        dims: TEMPERATURE,
        offset: 273.15,
    },
    Atom {
        symbol: "[degF]",
        metric: false,
        factor: 5.0 / 9.0,
        dims: TEMPERATURE,
        offset: 459.67 * 5.0 / 9.0,
    },
];

/// Metric prefixes, two-letter `da` first so that it wins over `d`.
static PREFIXES: &[(&str, f64)] = &[
    ("da", 1e1),
    ("Y", 1e24),
    ("Z", 1e21),
    ("E", 1e18),
    ("P", 1e15),
    ("T", 1e12),
    ("G", 1e9),
    ("M", 1e6),
    ("k", 1e3),
    ("h", 1e2),
    ("d", 1e-1),
    ("c", 1e-2),
    ("m", 1e-3),
    ("u", 1e-6),
    ("µ", 1e-6),
    ("n", 1e-9),
    ("p", 1e-12),
    ("f", 1e-15),
    ("a", 1e-18),
];

/// A unit reduced to the canonical one: `canonical value = value · scale + offset`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Canonical {
    pub(crate) code: String,
    scale: f64,
    offset: f64,
}

impl Canonical {
    /// `value` in the canonical unit, rounded to 12 significant digits so that the same amount
    /// written in two units converts to the same double (`1.495 kg` and `1495 g`).
    pub(crate) fn convert(&self, value: f64) -> f64 {
        round_significant(value * self.scale + self.offset)
    }
}

/// The canonical form of the UCUM unit `code`, or None when it is outside the subset or not
/// valid UCUM. The temperature scales with an offset (`Cel`, `[degF]`) convert only as a unit
/// on their own: in a ratio (`Cel/h`) they would mean a difference, which an offset gets wrong.
pub(crate) fn canonical(code: &str) -> Option<Canonical> {
    let mut parser = Parser {
        text: code,
        pos: 0,
        affine: false,
        components: 0,
    };
    let unit = parser.term()?;
    if parser.pos != code.len() {
        return None;
    }
    let offset = if parser.affine {
        // Only a lone temperature atom keeps its offset.
        if parser.components != 1 || unit.dims != TEMPERATURE {
            return None;
        }
        unit.offset
    } else {
        0.0
    };
    let (code, scale) = if unit.dims == PRESSURE {
        ("Pa".to_string(), unit.factor / PASCAL)
    } else {
        (write_dims(&unit.dims), unit.factor)
    };
    if !scale.is_finite() || scale == 0.0 {
        return None;
    }
    Some(Canonical {
        code,
        scale,
        offset,
    })
}

fn round_significant(value: f64) -> f64 {
    if value == 0.0 || !value.is_finite() {
        return value;
    }
    format!("{value:.11e}").parse().unwrap_or(value)
}

/// `g.m2/s2`-style text for powers of the base units: positive powers joined by `.`, then each
/// negative one after a `/`; `1` when there are none.
fn write_dims(dims: &Dims) -> String {
    let power = |name: &str, p: i32| {
        if p == 1 {
            name.to_string()
        } else {
            format!("{name}{p}")
        }
    };
    let numerator: Vec<String> = BASES
        .iter()
        .zip(dims)
        .filter(|(_, p)| **p > 0)
        .map(|(name, p)| power(name, *p))
        .collect();
    let denominator: String = BASES
        .iter()
        .zip(dims)
        .filter(|(_, p)| **p < 0)
        .map(|(name, p)| format!("/{}", power(name, -p)))
        .collect();
    if numerator.is_empty() && denominator.is_empty() {
        return "1".to_string();
    }
    numerator.join(".") + &denominator
}

#[derive(Debug, Clone, Copy)]
struct Unit {
    factor: f64,
    dims: Dims,
    offset: f64,
}

impl Unit {
    const ONE: Unit = Unit {
        factor: 1.0,
        dims: NONE,
        offset: 0.0,
    };

    fn times(self, other: Unit, sign: i32) -> Unit {
        let mut dims = self.dims;
        for (d, o) in dims.iter_mut().zip(other.dims) {
            *d += sign * o;
        }
        Unit {
            factor: if sign > 0 {
                self.factor * other.factor
            } else {
                self.factor / other.factor
            },
            dims,
            offset: self.offset + other.offset,
        }
    }

    fn pow(self, exponent: i32) -> Unit {
        Unit {
            factor: self.factor.powi(exponent),
            dims: self.dims.map(|d| d * exponent),
            offset: self.offset,
        }
    }
}

/// A recursive-descent parser over UCUM's `term := component (('.' | '/') component)*` with a
/// leading `/` allowed.
struct Parser<'a> {
    text: &'a str,
    pos: usize,
    /// Whether a temperature atom with an offset was seen.
    affine: bool,
    /// Components read, so that a lone atom can be told from a compound unit.
    components: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.text[self.pos..].chars().next()
    }

    fn term(&mut self) -> Option<Unit> {
        let mut unit = if self.peek() == Some('/') {
            Unit::ONE
        } else {
            self.component()?
        };
        while let Some(op @ ('.' | '/')) = self.peek() {
            self.pos += 1;
            let next = self.component()?;
            unit = unit.times(next, if op == '.' { 1 } else { -1 });
        }
        Some(unit)
    }

    fn component(&mut self) -> Option<Unit> {
        self.components += 1;
        if self.peek() == Some('(') {
            self.pos += 1;
            let inner = self.term()?;
            if self.peek() != Some(')') {
                return None;
            }
            self.pos += 1;
            self.skip_annotation()?;
            return Some(inner);
        }
        // A symbol runs to the next operator or parenthesis; brackets may hold anything but
        // `]`, and an annotation anything but `}`.
        let start = self.pos;
        let mut symbol = String::new();
        while let Some(c) = self.peek() {
            match c {
                '.' | '/' | '(' | ')' => break,
                '[' => {
                    let end = self.text[self.pos..].find(']')? + self.pos;
                    symbol.push_str(&self.text[self.pos..=end]);
                    self.pos = end + 1;
                }
                '{' => self.skip_annotation()?,
                c => {
                    symbol.push(c);
                    self.pos += c.len_utf8();
                }
            }
        }
        if symbol.is_empty() {
            // An annotation alone (`{beats}`) is the unity; nothing at all is a syntax error.
            return (self.pos > start).then_some(Unit::ONE);
        }
        self.simple(&symbol)
    }

    fn skip_annotation(&mut self) -> Option<()> {
        if self.peek() == Some('{') {
            let end = self.text[self.pos..].find('}')?;
            self.pos += end + 1;
        }
        Some(())
    }

    /// A prefixed atom with an optional signed integer exponent, or a plain positive integer.
    fn simple(&mut self, symbol: &str) -> Option<Unit> {
        if symbol.bytes().all(|b| b.is_ascii_digit()) {
            let factor: f64 = symbol.parse().ok()?;
            return Some(Unit {
                factor,
                dims: NONE,
                offset: 0.0,
            });
        }
        let (name, exponent) = split_exponent(symbol)?;
        let (unit, affine) = lookup(name)?;
        if affine {
            if exponent != 1 {
                return None;
            }
            self.affine = true;
        }
        Some(unit.pow(exponent))
    }
}

/// `m2` → (`m`, 2), `s-1` → (`s`, -1), `10*3` → (`10*`, 3), `kg` → (`kg`, 1).
fn split_exponent(symbol: &str) -> Option<(&str, i32)> {
    let digits_at = symbol
        .rfind(|c: char| !c.is_ascii_digit())
        .map_or(0, |i| i + 1);
    if digits_at == symbol.len() {
        return Some((symbol, 1));
    }
    let sign_at = match symbol[..digits_at].chars().last() {
        Some('+' | '-') => digits_at - 1,
        _ => digits_at,
    };
    let name = &symbol[..sign_at];
    if name.is_empty() || symbol.len() - digits_at > 3 {
        return None;
    }
    Some((name, symbol[sign_at..].parse().ok()?))
}

/// An atom, optionally with a metric prefix; the flag says whether it has an offset. An exact
/// atom wins over a prefixed reading (`Pa` is the pascal, `min` the minute, `h` the hour).
fn lookup(name: &str) -> Option<(Unit, bool)> {
    let found = |a: &Atom, scale: f64| {
        (
            Unit {
                factor: a.factor * scale,
                dims: a.dims,
                offset: a.offset,
            },
            a.offset != 0.0,
        )
    };
    if let Some(a) = ATOMS.iter().find(|a| a.symbol == name) {
        return Some(found(a, 1.0));
    }
    PREFIXES.iter().find_map(|(prefix, scale)| {
        let rest = name.strip_prefix(prefix)?;
        ATOMS
            .iter()
            .find(|a| a.metric && a.symbol == rest)
            .map(|a| found(a, *scale))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The canonical code and the value of 1 `unit` in it.
    fn one(unit: &str) -> (String, f64) {
        let c = canonical(unit).unwrap_or_else(|| panic!("{unit} should convert"));
        (c.code.clone(), c.convert(1.0))
    }

    fn same(a: &str, b: &str, b_per_a: f64) {
        let (ca, va) = one(a);
        let (cb, vb) = one(b);
        assert_eq!(ca, cb, "{a} vs {b}");
        assert_eq!(
            round_significant(va),
            round_significant(vb * b_per_a),
            "{a} vs {b}"
        );
    }

    #[test]
    fn base_units_and_prefixes() {
        assert_eq!(one("g"), ("g".into(), 1.0));
        assert_eq!(one("kg"), ("g".into(), 1000.0));
        assert_eq!(one("mg"), ("g".into(), 0.001));
        assert_eq!(one("ug"), ("g".into(), 1e-6));
        assert_eq!(one("µg"), ("g".into(), 1e-6));
        assert_eq!(one("ng"), ("g".into(), 1e-9));
        assert_eq!(one("pg"), ("g".into(), 1e-12));
        assert_eq!(one("dag"), ("g".into(), 10.0));
        assert_eq!(one("hg"), ("g".into(), 100.0));
        assert_eq!(one("Mg"), ("g".into(), 1e6));
        assert_eq!(one("Gg"), ("g".into(), 1e9));
        assert_eq!(one("cm"), ("m".into(), 0.01));
        assert_eq!(one("dm"), ("m".into(), 0.1));
        assert_eq!(one("mmol"), ("mol".into(), 0.001));
        assert_eq!(one("K"), ("K".into(), 1.0));
        assert_eq!(one("1"), ("1".into(), 1.0));
    }

    #[test]
    fn conversions_the_search_needs() {
        same("kg", "g", 1000.0);
        same("g", "mg", 1000.0);
        same("[lb_av]", "g", 453.59237);
        same("m", "cm", 100.0);
        same("[in_i]", "cm", 2.54);
        same("[ft_i]", "[in_i]", 12.0);
        same("L", "mL", 1000.0);
        same("l", "dL", 10.0);
        same("mm[Hg]", "Pa", 133.322);
        same("kPa", "Pa", 1000.0);
        same("cm[H2O]", "Pa", 98.0665);
        same("/min", "/s", 1.0 / 60.0);
        same("{beats}/min", "/min", 1.0);
        same("/s", "Hz", 1.0);
        same("min", "s", 60.0);
        same("h", "min", 60.0);
        same("d", "h", 24.0);
        same("wk", "d", 7.0);
        same("a", "d", 365.25);
        same("a", "mo", 12.0);
        same("kg/m2", "g/m2", 1000.0);
        same("g/dL", "g/L", 10.0);
        same("mg/dL", "g/L", 0.01);
        same("mmol/L", "mol/m3", 1.0);
        same("%", "1", 0.01);
        same("10*3/uL", "/L", 1e9);
        same("10*9/L", "/L", 1e9);
        same("m/s2", "m.s-2", 1.0);
        same("(kg.m)/s2", "N", 1.0);
        same("kcal", "J", 4184.0);
        same("U/L", "umol/(min.L)", 1.0);
    }

    #[test]
    fn canonical_codes_are_written_out() {
        assert_eq!(one("g/dL").0, "g/m3");
        assert_eq!(one("/min").0, "/s");
        assert_eq!(one("kg/m2").0, "g/m2");
        assert_eq!(one("mm[Hg]").0, "Pa");
        assert_eq!(one("mL").0, "m3");
        assert_eq!(one("m.s-2").0, "m/s2");
        assert_eq!(one("mol/L").0, "mol/m3");
        assert_eq!(one("{score}").0, "1");
        assert_eq!(one("kg.m2/s2").0, "g.m2/s2");
    }

    #[test]
    fn temperatures_convert_with_their_offset() {
        let cel = canonical("Cel").unwrap();
        assert_eq!(cel.code, "K");
        assert_eq!(cel.convert(37.0), 310.15);
        assert_eq!(cel.convert(0.0), 273.15);
        let f = canonical("[degF]").unwrap();
        assert_eq!(f.convert(98.6), 310.15);
        assert_eq!(f.convert(32.0), 273.15);
        assert_eq!(canonical("K").unwrap().convert(310.15), 310.15);
        // An offset means nothing inside a compound unit or to a power.
        assert_eq!(canonical("Cel/h"), None);
        assert_eq!(canonical("Cel2"), None);
    }

    #[test]
    fn units_outside_the_subset_do_not_convert() {
        for unit in [
            "", "[iU]", "[IU]/L", "kg/", "/", "m//s", "(m", "m)", "xyz", "mm[Hg", "{beats", "kmin",
            "cd", "m2222", "beats/min", "..",
        ] {
            assert_eq!(canonical(unit), None, "{unit}");
        }
    }
}
