//! The subset of FHIRPath that R4 search-parameter expressions use, evaluated on FHIR JSON.
//!
//! Supported, which covers every expression of the published R4 search parameters:
//! - paths from a resource type through element names (`Patient.name.given`), choice elements
//!   (`Observation.value` reaches `valueQuantity`), indexers (`Bundle.entry[0]`), and paths
//!   from an element of the focus (`name | alias`, `value.as(Quantity)`);
//! - unions `a | b`, also inside parentheses, and `and` / `or`;
//! - `=` and `!=` (`telecom.where(system='phone')`, `Patient.deceased != false`);
//! - type operators and functions: `x as T`, `x is T`, `.as(T)`, `.ofType(T)`, `.is(T)`;
//! - `where(criteria)`, `exists()`, `empty()`, `not()`, `first()`, `resolve()` (a no-op, except
//!   in `resolve() is T`, which tests the target type a Reference names);
//! - `extension('url')`, which yields the `value[x]` of the matching extensions (see
//!   `Func::Extension`), and `hasExtension('url')`;
//! - `$this` and `%resource`, for the relative expressions of composite components.
//!
//! Anything else fails to compile, and the registry test catches it before a parameter silently
//! indexes nothing. Expressions are compiled once; evaluation only walks borrowed JSON, and the
//! booleans it produces are the statics `TRUE` and `FALSE`.

use serde_json::Value;

use super::reference::split_reference;

static TRUE: Value = Value::Bool(true);
static FALSE: Value = Value::Bool(false);

/// The suffixes a choice element `x[x]` takes in JSON (`valueQuantity`): the R4 data types.
/// Matching a key against this list, not merely an upper-case letter, keeps `source` from
/// matching `sourceVersion`.
const CHOICE_TYPES: &[&str] = &[
    "Base64Binary",
    "Boolean",
    "Canonical",
    "Code",
    "Date",
    "DateTime",
    "Decimal",
    "Id",
    "Instant",
    "Integer",
    "Markdown",
    "Oid",
    "PositiveInt",
    "String",
    "Time",
    "UnsignedInt",
    "Uri",
    "Url",
    "Uuid",
    "Address",
    "Age",
    "Annotation",
    "Attachment",
    "CodeableConcept",
    "Coding",
    "ContactPoint",
    "Count",
    "Distance",
    "Duration",
    "HumanName",
    "Identifier",
    "Money",
    "Period",
    "Quantity",
    "Range",
    "Ratio",
    "Reference",
    "SampledData",
    "Signature",
    "Timing",
    "ContactDetail",
    "Contributor",
    "DataRequirement",
    "Expression",
    "ParameterDefinition",
    "RelatedArtifact",
    "TriggerDefinition",
    "UsageContext",
    "Dosage",
    "Meta",
];

/// Data types that are a Quantity by derivation, so that `as(Quantity)` keeps them.
const QUANTITY_SUBTYPES: &[&str] = &[
    "Age",
    "Count",
    "Distance",
    "Duration",
    "SimpleQuantity",
    "MoneyQuantity",
];

/// A compiled expression.
#[derive(Debug, Clone)]
pub(crate) struct Expression {
    root: Expr,
}

#[derive(Debug, Clone)]
enum Expr {
    Path(Path),
    Literal(Value),
    Union(Vec<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    /// `left = right`, or `left != right` when `negate`.
    Equals {
        left: Box<Expr>,
        right: Box<Expr>,
        negate: bool,
    },
}

/// A start followed by steps, each applied to the whole collection the previous one yielded.
#[derive(Debug, Clone)]
struct Path {
    start: Start,
    steps: Vec<Step>,
}

#[derive(Debug, Clone)]
enum Start {
    /// An upper-case identifier: the focus if it is a resource of that type, else nothing.
    Type(String),
    /// A lower-case identifier: an element of the focus (relative expressions).
    Child(String),
    This,
    /// `%resource`: the resource being indexed.
    Resource,
    Group(Box<Expr>),
    /// A function applied to the focus, as in `where(hasExtension('...'))`.
    Func(Func),
}

#[derive(Debug, Clone)]
enum Step {
    Child(String),
    Index(usize),
    Func(Func),
}

#[derive(Debug, Clone)]
enum Func {
    Where(Box<Expr>),
    /// `ofType(T)`, `as(T)` and `x as T`: keep items of type T.
    OfType(String),
    /// `is(T)` and `x is T`: whether the (single) item is of type T.
    Is(String),
    /// `resolve() is T`: whether the Reference names a target of type T.
    ResolvesTo(String),
    /// `extension('url')` yields the `value[x]` of each extension with that url, with the
    /// choice suffix set, rather than the Extension element itself: a search parameter on an
    /// extension always indexes its value, and this way the extractor sees the value as it
    /// sees any other choice element. Complex extensions (no `value[x]`) yield nothing.
    Extension(String),
    HasExtension(String),
    Exists,
    Empty,
    Not,
    First,
    /// A no-op: references are indexed as references, never followed.
    Resolve,
}

/// One item an expression selected: the JSON value and the element path that led to it
/// (`Patient.gender`, `Observation.component.code`), which is what a binding (and so an
/// implicit code system) belongs to.
#[derive(Debug, Clone)]
pub(crate) struct Node<'a> {
    pub(crate) value: &'a Value,
    pub(crate) path: String,
    /// For an item reached through a choice element, the type suffix (`DateTime`, `Period`).
    choice: Option<&'a str>,
    /// The resource the item belongs to, for `%resource` in relative expressions.
    root: &'a Value,
}

impl<'a> Node<'a> {
    /// The type suffix of an item reached through a choice element (`Quantity` for
    /// `valueQuantity`), None for an ordinary element. Extraction goes by JSON shape; the
    /// tests check the evaluator sets it.
    #[cfg(test)]
    pub(crate) fn choice(&self) -> Option<&str> {
        self.choice
    }

    fn derived(&self, value: &'a Value, path: String, choice: Option<&'a str>) -> Node<'a> {
        Node {
            value,
            path,
            choice,
            root: self.root,
        }
    }

    fn boolean(&self, b: bool) -> Node<'a> {
        self.derived(if b { &TRUE } else { &FALSE }, self.path.clone(), None)
    }
}

impl Expression {
    /// Compiles a parameter's expression, evaluated from the resource being indexed. Branches
    /// normally start from a resource type (`Patient.name`); one that starts from an element
    /// (`name | alias`, as R4 publishes InsurancePlan `name`) reads that element of the
    /// resource, as FHIRPath does with the resource as context.
    pub(crate) fn compile(text: &str) -> Result<Expression, String> {
        let root = parse(text)?;
        if matches!(root, Expr::Literal(_)) {
            return Err(format!("fhirpath expression {text:?} is a literal"));
        }
        Ok(Expression { root })
    }

    /// Compiles an expression evaluated from an item rather than a resource, as a composite
    /// component's (`code`, `value.as(Quantity)`, `$this`). The language is the same; the name
    /// says which evaluation (`evaluate_from`) the caller means.
    pub(crate) fn compile_relative(text: &str) -> Result<Expression, String> {
        Expression::compile(text)
    }

    /// Whether the expression can select anything from a resource of `resource_type`: some
    /// branch starts from that type, `Resource`, `DomainResource`, or an element of the focus.
    pub(crate) fn applies_to(&self, resource_type: &str) -> bool {
        let mut roots = Vec::new();
        root_types(&self.root, &mut roots);
        roots.iter().any(|root| match root {
            None => true,
            Some(t) => *t == resource_type || *t == "Resource" || *t == "DomainResource",
        })
    }

    /// The items the expression selects in `resource`, which is of `resource_type`.
    pub(crate) fn evaluate<'a>(&self, resource_type: &str, resource: &'a Value) -> Vec<Node<'a>> {
        let focus = Node {
            value: resource,
            path: resource_type.to_string(),
            choice: None,
            root: resource,
        };
        let cx = Context {
            root_type: resource_type,
        };
        eval(&self.root, std::slice::from_ref(&focus), &cx)
    }

    /// The items the expression selects with `item` as the focus (`$this`); paths continue
    /// the item's (`Observation.component` + `code` = `Observation.component.code`).
    pub(crate) fn evaluate_from<'a>(&self, item: &Node<'a>) -> Vec<Node<'a>> {
        let cx = Context {
            root_type: item
                .root
                .get("resourceType")
                .and_then(Value::as_str)
                .unwrap_or(""),
        };
        eval(&self.root, std::slice::from_ref(item), &cx)
    }
}

/// What evaluation needs besides the focus: the type of the resource being indexed.
struct Context<'t> {
    root_type: &'t str,
}

// ---------------------------------------------------------------------------------------------
// Evaluation

fn eval<'a>(expr: &Expr, focus: &[Node<'a>], cx: &Context) -> Vec<Node<'a>> {
    match expr {
        Expr::Path(path) => eval_path(path, focus, cx),
        // A literal alone selects nothing indexable; literals matter only as operands of `=`.
        Expr::Literal(_) => Vec::new(),
        Expr::Union(members) => {
            let mut out: Vec<Node<'a>> = Vec::new();
            for member in members {
                for node in eval(member, focus, cx) {
                    // FHIRPath unions remove duplicates; the same element reached twice is one.
                    if !out.iter().any(|n| std::ptr::eq(n.value, node.value)) {
                        out.push(node);
                    }
                }
            }
            out
        }
        Expr::And(left, right) => {
            let (l, r) = (
                truth(&eval(left, focus, cx)),
                truth(&eval(right, focus, cx)),
            );
            let result = match (l, r) {
                (Some(false), _) | (_, Some(false)) => Some(false),
                (Some(true), Some(true)) => Some(true),
                _ => None,
            };
            boolean_result(result, focus)
        }
        Expr::Or(left, right) => {
            let (l, r) = (
                truth(&eval(left, focus, cx)),
                truth(&eval(right, focus, cx)),
            );
            let result = match (l, r) {
                (Some(true), _) | (_, Some(true)) => Some(true),
                (Some(false), Some(false)) => Some(false),
                _ => None,
            };
            boolean_result(result, focus)
        }
        Expr::Equals {
            left,
            right,
            negate,
        } => {
            let l = eval(left, focus, cx);
            let result = match right.as_ref() {
                Expr::Literal(literal) => {
                    equal(l.iter().map(|n| n.value), std::iter::once(literal))
                }
                other => {
                    let r = eval(other, focus, cx);
                    equal(l.iter().map(|n| n.value), r.iter().map(|n| n.value))
                }
            };
            boolean_result(result.map(|eq| eq != *negate), focus)
        }
    }
}

/// A boolean result as a collection: empty for "unknown", else one static boolean node.
fn boolean_result<'a>(result: Option<bool>, focus: &[Node<'a>]) -> Vec<Node<'a>> {
    match (result, focus.first()) {
        (Some(b), Some(f)) => vec![f.boolean(b)],
        _ => Vec::new(),
    }
}

/// FHIRPath singleton evaluation as a boolean: empty is unknown, a single boolean is itself,
/// any other single item is true; several items are not a boolean (unknown).
fn truth(nodes: &[Node]) -> Option<bool> {
    match nodes {
        [node] => Some(node.value.as_bool().unwrap_or(true)),
        _ => None,
    }
}

/// FHIRPath `=` on two collections: unknown if either is empty, else item-wise equality.
fn equal<'v>(
    left: impl ExactSizeIterator<Item = &'v Value>,
    right: impl ExactSizeIterator<Item = &'v Value>,
) -> Option<bool> {
    if left.len() == 0 || right.len() == 0 {
        return None;
    }
    if left.len() != right.len() {
        return Some(false);
    }
    Some(left.zip(right).all(|(a, b)| values_equal(a, b)))
}

fn values_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

fn eval_path<'a>(path: &Path, focus: &[Node<'a>], cx: &Context) -> Vec<Node<'a>> {
    let mut nodes = match &path.start {
        Start::Type(name) => focus
            .iter()
            .filter(|n| is_resource_of_type(n, name, cx))
            .map(|n| n.derived(n.value, name.clone(), None))
            .collect(),
        Start::Child(name) => {
            let mut out = Vec::new();
            for node in focus {
                children(node, name, &mut out);
            }
            out
        }
        Start::This => focus.to_vec(),
        Start::Resource => focus
            .first()
            .map(|f| {
                let path = f
                    .root
                    .get("resourceType")
                    .and_then(Value::as_str)
                    .unwrap_or(cx.root_type)
                    .to_string();
                vec![f.derived(f.root, path, None)]
            })
            .unwrap_or_default(),
        Start::Group(inner) => eval(inner, focus, cx),
        Start::Func(func) => apply(func, focus.to_vec(), focus.first(), cx),
    };
    if matches!(path.start, Start::Type(_)) && nodes.is_empty() {
        // A branch for another resource type: nothing at all, not even `exists()` = false, so
        // that `Patient.deceased.exists() and ...` says nothing about a Person.
        return nodes;
    }
    // `exists()` and `empty()` answer on an empty collection too; the answer hangs on the focus.
    let anchor = focus.first();
    for step in &path.steps {
        if nodes.is_empty() && !matches!(step, Step::Func(Func::Exists | Func::Empty)) {
            break;
        }
        nodes = match step {
            Step::Child(name) => {
                let mut out = Vec::new();
                for node in &nodes {
                    children(node, name, &mut out);
                }
                out
            }
            Step::Index(i) => nodes.into_iter().nth(*i).into_iter().collect(),
            Step::Func(func) => apply(func, nodes, anchor, cx),
        };
    }
    nodes
}

fn apply<'a>(
    func: &Func,
    mut nodes: Vec<Node<'a>>,
    anchor: Option<&Node<'a>>,
    cx: &Context,
) -> Vec<Node<'a>> {
    match func {
        Func::Where(criteria) => {
            nodes.retain(|n| truth(&eval(criteria, std::slice::from_ref(n), cx)) == Some(true));
            nodes
        }
        Func::OfType(ty) => {
            nodes.retain(|n| has_type(n, ty, cx));
            nodes
        }
        Func::Is(ty) => match nodes.as_slice() {
            [n] => vec![n.boolean(has_type(n, ty, cx))],
            _ => Vec::new(),
        },
        Func::ResolvesTo(ty) => match nodes.as_slice() {
            [n] => vec![n.boolean(reference_type(n.value).as_deref() == Some(ty.as_str()))],
            _ => Vec::new(),
        },
        Func::Extension(url) => {
            let mut out = Vec::new();
            for node in &nodes {
                for ext in extensions(node.value, url) {
                    let ext_node = node.derived(ext, format!("{}.extension", node.path), None);
                    children(&ext_node, "value", &mut out);
                }
            }
            out
        }
        Func::HasExtension(url) => match nodes.as_slice() {
            [n] => vec![n.boolean(extensions(n.value, url).next().is_some())],
            _ => Vec::new(),
        },
        Func::Exists | Func::Empty => {
            let exists = !nodes.is_empty();
            let answer = if matches!(func, Func::Exists) {
                exists
            } else {
                !exists
            };
            nodes
                .first()
                .or(anchor)
                .map(|n| n.boolean(answer))
                .into_iter()
                .collect()
        }
        Func::Not => match (truth(&nodes), nodes.first()) {
            (Some(b), Some(n)) => vec![n.boolean(!b)],
            _ => Vec::new(),
        },
        Func::First => {
            nodes.truncate(1);
            nodes
        }
        Func::Resolve => nodes,
    }
}

/// Whether `node` is a resource of type `name`: the resource being indexed (`Resource` and
/// `DomainResource` match it too), or a resource inside it that says its type.
fn is_resource_of_type(node: &Node, name: &str, cx: &Context) -> bool {
    if !node.value.is_object() {
        return false;
    }
    let own_type = if std::ptr::eq(node.value, node.root) && !cx.root_type.is_empty() {
        Some(cx.root_type)
    } else {
        node.value.get("resourceType").and_then(Value::as_str)
    };
    own_type.is_some_and(|t| t == name || name == "Resource" || name == "DomainResource")
}

/// Whether `node` is of type `ty`. JSON says the type only of choice elements and resources;
/// other items are kept rather than guessed at.
fn has_type(node: &Node, ty: &str, cx: &Context) -> bool {
    if let Some(choice) = node.choice {
        return choice.eq_ignore_ascii_case(ty)
            || (ty == "Quantity" && QUANTITY_SUBTYPES.contains(&choice));
    }
    if node.value.get("resourceType").is_some() || std::ptr::eq(node.value, node.root) {
        return is_resource_of_type(node, ty, cx);
    }
    true
}

/// The extensions of `value` whose url is `url`.
fn extensions<'a: 'u, 'u>(value: &'a Value, url: &'u str) -> impl Iterator<Item = &'a Value> + 'u {
    value
        .get("extension")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(move |e| e.get("url").and_then(Value::as_str) == Some(url))
}

/// Appends the items of element `name` under `node`, flattening arrays.
fn children<'a>(node: &Node<'a>, name: &str, out: &mut Vec<Node<'a>>) {
    let Some(object) = node.value.as_object() else {
        return;
    };
    // The path is built only for an element that is there: most are absent, and this runs
    // for every parameter of every resource written.
    if let Some(value) = object.get(name) {
        push_items(node, value, &format!("{}.{name}", node.path), None, out);
        return;
    }
    // A choice element `x[x]` appears in JSON as `x` + a data type name; at most one does.
    for (key, value) in object {
        if let Some(suffix) = key.strip_prefix(name) {
            if let Some(ty) = CHOICE_TYPES.iter().find(|t| **t == suffix) {
                push_items(node, value, &format!("{}.{name}", node.path), Some(ty), out);
            }
        }
    }
}

fn push_items<'a>(
    parent: &Node<'a>,
    value: &'a Value,
    path: &str,
    choice: Option<&'a str>,
    out: &mut Vec<Node<'a>>,
) {
    match value {
        Value::Null => {}
        Value::Array(items) => {
            for item in items.iter().filter(|i| !i.is_null()) {
                out.push(parent.derived(item, path.to_string(), choice));
            }
        }
        _ => out.push(parent.derived(value, path.to_string(), choice)),
    }
}

/// The target type of a Reference: from its `reference` string, else its `type` element.
fn reference_type(value: &Value) -> Option<String> {
    let typed = value
        .get("reference")
        .and_then(Value::as_str)
        .and_then(split_reference)
        .and_then(|(ty, _)| ty);
    typed.or_else(|| {
        value
            .get("type")
            .and_then(Value::as_str)
            .map(str::to_string)
    })
}

/// The type each branch starts from: Some(type name), or None for a branch that starts from
/// the focus itself (an element name, `$this`, `%resource`, a function).
fn root_types<'e>(expr: &'e Expr, out: &mut Vec<Option<&'e str>>) {
    match expr {
        Expr::Path(path) => match &path.start {
            Start::Type(name) => out.push(Some(name)),
            Start::Group(inner) => root_types(inner, out),
            Start::Child(_) | Start::This | Start::Resource | Start::Func(_) => out.push(None),
        },
        Expr::Literal(_) => {}
        Expr::Union(members) => members.iter().for_each(|m| root_types(m, out)),
        Expr::And(l, r) | Expr::Or(l, r) => {
            root_types(l, out);
            root_types(r, out);
        }
        Expr::Equals { left, right, .. } => {
            root_types(left, out);
            root_types(right, out);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Parsing

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    /// A backtick-delimited identifier, never a keyword.
    Quoted(String),
    Str(String),
    Number(String),
    /// `$this`, `%resource`: the name with its sigil.
    Variable(String),
    Punct(&'static str),
}

fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some(&(start, c)) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '\'' | '`' => {
                chars.next();
                let mut s = String::new();
                loop {
                    match chars.next() {
                        None => return Err(format!("unterminated literal in {text:?}")),
                        Some((_, q)) if q == c => break,
                        Some((_, '\\')) => {
                            let (_, e) = chars.next().ok_or("dangling escape")?;
                            s.push(match e {
                                'n' => '\n',
                                't' => '\t',
                                'r' => '\r',
                                'f' => '\u{c}',
                                'u' => {
                                    let hex: String =
                                        (0..4).filter_map(|_| chars.next().map(|x| x.1)).collect();
                                    u32::from_str_radix(&hex, 16)
                                        .ok()
                                        .and_then(char::from_u32)
                                        .ok_or_else(|| format!("bad escape \\u{hex}"))?
                                }
                                other => other,
                            });
                        }
                        Some((_, other)) => s.push(other),
                    }
                }
                tokens.push(if c == '\'' {
                    Token::Str(s)
                } else {
                    Token::Quoted(s)
                });
            }
            c if c.is_ascii_digit() => {
                let mut end = start;
                while let Some(&(i, d)) = chars.peek() {
                    let decimal_point = d == '.'
                        && text[i + 1..].starts_with(|n: char| n.is_ascii_digit())
                        && !text[start..i].contains('.');
                    if !(d.is_ascii_digit() || decimal_point) {
                        break;
                    }
                    end = i + 1;
                    chars.next();
                }
                tokens.push(Token::Number(text[start..end].to_string()));
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == '$' || c == '%' => {
                chars.next();
                let mut end = start + 1;
                while let Some(&(i, d)) = chars.peek() {
                    if !(d.is_ascii_alphanumeric() || d == '_') {
                        break;
                    }
                    end = i + 1;
                    chars.next();
                }
                let word = text[start..end].to_string();
                tokens.push(if c == '$' || c == '%' {
                    Token::Variable(word)
                } else {
                    Token::Ident(word)
                });
            }
            _ => {
                let punct = ["!=", ".", "(", ")", "[", "]", ",", "|", "="]
                    .into_iter()
                    .find(|p| text[start..].starts_with(p))
                    .ok_or_else(|| format!("unsupported character {c:?} in {text:?}"))?;
                for _ in 0..punct.len() {
                    chars.next();
                }
                tokens.push(Token::Punct(punct));
            }
        }
    }
    Ok(tokens)
}

fn parse(text: &str) -> Result<Expr, String> {
    let mut parser = Parser {
        tokens: tokenize(text)?,
        at: 0,
    };
    let expr = parser.or_expr()?;
    match parser.tokens.get(parser.at) {
        None => Ok(expr),
        Some(t) => Err(format!("unexpected {t:?} in fhirpath expression {text:?}")),
    }
}

/// Recursive descent over FHIRPath's precedence, loosest first: `or`, `and`, `=`/`!=`, `|`,
/// `as`/`is`, then invocations.
struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.at).cloned();
        self.at += 1;
        t
    }

    fn eat_punct(&mut self, p: &str) -> bool {
        if matches!(self.peek(), Some(Token::Punct(q)) if *q == p) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn eat_keyword(&mut self, k: &str) -> bool {
        if matches!(self.peek(), Some(Token::Ident(w)) if w == k) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn expect_punct(&mut self, p: &str) -> Result<(), String> {
        if self.eat_punct(p) {
            Ok(())
        } else {
            Err(format!("expected {p:?}, found {:?}", self.peek()))
        }
    }

    fn or_expr(&mut self) -> Result<Expr, String> {
        let mut left = self.and_expr()?;
        while self.eat_keyword("or") {
            left = Expr::Or(Box::new(left), Box::new(self.and_expr()?));
        }
        Ok(left)
    }

    fn and_expr(&mut self) -> Result<Expr, String> {
        let mut left = self.equality()?;
        while self.eat_keyword("and") {
            left = Expr::And(Box::new(left), Box::new(self.equality()?));
        }
        Ok(left)
    }

    fn equality(&mut self) -> Result<Expr, String> {
        let left = self.union()?;
        let negate = if self.eat_punct("=") {
            false
        } else if self.eat_punct("!=") {
            true
        } else {
            return Ok(left);
        };
        Ok(Expr::Equals {
            left: Box::new(left),
            right: Box::new(self.union()?),
            negate,
        })
    }

    fn union(&mut self) -> Result<Expr, String> {
        let mut members = vec![self.type_expr()?];
        while self.eat_punct("|") {
            members.push(self.type_expr()?);
        }
        Ok(if members.len() == 1 {
            members.pop().expect("one member")
        } else {
            Expr::Union(members)
        })
    }

    /// `term as T` / `term is T`, which bind tighter than `|`.
    fn type_expr(&mut self) -> Result<Expr, String> {
        let term = self.term()?;
        let is = if self.eat_keyword("as") {
            false
        } else if self.eat_keyword("is") {
            true
        } else {
            return Ok(term);
        };
        let ty = self.type_name()?;
        let mut path = match term {
            Expr::Path(path) => path,
            other => Path {
                start: Start::Group(Box::new(other)),
                steps: Vec::new(),
            },
        };
        let func = if !is {
            Func::OfType(ty)
        } else if matches!(path.steps.last(), Some(Step::Func(Func::Resolve))) {
            path.steps.pop();
            Func::ResolvesTo(ty)
        } else if path.steps.is_empty() && matches!(path.start, Start::Func(Func::Resolve)) {
            path.start = Start::This;
            Func::ResolvesTo(ty)
        } else {
            Func::Is(ty)
        };
        path.steps.push(Step::Func(func));
        Ok(Expr::Path(path))
    }

    /// A type specifier, optionally qualified (`FHIR.Patient`, `System.String`).
    fn type_name(&mut self) -> Result<String, String> {
        let mut name = self.identifier()?;
        while self.eat_punct(".") {
            name = self.identifier()?;
        }
        Ok(name)
    }

    fn identifier(&mut self) -> Result<String, String> {
        match self.next() {
            Some(Token::Ident(w) | Token::Quoted(w)) => Ok(w),
            other => Err(format!("expected an identifier, found {other:?}")),
        }
    }

    fn term(&mut self) -> Result<Expr, String> {
        let start = match self.next() {
            Some(Token::Punct("(")) => {
                let inner = self.or_expr()?;
                self.expect_punct(")")?;
                Start::Group(Box::new(inner))
            }
            Some(Token::Str(s)) => return self.literal(Value::String(s)),
            Some(Token::Number(n)) => {
                let number: serde_json::Number =
                    n.parse().map_err(|_| format!("bad number literal {n:?}"))?;
                return self.literal(Value::Number(number));
            }
            Some(Token::Ident(w)) if w == "true" || w == "false" => {
                return self.literal(Value::Bool(w == "true"))
            }
            Some(Token::Variable(v)) if v == "$this" => Start::This,
            Some(Token::Variable(v)) if v == "%resource" => Start::Resource,
            Some(Token::Ident(w)) if self.eat_punct("(") => Start::Func(self.function(&w)?),
            Some(Token::Ident(w) | Token::Quoted(w)) => {
                if w.starts_with(|c: char| c.is_ascii_uppercase()) {
                    Start::Type(w)
                } else {
                    Start::Child(w)
                }
            }
            other => return Err(format!("unsupported fhirpath term {other:?}")),
        };
        let mut steps = Vec::new();
        loop {
            if self.eat_punct(".") {
                let name = self.identifier()?;
                steps.push(if self.eat_punct("(") {
                    Step::Func(self.function(&name)?)
                } else {
                    Step::Child(name)
                });
            } else if self.eat_punct("[") {
                let index = match self.next() {
                    Some(Token::Number(n)) => n.parse().map_err(|_| format!("bad index {n:?}"))?,
                    other => return Err(format!("unsupported indexer {other:?}")),
                };
                self.expect_punct("]")?;
                steps.push(Step::Index(index));
            } else {
                break;
            }
        }
        Ok(Expr::Path(Path { start, steps }))
    }

    fn literal(&mut self, value: Value) -> Result<Expr, String> {
        if matches!(self.peek(), Some(Token::Punct("." | "["))) {
            return Err("invocations on literals are not supported".to_string());
        }
        Ok(Expr::Literal(value))
    }

    /// The function `name`, its opening parenthesis already read.
    fn function(&mut self, name: &str) -> Result<Func, String> {
        let func = match name {
            "where" => Func::Where(Box::new(self.or_expr()?)),
            "ofType" | "as" => Func::OfType(self.type_name()?),
            "is" => Func::Is(self.type_name()?),
            "extension" | "hasExtension" => {
                let url = match self.next() {
                    Some(Token::Str(url)) => url,
                    other => return Err(format!("{name}() needs a url literal, found {other:?}")),
                };
                if name == "extension" {
                    Func::Extension(url)
                } else {
                    Func::HasExtension(url)
                }
            }
            "exists" if self.eat_punct(")") => return Ok(Func::Exists),
            "empty" => Func::Empty,
            "not" => Func::Not,
            "first" => Func::First,
            "resolve" => Func::Resolve,
            other => return Err(format!("unsupported fhirpath function {other}()")),
        };
        self.expect_punct(")")?;
        Ok(func)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn values(expr: &str, resource_type: &str, resource: &Value) -> Vec<Value> {
        Expression::compile(expr)
            .unwrap()
            .evaluate(resource_type, resource)
            .into_iter()
            .map(|n| n.value.clone())
            .collect()
    }

    fn paths(expr: &str, resource_type: &str, resource: &Value) -> Vec<(String, Value)> {
        Expression::compile(expr)
            .unwrap()
            .evaluate(resource_type, resource)
            .into_iter()
            .map(|n| (n.path, n.value.clone()))
            .collect()
    }

    #[test]
    fn union_takes_only_the_branches_of_the_resource_type() {
        let patient = json!({"resourceType": "Patient", "birthDate": "1970"});
        let got = paths("Patient.birthDate | Person.birthDate", "Patient", &patient);
        assert_eq!(got, vec![("Patient.birthDate".to_string(), json!("1970"))]);
        assert!(paths("Person.birthDate", "Patient", &patient).is_empty());
        let common = paths("Resource.id", "Patient", &json!({"id": "x"}));
        assert_eq!(common, vec![("Resource.id".to_string(), json!("x"))]);
    }

    #[test]
    fn union_inside_parentheses_and_duplicates_removed() {
        let obs = json!({"code": {"text": "a"}, "category": [{"text": "b"}]});
        let got = values(
            "(Observation.code | Observation.category) | Observation.code",
            "Observation",
            &obs,
        );
        assert_eq!(got, vec![json!({"text": "a"}), json!({"text": "b"})]);
    }

    #[test]
    fn arrays_are_flattened_at_every_step() {
        let patient = json!({"name": [{"given": ["A", "B"]}, {"given": ["C"]}]});
        let got = values("Patient.name.given", "Patient", &patient);
        assert_eq!(got, vec![json!("A"), json!("B"), json!("C")]);
    }

    #[test]
    fn choice_elements_and_casts() {
        let obs = json!({"effectiveDateTime": "2020", "valueQuantity": {"value": 1}});
        let nodes = Expression::compile("Observation.effective")
            .unwrap()
            .evaluate("Observation", &obs);
        assert_eq!(nodes.len(), 1);
        assert_eq!(nodes[0].choice(), Some("DateTime"));
        assert_eq!(nodes[0].path, "Observation.effective");
        assert_eq!(
            values("(Observation.effective as dateTime)", "Observation", &obs).len(),
            1
        );
        assert!(values("(Observation.effective as Period)", "Observation", &obs).is_empty());
        assert!(values("Observation.effective.ofType(Period)", "Observation", &obs).is_empty());
        assert_eq!(
            values("Observation.value.as(Quantity)", "Observation", &obs),
            vec![json!({"value": 1})]
        );
        // A name that is only the start of a longer name selects nothing.
        assert!(values("Observation.val", "Observation", &obs).is_empty());
        let map = json!({"group": [{"sourceVersion": "2"}]});
        assert!(values("ConceptMap.group.source", "ConceptMap", &map).is_empty());
    }

    #[test]
    fn as_quantity_keeps_quantity_subtypes() {
        let ctx = json!({"useContext": [{"valueAge": {"value": 3}}, {"valueRange": {}}]});
        let got = values(
            "(ActivityDefinition.useContext.value as Quantity)",
            "ActivityDefinition",
            &ctx,
        );
        assert_eq!(got, vec![json!({"value": 3})]);
    }

    #[test]
    fn resolve_is_filters_references_by_target_type() {
        let expr = "Observation.subject.where(resolve() is Patient)";
        let obs = json!({"subject": {"reference": "Group/1"}});
        assert!(values(expr, "Observation", &obs).is_empty());
        let obs = json!({"subject": {"reference": "http://x/fhir/Patient/1/_history/3"}});
        assert_eq!(values(expr, "Observation", &obs).len(), 1);
        let obs = json!({"subject": {"reference": "urn:uuid:1", "type": "Patient"}});
        assert_eq!(values(expr, "Observation", &obs).len(), 1);
        // As a path step, resolve() changes nothing.
        assert_eq!(
            values("Observation.subject.resolve()", "Observation", &obs).len(),
            1
        );
    }

    #[test]
    fn where_with_equality_on_a_field() {
        let patient = json!({"telecom": [
            {"system": "phone", "value": "1"},
            {"system": "email", "value": "a@b"},
            {"value": "none"}
        ]});
        let got = values("Patient.telecom.where(system='phone')", "Patient", &patient);
        assert_eq!(got, vec![json!({"system": "phone", "value": "1"})]);
        let lib = json!({"relatedArtifact": [
            {"type": "depends-on", "resource": "http://x/Library/a"},
            {"type": "successor", "resource": "http://x/Library/b"}
        ], "library": ["http://x/Library/c"]});
        let got = values(
            "Library.relatedArtifact.where(type='depends-on').resource | Library.library",
            "Library",
            &lib,
        );
        assert_eq!(
            got,
            vec![json!("http://x/Library/a"), json!("http://x/Library/c")]
        );
    }

    #[test]
    fn extension_yields_the_value_with_its_choice_suffix() {
        let url = "http://hl7.org/fhir/StructureDefinition/patient-mothersMaidenName";
        let patient = json!({"extension": [
            {"url": url, "valueString": "Smith"},
            {"url": "other", "valueString": "x"}
        ]});
        let nodes = Expression::compile(&format!("Patient.extension('{url}')"))
            .unwrap()
            .evaluate("Patient", &patient);
        assert_eq!(nodes.len(), 1);
        assert_eq!(nodes[0].value, &json!("Smith"));
        assert_eq!(nodes[0].choice(), Some("String"));
        assert_eq!(nodes[0].path, "Patient.extension.value");
        // The plain element still yields the Extension objects, filterable by url.
        let got = values(
            &format!("Patient.extension.where(url='{url}')"),
            "Patient",
            &patient,
        );
        assert_eq!(got, vec![json!({"url": url, "valueString": "Smith"})]);
    }

    #[test]
    fn where_has_extension_then_of_type() {
        let url = "http://hl7.org/fhir/StructureDefinition/questionnaireresponse-isSubject";
        let qr = json!({"item": [
            {"extension": [{"url": url, "valueBoolean": true}],
             "answer": [{"valueReference": {"reference": "Patient/1"}}, {"valueString": "x"}]},
            {"answer": [{"valueReference": {"reference": "Patient/2"}}]}
        ]});
        let expr = format!(
            "QuestionnaireResponse.item.where(hasExtension('{url}')).answer.value.ofType(Reference)"
        );
        let got = values(&expr, "QuestionnaireResponse", &qr);
        assert_eq!(got, vec![json!({"reference": "Patient/1"})]);
    }

    #[test]
    fn deceased_is_a_boolean() {
        let expr = "Patient.deceased.exists() and Patient.deceased != false";
        let cases = [
            (json!({"deceasedBoolean": true}), Some(true)),
            (json!({"deceasedBoolean": false}), Some(false)),
            (json!({"deceasedDateTime": "2020"}), Some(true)),
            (json!({}), Some(false)),
        ];
        for (patient, want) in cases {
            let got: Vec<_> = values(expr, "Patient", &patient);
            assert_eq!(got.first().and_then(Value::as_bool), want, "{patient}");
            assert_eq!(got.len(), 1);
        }
        // On another type, or on what is not a resource, the expression selects nothing at all.
        assert!(values(expr, "Person", &json!({"deceasedBoolean": true})).is_empty());
        assert!(values(expr, "Patient", &json!(null)).is_empty());
        assert!(values(expr, "Patient", &json!([{"deceasedBoolean": true}])).is_empty());
    }

    #[test]
    fn or_not_empty_and_is() {
        let p = json!({"active": true, "gender": "male"});
        assert_eq!(
            values(
                "Patient.active.not() or Patient.gender = 'male'",
                "Patient",
                &p
            ),
            vec![json!(true)]
        );
        assert_eq!(
            values("Patient.name.empty()", "Patient", &p),
            vec![json!(true)]
        );
        assert_eq!(
            values("Patient.name.exists()", "Patient", &p),
            vec![json!(false)]
        );
        assert!(values("Patient.name.not()", "Patient", &p).is_empty());
        assert_eq!(
            values("Patient.gender.empty()", "Patient", &p),
            vec![json!(false)]
        );
        let obs = json!({"valueQuantity": {"value": 1}});
        assert_eq!(
            values("Observation.value is Quantity", "Observation", &obs),
            vec![json!(true)]
        );
        assert_eq!(
            values("Observation.value.is(Period)", "Observation", &obs),
            vec![json!(false)]
        );
    }

    #[test]
    fn indexer_and_first() {
        let bundle = json!({"entry": [
            {"resource": {"resourceType": "Composition", "id": "c"}},
            {"resource": {"resourceType": "Patient", "id": "p"}}
        ]});
        let got = values("Bundle.entry[0].resource", "Bundle", &bundle);
        assert_eq!(got, vec![json!({"resourceType": "Composition", "id": "c"})]);
        let got = values("Bundle.entry.resource.first().id", "Bundle", &bundle);
        assert_eq!(got, vec![json!("c")]);
        let got = values("Bundle.entry[1].resource.id", "Bundle", &bundle);
        assert_eq!(got, vec![json!("p")]);
        assert!(values("Bundle.entry[2].resource", "Bundle", &bundle).is_empty());
        // A type name inside a bundle matches resources that say their type.
        let got = values(
            "Bundle.entry.resource.ofType(Patient).id",
            "Bundle",
            &bundle,
        );
        assert_eq!(got, vec![json!("p")]);
    }

    #[test]
    fn relative_expressions_continue_the_item_path() {
        let obs = json!({"resourceType": "Observation", "component": [
            {"code": {"text": "sys"}, "valueQuantity": {"value": 120}},
            {"code": {"text": "dia"}, "valueCodeableConcept": {"text": "x"}}
        ]});
        let items = Expression::compile("Observation.component")
            .unwrap()
            .evaluate("Observation", &obs);
        assert_eq!(items.len(), 2);
        let code = Expression::compile_relative("code").unwrap();
        let got = code.evaluate_from(&items[0]);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].path, "Observation.component.code");
        assert_eq!(got[0].value, &json!({"text": "sys"}));
        let quantity = Expression::compile_relative("value.as(Quantity)").unwrap();
        assert_eq!(quantity.evaluate_from(&items[0]).len(), 1);
        assert!(quantity.evaluate_from(&items[1]).is_empty());
        let either =
            Expression::compile_relative("value.as(Quantity) | value.as(CodeableConcept)").unwrap();
        let got = either.evaluate_from(&items[1]);
        assert_eq!(got[0].choice(), Some("CodeableConcept"));
        let this = Expression::compile_relative("$this").unwrap();
        assert_eq!(this.evaluate_from(&items[1])[0].value, items[1].value);
        // From the resource itself, as for `Observation.code` + `value` composites.
        let whole = Expression::compile("Observation")
            .unwrap()
            .evaluate("Observation", &obs);
        let got = Expression::compile_relative("component.code")
            .unwrap()
            .evaluate_from(&whole[0]);
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].path, "Observation.component.code");
    }

    #[test]
    fn percent_resource_reaches_the_indexed_resource() {
        let seq = json!({"resourceType": "MolecularSequence",
            "referenceSeq": {"chromosome": {"text": "1"}},
            "variant": [{"start": 1}]});
        let items = Expression::compile("MolecularSequence.variant")
            .unwrap()
            .evaluate("MolecularSequence", &seq);
        let got = Expression::compile_relative("%resource.referenceSeq.chromosome")
            .unwrap()
            .evaluate_from(&items[0]);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].path, "MolecularSequence.referenceSeq.chromosome");
        assert_eq!(got[0].value, &json!({"text": "1"}));
    }

    #[test]
    fn element_first_expressions_read_the_resource() {
        let plan = json!({"name": "Gold", "alias": ["Au"]});
        assert_eq!(
            values("name | alias", "InsurancePlan", &plan),
            vec![json!("Gold"), json!("Au")]
        );
        assert!(Expression::compile("name | alias")
            .unwrap()
            .applies_to("InsurancePlan"));
        let typed = Expression::compile("(Patient.name as HumanName) | Person.name").unwrap();
        assert!(typed.applies_to("Person") && typed.applies_to("Patient"));
        assert!(!typed.applies_to("Practitioner"));
        assert!(Expression::compile("Resource.id")
            .unwrap()
            .applies_to("Practitioner"));
    }

    #[test]
    fn string_literals_unescape() {
        let p = json!({"telecom": [{"system": "it's"}]});
        assert_eq!(
            values("Patient.telecom.where(system='it\\'s')", "Patient", &p).len(),
            1
        );
    }

    #[test]
    fn unsupported_expressions_are_rejected() {
        assert!(Expression::compile("'abc'").is_err());
        assert!(Expression::compile("Patient.name.given.count() + 1").is_err());
        assert!(Expression::compile("Patient.name.memberOf('http://x')").is_err());
        assert!(Expression::compile("Patient.name.where(").is_err());
        assert!(Expression::compile("Patient.name)").is_err());
        assert!(Expression::compile("name.given").is_ok());
        assert!(
            Expression::compile("(ActivityDefinition.useContext.value as CodeableConcept)").is_ok()
        );
    }
}
