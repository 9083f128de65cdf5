//! IHE MRRT-style report templates: parsed, validated and rendered.
//!
//! An MRRT (Management of Radiology Report Templates) template is an HTML5 document in its
//! XHTML (XML) serialisation:
//!
//! * `<head>`: a `<title>`, `<meta name="dcterms.*" content="…"/>` metadata and a
//!   `<script type="text/xml">` holding the coded content (`<coding_schemes>`, template-level
//!   `<term>`s and `<coded_content>` with `<entry ORIGTXT="element id"><term><code meaning=…
//!   value=… scheme=…/></term></entry>`). Published templates usually wrap that XML in a
//!   comment; both forms (and CDATA) are read.
//! * `<body>`: nested `<section>`s (name from `data-section-name`, else their first
//!   `<header>`), holding the fields: `<input type="text|number|date">`, `<textarea>` and
//!   `<select>` with `<option>`s, labelled by `<label for="…">`.
//!
//! The subset kept here: field types `TEXT`, `NUMBER`, `DATE` and `SELECTION`
//! (`data-field-type`, or derived from the element), `required` or
//! `data-field-completion-action="PROHIBIT"` for fields that must be filled before signing
//! (`ALERT` only warns, see [`Template::alerts`]), `min`/`max`/`step` of numbers, and two
//! extensions of ours: `data-field-unit` (a UCUM unit such as `mm`) and
//! `data-field-decimals`. Codes are attached to sections, fields and options by coded-content
//! entries or by `data-code-value`/`data-code-scheme`/`data-code-meaning` attributes (the
//! attributes win).
//!
//! Parsing refuses what would be unsafe should the template ever be shown as HTML (scripts
//! other than the coded content, `on*` attributes, `javascript:` URLs, frames and objects),
//! as well as documents over [`MAX_TEMPLATE_BYTES`] or nested deeper than [`MAX_DEPTH`].
//! Coded-content entries whose `ORIGTXT` names no section, field or option are ignored.
//!
//! The report output ([`Template::render_html`], [`Template::sections_text`],
//! [`Template::coded_findings`]) is built from the parsed model and the entered values only;
//! the template's own markup is never echoed, and every text is escaped.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use quick_xml::Reader;
use quick_xml::XmlVersion;
use quick_xml::events::{BytesStart, Event};
use serde::{Deserialize, Serialize};

/// The largest template accepted, in bytes.
pub const MAX_TEMPLATE_BYTES: usize = 256 * 1024;
/// The deepest element nesting accepted (coded content included).
pub const MAX_DEPTH: usize = 48;
/// The most elements a template may have.
pub const MAX_ELEMENTS: usize = 20_000;
/// The most fields a template may have.
pub const MAX_FIELDS: usize = 1_000;
/// The most options one select may have.
pub const MAX_OPTIONS: usize = 500;
/// The longest text value accepted for one field, in characters.
pub const MAX_TEXT_CHARS: usize = 20_000;

// ------------------------------------------------------------------------------------------
// the model

/// A coded concept (RadLex, SNOMED CT, LOINC, DCM, …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Code {
    /// The code value, e.g. `RID28486`.
    pub value: String,
    /// The coding scheme as the template names it, e.g. `RADLEX`.
    pub scheme: String,
    /// The code meaning, e.g. `findings`.
    pub meaning: String,
}

/// A section of the template, with its fields and subsections in document order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Section {
    /// The element id, when the template gives one.
    pub id: Option<String>,
    /// The heading shown for the section.
    pub name: String,
    /// The section's concept, if coded.
    pub code: Option<Code>,
    /// Fields and subsections in document order.
    pub items: Vec<Item>,
}

/// One thing inside a section.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
pub enum Item {
    /// A field, by id (see [`Template::field`]).
    Field(String),
    /// A nested section.
    Section(Section),
}

/// What the template says to do when a field is left empty (`data-field-completion-action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CompletionAction {
    /// Nothing.
    #[default]
    None,
    /// Warn the author ([`Template::alerts`]).
    Alert,
    /// The report cannot be signed while the field is empty.
    Prohibit,
}

/// One option of a choice field.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChoiceOption {
    /// The stored value.
    pub value: String,
    /// The text shown.
    pub label: String,
    /// The option's concept, if coded.
    pub code: Option<Code>,
}

/// The kind of a field and its constraints.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FieldKind {
    /// Free text; `multiline` for a `<textarea>`.
    Text { multiline: bool },
    /// A number.
    Number {
        min: Option<f64>,
        max: Option<f64>,
        step: Option<f64>,
        unit: Option<String>,
        decimals: Option<u32>,
    },
    /// A calendar date, `YYYY-MM-DD`.
    Date,
    /// One (or, with `multiple`, several) of the options.
    Choice {
        options: Vec<ChoiceOption>,
        multiple: bool,
    },
}

impl FieldKind {
    fn expected(&self) -> &'static str {
        match self {
            FieldKind::Text { .. } => "text",
            FieldKind::Number { .. } => "a number",
            FieldKind::Date => "a date (YYYY-MM-DD)",
            FieldKind::Choice {
                multiple: false, ..
            } => "one of the options",
            FieldKind::Choice { multiple: true, .. } => "a list of options",
        }
    }
}

/// A field of the template.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Field {
    /// The element id; values are keyed by it.
    pub id: String,
    /// The element's `name`, when given.
    pub name: Option<String>,
    /// The label shown (from `<label for>`, else `title`, `name` or the id).
    pub label: String,
    /// Kind and constraints.
    pub kind: FieldKind,
    /// Must be filled before signing.
    pub required: bool,
    /// The template's completion action.
    pub completion_action: CompletionAction,
    /// The field's concept (the concept name of a coded finding), if coded.
    pub code: Option<Code>,
    /// The template's suggested value (`value` attribute or textarea content), if any.
    pub default: Option<String>,
}

impl Field {
    /// The option with that value, for a choice field.
    pub fn option(&self, value: &str) -> Option<&ChoiceOption> {
        match &self.kind {
            FieldKind::Choice { options, .. } => options.iter().find(|o| o.value == value),
            _ => None,
        }
    }
}

/// A parsed MRRT template.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Template {
    title: String,
    metadata: BTreeMap<String, String>,
    codes: Vec<Code>,
    sections: Vec<Section>,
    fields: Vec<Field>,
    #[serde(skip)]
    index: HashMap<String, usize>,
}

// ------------------------------------------------------------------------------------------
// errors

/// A place in the template text (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

/// Why a template was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TemplateError {
    #[error("the template is {size} bytes; at most {limit} are accepted")]
    TooLarge { size: usize, limit: usize },
    #[error("{at}: not well-formed XML: {message}")]
    Xml { at: Position, message: String },
    #[error("{at}: elements are nested deeper than {limit} levels")]
    TooDeep { at: Position, limit: usize },
    #[error("{at}: more than {limit} {what}")]
    TooMany {
        at: Position,
        what: &'static str,
        limit: usize,
    },
    #[error("{at}: the root element must be <html>, not <{found}>")]
    NotHtml { at: Position, found: String },
    #[error("the template has no <title> in its <head>, or the title is empty")]
    MissingTitle,
    #[error("the template has no <body>")]
    MissingBody,
    #[error("{at}: duplicate id \"{id}\"")]
    DuplicateId { at: Position, id: String },
    #[error("{at}: <{element}> needs an id")]
    MissingId { at: Position, element: String },
    #[error(
        "{at}: field \"{id}\" has the unknown field type \"{field_type}\" (supported: TEXT, NUMBER, DATE, SELECTION)"
    )]
    UnknownFieldType {
        at: Position,
        id: String,
        field_type: String,
    },
    #[error("{at}: select \"{id}\" has no options")]
    NoOptions { at: Position, id: String },
    #[error("{at}: field \"{id}\": {message}")]
    InvalidField {
        at: Position,
        id: String,
        message: String,
    },
    #[error("{at}: {message}")]
    Invalid { at: Position, message: String },
    #[error("{at}: unsafe content: {message}")]
    Unsafe { at: Position, message: String },
}

// ------------------------------------------------------------------------------------------
// values

/// The entered values of a report, by field id.
pub type Values = BTreeMap<String, Value>;

/// One entered value. As JSON: a string (text, date or one choice), a number, or an array of
/// strings (choices); `null` reads as empty text.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Text(String),
    Number(f64),
    /// `YYYY-MM-DD`; read from JSON as [`Value::Text`], which date fields accept.
    Date(String),
    Choice(Vec<String>),
}

impl Value {
    /// Empty text, an empty date or no choice.
    pub fn is_empty(&self) -> bool {
        match self {
            Value::Text(s) | Value::Date(s) => s.trim().is_empty(),
            Value::Number(_) => false,
            Value::Choice(v) => v.iter().all(|s| s.is_empty()),
        }
    }
}

impl Serialize for Value {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Text(t) | Value::Date(t) => s.serialize_str(t),
            Value::Number(n) => s.serialize_f64(*n),
            Value::Choice(v) => v.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(f64),
            Text(String),
            Choice(Vec<String>),
            Null(()),
        }
        match Raw::deserialize(d).map_err(|_| {
            serde::de::Error::custom("a value is a string, a number, an array of strings or null")
        })? {
            Raw::Number(n) => Ok(Value::Number(n)),
            Raw::Text(t) => Ok(Value::Text(t)),
            Raw::Choice(v) => Ok(Value::Choice(v)),
            Raw::Null(()) => Ok(Value::Text(String::new())),
        }
    }
}

/// What is wrong with one value.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Problem {
    /// A required field is empty.
    Missing,
    /// The template has no field with that id.
    UnknownField,
    /// The value is not of the field's type.
    WrongType {
        expected: &'static str,
    },
    /// Text that is not a number, or a number that is not finite.
    NotANumber,
    BelowMinimum {
        min: f64,
    },
    AboveMaximum {
        max: f64,
    },
    InvalidDate {
        value: String,
    },
    NotAnOption {
        value: String,
    },
    DuplicateChoice {
        value: String,
    },
    /// Several choices for a single-choice field.
    TooManyChoices,
    TooLong {
        limit: usize,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Missing => f.write_str("required"),
            Problem::UnknownField => f.write_str("not a field of the template"),
            Problem::WrongType { expected } => write!(f, "expected {expected}"),
            Problem::NotANumber => f.write_str("not a number"),
            Problem::BelowMinimum { min } => {
                write!(f, "below the minimum of {}", fmt_num(*min, None))
            }
            Problem::AboveMaximum { max } => {
                write!(f, "above the maximum of {}", fmt_num(*max, None))
            }
            Problem::InvalidDate { value } => {
                write!(f, "\"{value}\" is not a valid date (YYYY-MM-DD)")
            }
            Problem::NotAnOption { value } => write!(f, "\"{value}\" is not one of the options"),
            Problem::DuplicateChoice { value } => write!(f, "\"{value}\" is chosen twice"),
            Problem::TooManyChoices => f.write_str("only one choice is allowed"),
            Problem::TooLong { limit } => write!(f, "longer than {limit} characters"),
        }
    }
}

/// A problem with the value of one field.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldProblem {
    /// The field id (as given, for unknown fields).
    pub field: String,
    /// The field's label; empty for unknown fields.
    pub label: String,
    pub problem: Problem,
}

impl fmt::Display for FieldProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.label.is_empty() || self.label == self.field {
            write!(f, "{}: {}", self.field, self.problem)
        } else {
            write!(f, "{} ({}): {}", self.label, self.field, self.problem)
        }
    }
}

/// The value of a coded finding.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CodedValue {
    /// The code of the chosen option.
    Code { code: Code },
    /// A number with the field's unit.
    Number { value: f64, unit: Option<String> },
    /// Text (or the label of an uncoded option).
    Text { text: String },
    /// A date, `YYYY-MM-DD`.
    Date { date: String },
}

/// A finding whose field or chosen option carries a code (for DICOM SR).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CodedFinding {
    /// The field id.
    pub field: String,
    /// The field's label.
    pub label: String,
    /// The concept name: the field's code. `None` when only the chosen option is coded.
    pub concept: Option<Code>,
    /// The value.
    pub value: CodedValue,
    /// The name of the innermost section holding the field.
    pub section: String,
    /// The code of that section, if any.
    pub section_code: Option<Code>,
}

// ------------------------------------------------------------------------------------------
// the starter library

/// The templates installed for a new tenant: `(id, xhtml)`.
pub fn starter_templates() -> Vec<(&'static str, &'static str)> {
    vec![
        ("ct-chest", include_str!("../templates/ct-chest.html")),
        ("ct-head", include_str!("../templates/ct-head.html")),
        ("xr-chest", include_str!("../templates/xr-chest.html")),
        ("mr-brain", include_str!("../templates/mr-brain.html")),
        ("lung-nodule", include_str!("../templates/lung-nodule.html")),
    ]
}

// ------------------------------------------------------------------------------------------
// the template API

impl Template {
    /// Parse and check an MRRT template.
    pub fn parse(xhtml: &str) -> Result<Template, TemplateError> {
        if xhtml.len() > MAX_TEMPLATE_BYTES {
            return Err(TemplateError::TooLarge {
                size: xhtml.len(),
                limit: MAX_TEMPLATE_BYTES,
            });
        }
        Parser::new(xhtml).run()
    }

    /// The template's title.
    pub fn title(&self) -> &str {
        &self.title
    }

    /// The `<meta name content>` pairs (repeated names joined with "; ").
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }

    /// One metadata value, e.g. `dcterms.identifier`.
    pub fn meta(&self, name: &str) -> Option<&str> {
        self.metadata.get(name).map(String::as_str)
    }

    /// The template-level terms of the coded content.
    pub fn codes(&self) -> &[Code] {
        &self.codes
    }

    /// The top-level sections.
    pub fn sections(&self) -> &[Section] {
        &self.sections
    }

    /// All fields in document order.
    pub fn fields(&self) -> &[Field] {
        &self.fields
    }

    /// The field with that id.
    pub fn field(&self, id: &str) -> Option<&Field> {
        self.index.get(id).and_then(|&i| self.fields.get(i))
    }

    /// Check values for signing: every required field filled, every value of its field's
    /// type and within its constraints, no unknown field ids.
    pub fn validate(&self, values: &Values) -> Result<(), Vec<FieldProblem>> {
        self.check(values, true)
    }

    /// Check a draft: as [`validate`](Self::validate), but empty required fields are fine.
    pub fn validate_partial(&self, values: &Values) -> Result<(), Vec<FieldProblem>> {
        self.check(values, false)
    }

    /// The fields marked `data-field-completion-action="ALERT"` that are still empty (a
    /// warning for the author, not a reason to refuse signing).
    pub fn alerts(&self, values: &Values) -> Vec<FieldProblem> {
        self.fields
            .iter()
            .filter(|f| f.completion_action == CompletionAction::Alert)
            .filter(|f| {
                matches!(
                    values.get(&f.id).map(|v| typed(f, v)),
                    None | Some(Ok(None))
                )
            })
            .map(|f| FieldProblem {
                field: f.id.clone(),
                label: f.label.clone(),
                problem: Problem::Missing,
            })
            .collect()
    }

    fn check(&self, values: &Values, full: bool) -> Result<(), Vec<FieldProblem>> {
        let mut problems = Vec::new();
        for f in &self.fields {
            let problem = match values.get(&f.id).map(|v| checked(f, v)) {
                None | Some(Ok(None)) => (full && f.required).then_some(Problem::Missing),
                Some(Err(p)) => Some(p),
                Some(Ok(Some(_))) => None,
            };
            if let Some(problem) = problem {
                problems.push(FieldProblem {
                    field: f.id.clone(),
                    label: f.label.clone(),
                    problem,
                });
            }
        }
        for id in values
            .keys()
            .filter(|id| !self.index.contains_key(id.as_str()))
        {
            problems.push(FieldProblem {
                field: id.clone(),
                label: String::new(),
                problem: Problem::UnknownField,
            });
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// The report as an HTML fragment: the title, each section with a filled field (heading,
    /// "Label: value unit" lines, coded meanings), then the narrative. Everything is escaped;
    /// the fragment is safe to insert into a page. Unknown field ids are left out; a value
    /// that does not fit its field is shown as entered.
    pub fn render_html(&self, values: &Values, narrative: &str) -> String {
        let mut out = String::from("<div class=\"radris-report\">\n");
        out.push_str(&format!(
            "<h1 class=\"report-title\">{}</h1>\n",
            esc(&self.title)
        ));
        for s in &self.sections {
            self.section_html(s, values, 2, &mut out);
        }
        if !narrative.trim().is_empty() {
            out.push_str(
                "<section class=\"report-section report-narrative\">\n<h2>Narrative</h2>\n",
            );
            out.push_str(&paragraphs_html(narrative));
            out.push_str("</section>\n");
        }
        out.push_str("</div>\n");
        out
    }

    fn section_html(&self, s: &Section, values: &Values, level: usize, out: &mut String) {
        if !self.has_content(s, values) {
            return;
        }
        let h = level.min(6);
        out.push_str("<section class=\"report-section\"");
        if let Some(id) = &s.id {
            out.push_str(&format!(" data-section=\"{}\"", esc(id)));
        }
        if let Some(c) = &s.code {
            out.push_str(&format!(" data-code=\"{}\"", esc(&code_ref(c))));
        }
        out.push_str(&format!(">\n<h{h}>{}</h{h}>\n", esc(&s.name)));
        for item in &s.items {
            match item {
                Item::Section(sub) => self.section_html(sub, values, level + 1, out),
                Item::Field(id) => {
                    let (Some(f), Some(v)) = (self.field(id), values.get(id)) else {
                        continue;
                    };
                    if let Some(line) = field_html(f, v, &s.name) {
                        out.push_str(&line);
                    }
                }
            }
        }
        out.push_str("</section>\n");
    }

    fn has_content(&self, s: &Section, values: &Values) -> bool {
        s.items.iter().any(|item| match item {
            Item::Section(sub) => self.has_content(sub, values),
            Item::Field(id) => values.get(id).is_some_and(|v| !v.is_empty()),
        })
    }

    /// The same content as plain text, one `(heading, text)` per top-level section with a
    /// filled field; subsections appear inside as an indented block under their name.
    pub fn sections_text(&self, values: &Values) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for s in &self.sections {
            let mut lines = Vec::new();
            self.section_lines(s, values, 0, &mut lines);
            if !lines.is_empty() {
                out.push((s.name.clone(), lines.join("\n")));
            }
        }
        out
    }

    fn section_lines(&self, s: &Section, values: &Values, indent: usize, lines: &mut Vec<String>) {
        let pad = "  ".repeat(indent);
        for item in &s.items {
            match item {
                Item::Section(sub) => {
                    if self.has_content(sub, values) {
                        lines.push(format!("{pad}{}:", sub.name));
                        self.section_lines(sub, values, indent + 1, lines);
                    }
                }
                Item::Field(id) => {
                    let (Some(f), Some(v)) = (self.field(id), values.get(id)) else {
                        continue;
                    };
                    let Some(text) = display_value(f, v) else {
                        continue;
                    };
                    let text = text.plain();
                    let own = same_name(&f.label, &s.name);
                    if own {
                        lines.extend(text.lines().map(|l| format!("{pad}{l}")));
                    } else if text.contains('\n') {
                        lines.push(format!("{pad}{}:", f.label));
                        lines.extend(text.lines().map(|l| format!("{pad}  {l}")));
                    } else {
                        lines.push(format!("{pad}{}: {text}", f.label));
                    }
                }
            }
        }
    }

    /// The coded findings: for each filled field that carries a code, or whose chosen options
    /// do, the concept name and the value (the option's code, the number and unit, the text
    /// or the date). Values that do not fit their field are left out.
    pub fn coded_findings(&self, values: &Values) -> Vec<CodedFinding> {
        let mut out = Vec::new();
        for s in &self.sections {
            self.section_findings(s, values, &mut out);
        }
        out
    }

    fn section_findings(&self, s: &Section, values: &Values, out: &mut Vec<CodedFinding>) {
        for item in &s.items {
            match item {
                Item::Section(sub) => self.section_findings(sub, values, out),
                Item::Field(id) => {
                    let (Some(f), Some(v)) = (self.field(id), values.get(id)) else {
                        continue;
                    };
                    let Ok(Some(t)) = checked(f, v) else { continue };
                    let finding = |value| CodedFinding {
                        field: f.id.clone(),
                        label: f.label.clone(),
                        concept: f.code.clone(),
                        value,
                        section: s.name.clone(),
                        section_code: s.code.clone(),
                    };
                    match t {
                        Typed::Choice(chosen) => {
                            for c in chosen {
                                let Some(o) = f.option(c) else { continue };
                                match (&o.code, &f.code) {
                                    (Some(code), _) => {
                                        out.push(finding(CodedValue::Code { code: code.clone() }))
                                    }
                                    (None, Some(_)) => out.push(finding(CodedValue::Text {
                                        text: o.label.clone(),
                                    })),
                                    (None, None) => {}
                                }
                            }
                        }
                        _ if f.code.is_none() => {}
                        Typed::Text(t) => {
                            out.push(finding(CodedValue::Text { text: t.to_owned() }))
                        }
                        Typed::Date(d) => {
                            out.push(finding(CodedValue::Date { date: d.to_owned() }))
                        }
                        Typed::Number(n) => {
                            let unit = match &f.kind {
                                FieldKind::Number { unit, .. } => unit.clone(),
                                _ => None,
                            };
                            out.push(finding(CodedValue::Number { value: n, unit }));
                        }
                    }
                }
            }
        }
    }
}

// ------------------------------------------------------------------------------------------
// typed values

/// A value read as its field's type.
enum Typed<'a> {
    Text(&'a str),
    Number(f64),
    Date(&'a str),
    Choice(Vec<&'a str>),
}

/// The value as the field's type; `Ok(None)` when empty.
fn typed<'a>(f: &Field, v: &'a Value) -> Result<Option<Typed<'a>>, Problem> {
    let wrong = || Problem::WrongType {
        expected: f.kind.expected(),
    };
    match &f.kind {
        FieldKind::Text { .. } => match v {
            Value::Text(s) | Value::Date(s) if s.trim().is_empty() => Ok(None),
            Value::Text(s) | Value::Date(s) if s.chars().count() > MAX_TEXT_CHARS => {
                Err(Problem::TooLong {
                    limit: MAX_TEXT_CHARS,
                })
            }
            Value::Text(s) | Value::Date(s) => Ok(Some(Typed::Text(s.trim()))),
            _ => Err(wrong()),
        },
        FieldKind::Number { .. } => match v {
            Value::Number(n) if n.is_finite() => Ok(Some(Typed::Number(*n))),
            Value::Number(_) => Err(Problem::NotANumber),
            Value::Text(s) if s.trim().is_empty() => Ok(None),
            Value::Text(s) => match s.trim().parse::<f64>() {
                Ok(n) if n.is_finite() => Ok(Some(Typed::Number(n))),
                _ => Err(Problem::NotANumber),
            },
            _ => Err(wrong()),
        },
        FieldKind::Date => match v {
            Value::Text(s) | Value::Date(s) if s.trim().is_empty() => Ok(None),
            Value::Text(s) | Value::Date(s) if valid_date(s.trim()) => {
                Ok(Some(Typed::Date(s.trim())))
            }
            Value::Text(s) | Value::Date(s) => Err(Problem::InvalidDate { value: clip(s, 40) }),
            _ => Err(wrong()),
        },
        FieldKind::Choice { multiple, .. } => {
            let chosen: Vec<&str> = match v {
                Value::Text(s) if s.is_empty() => Vec::new(),
                Value::Text(s) => vec![s.as_str()],
                Value::Choice(list) => list
                    .iter()
                    .map(String::as_str)
                    .filter(|s| !s.is_empty())
                    .collect(),
                _ => return Err(wrong()),
            };
            if chosen.is_empty() {
                return Ok(None);
            }
            if !multiple && chosen.len() > 1 {
                return Err(Problem::TooManyChoices);
            }
            let mut seen = BTreeSet::new();
            for c in &chosen {
                if f.option(c).is_none() {
                    return Err(Problem::NotAnOption { value: clip(c, 80) });
                }
                if !seen.insert(*c) {
                    return Err(Problem::DuplicateChoice { value: clip(c, 80) });
                }
            }
            Ok(Some(Typed::Choice(chosen)))
        }
    }
}

/// As [`typed`], with the range of numbers checked too.
fn checked<'a>(f: &Field, v: &'a Value) -> Result<Option<Typed<'a>>, Problem> {
    let t = typed(f, v)?;
    if let (Some(Typed::Number(n)), FieldKind::Number { min, max, .. }) = (&t, &f.kind) {
        if let Some(min) = *min
            && *n < min
        {
            return Err(Problem::BelowMinimum { min });
        }
        if let Some(max) = *max
            && *n > max
        {
            return Err(Problem::AboveMaximum { max });
        }
    }
    Ok(t)
}

fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        format!("{}…", s.chars().take(n).collect::<String>())
    }
}

/// `YYYY-MM-DD`, a real calendar date between the years 1000 and 9999.
fn valid_date(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = s.get(r)?;
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    let (Some(y), Some(m), Some(d)) = (num(0..4), num(5..7), num(8..10)) else {
        return false;
    };
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    y >= 1000 && (1..=days).contains(&d)
}

/// A number as shown: with the field's decimals, else the shortest exact form.
fn fmt_num(n: f64, decimals: Option<u32>) -> String {
    let n = if n == 0.0 { 0.0 } else { n }; // no "-0"
    match decimals {
        Some(d) => format!("{:.*}", d as usize, n),
        None => format!("{n}"),
    }
}

/// A value ready for display.
struct Shown {
    /// The main text (option labels joined, number with unit, the text).
    text: String,
    /// Coded meanings that add to the text (options whose meaning differs from their label).
    meanings: Vec<(String, Code)>,
}

impl Shown {
    fn plain(&self) -> String {
        if self.meanings.is_empty() {
            self.text.clone()
        } else {
            let m: Vec<&str> = self.meanings.iter().map(|(m, _)| m.as_str()).collect();
            format!("{} ({})", self.text, m.join(", "))
        }
    }
}

/// The value as shown; `None` when empty. A value that does not fit its field is shown as
/// entered.
fn display_value(f: &Field, v: &Value) -> Option<Shown> {
    let plain = |text: String| {
        Some(Shown {
            text,
            meanings: Vec::new(),
        })
    };
    match typed(f, v) {
        Ok(None) => None,
        Ok(Some(Typed::Text(t))) | Ok(Some(Typed::Date(t))) => plain(t.to_owned()),
        Ok(Some(Typed::Number(n))) => {
            let (unit, decimals) = match &f.kind {
                FieldKind::Number { unit, decimals, .. } => (unit.as_deref(), *decimals),
                _ => (None, None),
            };
            let num = fmt_num(n, decimals);
            plain(match unit {
                Some(u) => format!("{num} {u}"),
                None => num,
            })
        }
        Ok(Some(Typed::Choice(chosen))) => {
            let mut labels = Vec::new();
            let mut meanings = Vec::new();
            for c in chosen {
                let Some(o) = f.option(c) else { continue };
                labels.push(o.label.clone());
                if let Some(code) = &o.code
                    && !same_name(&code.meaning, &o.label)
                    && !code.meaning.is_empty()
                {
                    meanings.push((code.meaning.clone(), code.clone()));
                }
            }
            Some(Shown {
                text: labels.join(", "),
                meanings,
            })
        }
        Err(_) => match v {
            Value::Text(s) | Value::Date(s) => plain(clip(s.trim(), MAX_TEXT_CHARS)),
            Value::Number(n) => plain(fmt_num(*n, None)),
            Value::Choice(list) => plain(list.join(", ")),
        }
        .filter(|s| !s.text.trim().is_empty()),
    }
}

fn same_name(a: &str, b: &str) -> bool {
    let norm = |s: &str| s.trim().trim_end_matches(':').trim().to_lowercase();
    norm(a) == norm(b)
}

fn code_ref(c: &Code) -> String {
    format!("{}:{}", c.scheme, c.value)
}

/// One field's line of the HTML report.
fn field_html(f: &Field, v: &Value, section_name: &str) -> Option<String> {
    let shown = display_value(f, v)?;
    let mut out = format!("<p class=\"report-field\" data-field=\"{}\"", esc(&f.id));
    if let Some(c) = &f.code {
        out.push_str(&format!(" data-code=\"{}\"", esc(&code_ref(c))));
    }
    out.push('>');
    let multiline = shown.text.contains('\n');
    if !same_name(&f.label, section_name) {
        out.push_str(&format!(
            "<span class=\"report-label\">{}</span>:",
            esc(&f.label)
        ));
        out.push(if multiline { '\n' } else { ' ' });
        if multiline {
            out.push_str("<br>");
        }
    }
    let value = shown.text.lines().map(esc).collect::<Vec<_>>().join("<br>");
    out.push_str(&format!("<span class=\"report-value\">{value}</span>"));
    for (meaning, code) in &shown.meanings {
        out.push_str(&format!(
            " <span class=\"report-code\" title=\"{}\">({})</span>",
            esc(&format!("{} {}", code.scheme, code.value)),
            esc(meaning)
        ));
    }
    out.push_str("</p>\n");
    Some(out)
}

/// Free text as paragraphs (blank lines) with line breaks.
fn paragraphs_html(text: &str) -> String {
    let mut out = String::new();
    let normalized = text.replace("\r\n", "\n");
    for para in normalized
        .split("\n\n")
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        let lines: Vec<String> = para.lines().map(esc).collect();
        out.push_str(&format!("<p>{}</p>\n", lines.join("<br>")));
    }
    out
}

/// Escape text for HTML element content and quoted attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

// ------------------------------------------------------------------------------------------
// the parser

/// Entities beyond XML's five that hand-written XHTML templates use.
fn resolve_entity(name: &str) -> Option<&'static str> {
    if let Some(s) = quick_xml::escape::resolve_predefined_entity(name) {
        return Some(s);
    }
    Some(match name {
        "nbsp" => "\u{a0}",
        "ndash" => "\u{2013}",
        "mdash" => "\u{2014}",
        "hellip" => "\u{2026}",
        "deg" => "\u{b0}",
        "plusmn" => "\u{b1}",
        "times" => "\u{d7}",
        "micro" => "\u{b5}",
        "middot" => "\u{b7}",
        "le" => "\u{2264}",
        "ge" => "\u{2265}",
        "lsquo" => "\u{2018}",
        "rsquo" => "\u{2019}",
        "ldquo" => "\u{201c}",
        "rdquo" => "\u{201d}",
        "copy" => "\u{a9}",
        "reg" => "\u{ae}",
        "trade" => "\u{2122}",
        "sup2" => "\u{b2}",
        "sup3" => "\u{b3}",
        _ => return None,
    })
}

/// Collapse runs of whitespace (the non-breaking space included) to one space and trim.
fn collapse(s: &str) -> String {
    s.split(|c: char| c.is_whitespace())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The attributes of an element, keys lower-cased, values unescaped.
struct Attrs(Vec<(String, String)>);

impl Attrs {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
    fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }
    /// The value, trimmed, when present and not blank.
    fn text(&self, key: &str) -> Option<String> {
        self.get(key)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    }
}

/// What the text of an element is being collected for.
enum CaptureKind {
    Title,
    Label {
        for_id: Option<String>,
    },
    /// The header of the section at that index of the section stack.
    Header(usize),
    Option,
    Textarea(usize),
}

struct Capture {
    kind: CaptureKind,
    depth: usize,
    text: String,
}

struct OpenSection {
    section: Section,
    depth: usize,
    has_header: bool,
    named: bool,
}

struct OpenOption {
    value: Option<String>,
    id: Option<String>,
    code: Option<Code>,
    at: Position,
}

#[derive(Default)]
struct Coded {
    /// Declared coding schemes, lower-cased name → designator.
    schemes: BTreeMap<String, String>,
    /// `(ORIGTXT, code, position)`.
    entries: Vec<(String, Code, Position)>,
    /// Template-level terms.
    codes: Vec<(Code, Position)>,
}

/// The state of a coded-content walk (its own element stack).
#[derive(Default)]
struct CodedWalk {
    stack: Vec<String>,
    entry: Option<String>,
    entry_has_code: bool,
}

struct Parser<'a> {
    src: &'a str,
    stack: Vec<String>,
    elements: usize,
    root_done: bool,
    has_body: bool,
    /// Depth (stack length) of the open coded-content `<script>`, if any.
    script: Option<usize>,
    walk: CodedWalk,
    coded: Coded,
    captures: Vec<Capture>,
    title: Option<String>,
    metadata: BTreeMap<String, String>,
    open_sections: Vec<OpenSection>,
    sections: Vec<Section>,
    fields: Vec<Field>,
    field_at: Vec<Position>,
    ids: HashMap<String, Position>,
    labels: HashMap<String, String>,
    /// The open `<select>`: field index and depth.
    select: Option<(usize, usize)>,
    option: Option<OpenOption>,
    option_ids: HashMap<String, (usize, usize)>,
}

type Res<T> = Result<T, TemplateError>;

impl<'a> Parser<'a> {
    fn new(src: &'a str) -> Self {
        Parser {
            src,
            stack: Vec::new(),
            elements: 0,
            root_done: false,
            has_body: false,
            script: None,
            walk: CodedWalk::default(),
            coded: Coded::default(),
            captures: Vec::new(),
            title: None,
            metadata: BTreeMap::new(),
            open_sections: Vec::new(),
            sections: Vec::new(),
            fields: Vec::new(),
            field_at: Vec::new(),
            ids: HashMap::new(),
            labels: HashMap::new(),
            select: None,
            option: None,
            option_ids: HashMap::new(),
        }
    }

    fn pos(&self, offset: usize) -> Position {
        let offset = offset.min(self.src.len());
        let before = self
            .src
            .get(..offset)
            .map_or(Cow::Owned(String::new()), Cow::Borrowed);
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        Position { line, column }
    }

    fn xml_err(&self, offset: usize, message: impl fmt::Display) -> TemplateError {
        TemplateError::Xml {
            at: self.pos(offset),
            message: message.to_string(),
        }
    }

    fn attrs(&self, e: &BytesStart<'_>, offset: usize) -> Res<Attrs> {
        let mut out = Vec::new();
        for a in e.attributes() {
            let a = a.map_err(|err| self.xml_err(offset, err))?;
            let value = a
                .normalized_value_with(XmlVersion::Implicit1_0, 4, resolve_entity)
                .map_err(|err| self.xml_err(offset, err))?;
            out.push((a.key.as_ref().to_ascii_lowercase(), value.into_owned()));
        }
        Ok(Attrs(out))
    }

    fn run(mut self) -> Res<Template> {
        let mut reader = Reader::from_str(self.src);
        loop {
            let start = usize::try_from(reader.buffer_position()).unwrap_or(usize::MAX);
            let event = match reader.read_event() {
                Ok(e) => e,
                Err(err) => {
                    let at = usize::try_from(reader.error_position()).unwrap_or(start);
                    return Err(self.xml_err(at, err));
                }
            };
            match event {
                Event::Eof => break,
                Event::Start(e) => {
                    let name = e.name().as_ref().to_ascii_lowercase();
                    self.open(&name, &e, start, false)?;
                    self.stack.push(name);
                }
                Event::Empty(e) => {
                    let name = e.name().as_ref().to_ascii_lowercase();
                    self.open(&name, &e, start, true)?;
                    self.stack.push(name);
                    self.close(start)?;
                }
                Event::End(_) => self.close(start)?,
                Event::Text(t) => self.text(&t.xml10_content(), start)?,
                Event::CData(t) => {
                    let content = t.into_inner();
                    if self.script.is_some() {
                        self.coded_text(&content, start + "<![CDATA[".len())?;
                    } else {
                        self.text(&content, start)?;
                    }
                }
                Event::GeneralRef(r) => {
                    let s = match r.resolve_char_ref() {
                        Ok(Some(c)) => c.to_string(),
                        Ok(None) => match resolve_entity(&r) {
                            Some(s) => s.to_owned(),
                            None => {
                                return Err(
                                    self.xml_err(start, format!("unknown entity &{};", &*r))
                                );
                            }
                        },
                        Err(err) => return Err(self.xml_err(start, err)),
                    };
                    self.text(&s, start)?;
                }
                Event::Comment(t) => {
                    if self.script.is_some() {
                        let content = t.into_inner();
                        self.coded_text(&content, start + "<!--".len())?;
                    }
                }
                Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {
                    if !self.stack.is_empty() || self.root_done {
                        return Err(self.xml_err(start, "declaration inside the document"));
                    }
                }
            }
        }
        if let Some(open) = self.stack.last() {
            return Err(self.xml_err(self.src.len(), format!("<{open}> is not closed")));
        }
        if !self.root_done {
            return Err(self.xml_err(0, "no root element"));
        }
        self.finish()
    }

    fn in_element(&self, name: &str) -> bool {
        self.stack.iter().any(|n| n == name)
    }

    fn depth_check(&self, extra: usize, offset: usize) -> Res<()> {
        if self.stack.len() + extra >= MAX_DEPTH {
            return Err(TemplateError::TooDeep {
                at: self.pos(offset),
                limit: MAX_DEPTH,
            });
        }
        Ok(())
    }

    fn count_element(&mut self, offset: usize) -> Res<()> {
        self.elements += 1;
        if self.elements > MAX_ELEMENTS {
            return Err(TemplateError::TooMany {
                at: self.pos(offset),
                what: "elements",
                limit: MAX_ELEMENTS,
            });
        }
        Ok(())
    }

    /// A start (or empty) tag; `name` is pushed on the stack after this returns.
    fn open(&mut self, name: &str, e: &BytesStart<'_>, offset: usize, empty: bool) -> Res<()> {
        self.depth_check(0, offset)?;
        self.count_element(offset)?;
        let at = self.pos(offset);
        if self.stack.is_empty() {
            if self.root_done {
                return Err(self.xml_err(offset, "a second root element"));
            }
            if name != "html" {
                return Err(TemplateError::NotHtml {
                    at,
                    found: name.to_owned(),
                });
            }
        }
        let attrs = self.attrs(e, offset)?;
        if self.script.is_some() {
            let mut walk = std::mem::take(&mut self.walk);
            let r = self.coded_open(&mut walk, name, &attrs, at);
            walk.stack.push(name.to_owned());
            self.walk = walk;
            return r;
        }
        self.safety(name, &attrs, at)?;
        if let Some(id) = attrs.get("id") {
            let id = id.trim();
            if id.is_empty() || id.len() > 128 || id.chars().any(char::is_whitespace) {
                return Err(TemplateError::Invalid {
                    at,
                    message: format!(
                        "<{name}> has an id that is empty, over 128 characters or has spaces"
                    ),
                });
            }
            if self.ids.insert(id.to_owned(), at).is_some() {
                return Err(TemplateError::DuplicateId {
                    at,
                    id: id.to_owned(),
                });
            }
        }
        let in_head = self.in_element("head");
        let in_body = self.in_element("body");
        match name {
            "body" => self.has_body = true,
            "title" if in_head => self.captures.push(Capture {
                kind: CaptureKind::Title,
                depth: self.stack.len(),
                text: String::new(),
            }),
            "meta" => {
                if let (Some(n), Some(c)) = (attrs.text("name"), attrs.get("content")) {
                    let c = collapse(c);
                    self.metadata
                        .entry(n)
                        .and_modify(|v| {
                            v.push_str("; ");
                            v.push_str(&c);
                        })
                        .or_insert(c);
                }
            }
            // only the coded content gets here (see `safety`)
            "script" if !empty => {
                self.script = Some(self.stack.len());
                self.walk = CodedWalk::default();
            }
            "section" if in_body => {
                let code = self.data_code(&attrs, at, "section")?;
                let name_attr = attrs
                    .get("data-section-name")
                    .map(collapse)
                    .filter(|s| !s.is_empty());
                self.open_sections.push(OpenSection {
                    section: Section {
                        id: attrs.text("id"),
                        name: name_attr.clone().unwrap_or_default(),
                        code,
                        items: Vec::new(),
                    },
                    depth: self.stack.len(),
                    has_header: false,
                    named: name_attr.is_some(),
                });
            }
            "section" => {
                return Err(TemplateError::Invalid {
                    at,
                    message: "<section> outside <body>".into(),
                });
            }
            "header" | "h1" | "h2" | "h3" | "h4" | "h5" | "h6" => {
                if let Some(top) = self.open_sections.last_mut()
                    && !top.has_header
                {
                    top.has_header = true;
                    let i = self.open_sections.len() - 1;
                    self.captures.push(Capture {
                        kind: CaptureKind::Header(i),
                        depth: self.stack.len(),
                        text: String::new(),
                    });
                }
            }
            "label" => self.captures.push(Capture {
                kind: CaptureKind::Label {
                    for_id: attrs.text("for"),
                },
                depth: self.stack.len(),
                text: String::new(),
            }),
            "input" | "select" | "textarea" => {
                if !in_body {
                    return Err(TemplateError::Invalid {
                        at,
                        message: format!("<{name}> outside <body>"),
                    });
                }
                self.field(name, &attrs, at, empty)?;
            }
            "option" => {
                if self.select.is_none() {
                    return Err(TemplateError::Invalid {
                        at,
                        message: "<option> outside a <select>".into(),
                    });
                }
                let code = self.data_code(&attrs, at, "option")?;
                self.option = Some(OpenOption {
                    value: attrs.get("value").map(str::to_owned),
                    id: attrs.text("id"),
                    code,
                    at,
                });
                self.captures.push(Capture {
                    kind: CaptureKind::Option,
                    depth: self.stack.len(),
                    text: String::new(),
                });
            }
            _ => {}
        }
        Ok(())
    }

    /// Refuse what would run or load code should the template be shown as HTML.
    fn safety(&self, name: &str, attrs: &Attrs, at: Position) -> Res<()> {
        let unsafe_ = |message: String| Err(TemplateError::Unsafe { at, message });
        match name {
            "script" => {
                let ty = attrs.get("type").unwrap_or("").trim().to_ascii_lowercase();
                if ty != "text/xml" || !self.in_element("head") {
                    return unsafe_(
                        "a <script> other than the coded content (<script type=\"text/xml\"> in <head>)".into(),
                    );
                }
            }
            "iframe" | "frame" | "frameset" | "object" | "embed" | "applet" | "base" | "portal" => {
                return unsafe_(format!("<{name}> is not allowed"));
            }
            "meta"
                if attrs
                    .get("http-equiv")
                    .is_some_and(|v| v.trim().eq_ignore_ascii_case("refresh")) =>
            {
                return unsafe_("<meta http-equiv=\"refresh\"> is not allowed".into());
            }
            _ => {}
        }
        for (k, v) in &attrs.0 {
            if k.starts_with("on") {
                return unsafe_(format!("event-handler attribute {k} on <{name}>"));
            }
            if matches!(
                k.as_str(),
                "href"
                    | "src"
                    | "action"
                    | "formaction"
                    | "xlink:href"
                    | "data"
                    | "poster"
                    | "srcdoc"
            ) {
                let squashed: String = v
                    .chars()
                    .filter(|c| !c.is_whitespace() && !c.is_control())
                    .collect::<String>()
                    .to_ascii_lowercase();
                if squashed.starts_with("javascript:")
                    || squashed.starts_with("vbscript:")
                    || k == "srcdoc"
                {
                    return unsafe_(format!("script URL in {k} on <{name}>"));
                }
            }
        }
        Ok(())
    }

    /// A code from `data-code-value`/`-scheme`/`-meaning`.
    fn data_code(&self, attrs: &Attrs, at: Position, what: &str) -> Res<Option<Code>> {
        let (value, scheme, meaning) = (
            attrs.text("data-code-value"),
            attrs.text("data-code-scheme"),
            attrs.get("data-code-meaning").map(collapse),
        );
        match (value, scheme) {
            (None, None) if meaning.is_none() => Ok(None),
            (Some(value), Some(scheme)) => {
                let code = Code {
                    value,
                    scheme,
                    meaning: meaning.unwrap_or_default(),
                };
                check_code(&code, at)?;
                Ok(Some(code))
            }
            _ => Err(TemplateError::Invalid {
                at,
                message: format!("a coded {what} needs both data-code-value and data-code-scheme"),
            }),
        }
    }

    fn field(&mut self, element: &str, attrs: &Attrs, at: Position, empty: bool) -> Res<()> {
        let Some(id) = attrs.text("id") else {
            return Err(TemplateError::MissingId {
                at,
                element: element.to_owned(),
            });
        };
        if self.open_sections.is_empty() {
            return Err(TemplateError::Invalid {
                at,
                message: format!("field \"{id}\" is outside any <section>"),
            });
        }
        if self.select.is_some() {
            return Err(TemplateError::Invalid {
                at,
                message: format!("field \"{id}\" inside a <select>"),
            });
        }
        if self.fields.len() >= MAX_FIELDS {
            return Err(TemplateError::TooMany {
                at,
                what: "fields",
                limit: MAX_FIELDS,
            });
        }
        let invalid = |message: String| TemplateError::InvalidField {
            at,
            id: id.clone(),
            message,
        };
        let declared = attrs
            .text("data-field-type")
            .map(|t| t.to_ascii_uppercase());
        let input_type = attrs
            .text("type")
            .map(|t| t.to_ascii_lowercase())
            .unwrap_or_else(|| "text".into());
        let unknown = |t: &str| TemplateError::UnknownFieldType {
            at,
            id: id.clone(),
            field_type: t.to_owned(),
        };
        let base = match element {
            "textarea" => match declared.as_deref() {
                None | Some("TEXT") => "TEXT_MULTI",
                Some(t @ ("NUMBER" | "DATE" | "SELECTION")) => {
                    return Err(invalid(format!("a <textarea> cannot be of type {t}")));
                }
                Some(t) => return Err(unknown(t)),
            },
            "select" => match declared.as_deref() {
                None | Some("SELECTION") => "SELECTION",
                Some(t @ ("NUMBER" | "DATE" | "TEXT")) => {
                    return Err(invalid(format!("a <select> cannot be of type {t}")));
                }
                Some(t) => return Err(unknown(t)),
            },
            _ => {
                let from_input = match input_type.as_str() {
                    "text" | "search" => "TEXT",
                    "number" => "NUMBER",
                    "date" => "DATE",
                    other => {
                        return Err(invalid(format!(
                            "<input type=\"{other}\"> is not supported (text, number or date; a <select> for choices)"
                        )));
                    }
                };
                match declared.as_deref() {
                    None => from_input,
                    Some(t @ ("TEXT" | "NUMBER" | "DATE"))
                        if t == from_input || input_type == "text" =>
                    {
                        t
                    }
                    Some(t @ ("TEXT" | "NUMBER" | "DATE")) => {
                        return Err(invalid(format!(
                            "data-field-type {t} does not match <input type=\"{input_type}\">"
                        )));
                    }
                    Some("SELECTION") => {
                        return Err(invalid(
                            "a SELECTION field must be a <select> with <option>s".into(),
                        ));
                    }
                    Some(t) => return Err(unknown(t)),
                }
            }
        };
        let kind = match base {
            "TEXT" => FieldKind::Text { multiline: false },
            "TEXT_MULTI" => FieldKind::Text { multiline: true },
            "DATE" => FieldKind::Date,
            "SELECTION" => FieldKind::Choice {
                options: Vec::new(),
                multiple: attrs.has("multiple"),
            },
            _ => {
                let num = |k: &str| -> Res<Option<f64>> {
                    match attrs.text(k) {
                        None => Ok(None),
                        Some(s) if k == "step" && s.eq_ignore_ascii_case("any") => Ok(None),
                        Some(s) => match s.parse::<f64>() {
                            Ok(n) if n.is_finite() => Ok(Some(n)),
                            _ => Err(invalid(format!("{k}=\"{s}\" is not a number"))),
                        },
                    }
                };
                let (min, max, step) = (num("min")?, num("max")?, num("step")?);
                if let (Some(lo), Some(hi)) = (min, max)
                    && lo > hi
                {
                    return Err(invalid(format!(
                        "min {} is greater than max {}",
                        fmt_num(lo, None),
                        fmt_num(hi, None)
                    )));
                }
                if step.is_some_and(|s| s <= 0.0) {
                    return Err(invalid("step must be greater than 0".into()));
                }
                let decimals = match attrs.text("data-field-decimals") {
                    Some(d) => match d.parse::<u32>() {
                        Ok(n) if n <= 6 => Some(n),
                        _ => {
                            return Err(invalid(format!(
                                "data-field-decimals=\"{d}\" is not 0 to 6"
                            )));
                        }
                    },
                    None => attrs.text("step").and_then(|s| {
                        (!s.eq_ignore_ascii_case("any")).then(|| {
                            s.split_once('.')
                                .map_or(0, |(_, frac)| frac.len().min(6) as u32)
                        })
                    }),
                };
                let unit = attrs.text("data-field-unit");
                if unit.as_ref().is_some_and(|u| u.chars().count() > 32) {
                    return Err(invalid(
                        "data-field-unit is longer than 32 characters".into(),
                    ));
                }
                FieldKind::Number {
                    min,
                    max,
                    step,
                    unit,
                    decimals,
                }
            }
        };
        let completion_action = match attrs
            .text("data-field-completion-action")
            .map(|a| a.to_ascii_uppercase())
        {
            None => CompletionAction::None,
            Some(a) => match a.as_str() {
                "NONE" => CompletionAction::None,
                "ALERT" => CompletionAction::Alert,
                "PROHIBIT" => CompletionAction::Prohibit,
                _ => {
                    return Err(invalid(format!(
                        "data-field-completion-action \"{a}\" is not NONE, ALERT or PROHIBIT"
                    )));
                }
            },
        };
        let code = self.data_code(attrs, at, "field")?;
        let default = match element {
            "input" => attrs
                .get("value")
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned),
            _ => None,
        };
        let idx = self.fields.len();
        self.fields.push(Field {
            id: id.clone(),
            name: attrs.text("name"),
            label: attrs.text("title").unwrap_or_default(),
            kind,
            required: attrs.has("required") || completion_action == CompletionAction::Prohibit,
            completion_action,
            code,
            default,
        });
        self.field_at.push(at);
        if let Some(top) = self.open_sections.last_mut() {
            top.section.items.push(Item::Field(id.clone()));
        }
        // a <label> around the field labels it
        for c in self.captures.iter_mut().rev() {
            if let CaptureKind::Label {
                for_id: for_id @ None,
            } = &mut c.kind
            {
                *for_id = Some(id.clone());
                break;
            }
        }
        match element {
            "select" if empty => return Err(TemplateError::NoOptions { at, id }),
            "select" => self.select = Some((idx, self.stack.len())),
            "textarea" if !empty => self.captures.push(Capture {
                kind: CaptureKind::Textarea(idx),
                depth: self.stack.len(),
                text: String::new(),
            }),
            _ => {}
        }
        Ok(())
    }

    /// An end tag (or the end of an empty element): pop the stack and finish what it closed.
    fn close(&mut self, offset: usize) -> Res<()> {
        let depth = self.stack.len().saturating_sub(1);
        let Some(name) = self.stack.pop() else {
            return Err(self.xml_err(offset, "an end tag without a start tag"));
        };
        if self.stack.is_empty() {
            self.root_done = true;
        }
        if let Some(script_depth) = self.script {
            if depth == script_depth {
                self.script = None;
                if !self.walk.stack.is_empty() {
                    return Err(self.xml_err(offset, "unclosed element in the coded content"));
                }
            } else {
                let mut walk = std::mem::take(&mut self.walk);
                walk.stack.pop();
                let r = self.coded_close(&mut walk, &name);
                self.walk = walk;
                return r;
            }
            return Ok(());
        }
        // finish captures opened at this depth
        while self.captures.last().is_some_and(|c| c.depth == depth) {
            let Some(c) = self.captures.pop() else { break };
            self.finish_capture(c, offset)?;
        }
        match name.as_str() {
            "section" if self.open_sections.last().is_some_and(|s| s.depth == depth) => {
                if let Some(open) = self.open_sections.pop() {
                    let mut s = open.section;
                    if s.name.is_empty() {
                        s.name = s.id.clone().unwrap_or_else(|| "Section".into());
                    }
                    match self.open_sections.last_mut() {
                        Some(parent) => parent.section.items.push(Item::Section(s)),
                        None => self.sections.push(s),
                    }
                }
            }
            "select" if self.select.is_some_and(|(_, d)| d == depth) => {
                if let Some((idx, _)) = self.select.take() {
                    let f = &self.fields[idx];
                    if matches!(&f.kind, FieldKind::Choice { options, .. } if options.is_empty()) {
                        return Err(TemplateError::NoOptions {
                            at: self.field_at[idx],
                            id: f.id.clone(),
                        });
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn finish_capture(&mut self, c: Capture, offset: usize) -> Res<()> {
        let text = collapse(&c.text);
        match c.kind {
            CaptureKind::Title => self.title = Some(text),
            CaptureKind::Label { for_id: Some(id) } => {
                let label = text.trim_end_matches(':').trim_end().to_owned();
                if !label.is_empty() {
                    self.labels.entry(id).or_insert(label);
                }
            }
            CaptureKind::Label { for_id: None } => {}
            CaptureKind::Header(i) => {
                if let Some(s) = self.open_sections.get_mut(i)
                    && !s.named
                    && !text.is_empty()
                {
                    s.section.name = text;
                }
            }
            CaptureKind::Textarea(idx) => {
                let t = c.text.trim();
                if !t.is_empty() {
                    self.fields[idx].default = Some(t.to_owned());
                }
            }
            CaptureKind::Option => {
                let Some(o) = self.option.take() else {
                    return Ok(());
                };
                let Some((idx, _)) = self.select else {
                    return Ok(());
                };
                let value = o.value.unwrap_or_else(|| text.clone());
                if value.is_empty() {
                    return Ok(()); // a placeholder such as "— choose —"
                }
                let label = if text.is_empty() { value.clone() } else { text };
                let f = &mut self.fields[idx];
                let id = f.id.clone();
                if let FieldKind::Choice { options, .. } = &mut f.kind {
                    if options.iter().any(|x| x.value == value) {
                        return Err(TemplateError::InvalidField {
                            at: o.at,
                            id,
                            message: format!("the option value \"{value}\" appears twice"),
                        });
                    }
                    if options.len() >= MAX_OPTIONS {
                        return Err(TemplateError::TooMany {
                            at: self.pos(offset),
                            what: "options",
                            limit: MAX_OPTIONS,
                        });
                    }
                    if let Some(oid) = o.id {
                        self.option_ids.insert(oid, (idx, options.len()));
                    }
                    options.push(ChoiceOption {
                        value,
                        label,
                        code: o.code,
                    });
                }
            }
        }
        Ok(())
    }

    fn text(&mut self, s: &str, offset: usize) -> Res<()> {
        if self.stack.is_empty() {
            if s.trim().is_empty() {
                return Ok(());
            }
            return Err(self.xml_err(offset, "text outside the root element"));
        }
        if self.script.is_some() {
            return Ok(()); // text of coded-content elements (status, flags) is not kept
        }
        for c in &mut self.captures {
            c.text.push_str(s);
        }
        Ok(())
    }

    // ---- coded content

    /// Coded content given as text (a comment or CDATA in the script): parse it as XML.
    fn coded_text(&mut self, content: &str, base: usize) -> Res<()> {
        if content.trim().is_empty() || !content.contains('<') {
            return Ok(());
        }
        let mut reader = Reader::from_str(content);
        let mut walk = CodedWalk::default();
        loop {
            let start = base + usize::try_from(reader.buffer_position()).unwrap_or(0);
            let event = match reader.read_event() {
                Ok(e) => e,
                Err(err) => {
                    let at = base + usize::try_from(reader.error_position()).unwrap_or(0);
                    return Err(self.xml_err(at, format!("in the coded content: {err}")));
                }
            };
            let self_closing = matches!(event, Event::Empty(_));
            match event {
                Event::Eof => break,
                Event::Start(e) | Event::Empty(e) => {
                    let name = e.name().as_ref().to_ascii_lowercase();
                    self.depth_check(walk.stack.len(), start)?;
                    self.count_element(start)?;
                    let attrs = self.attrs(&e, start)?;
                    let at = self.pos(start);
                    self.coded_open(&mut walk, &name, &attrs, at)?;
                    walk.stack.push(name.clone());
                    if self_closing {
                        walk.stack.pop();
                        self.coded_close(&mut walk, &name)?;
                    }
                }
                Event::End(e) => {
                    let name = e.name().as_ref().to_ascii_lowercase();
                    walk.stack.pop();
                    self.coded_close(&mut walk, &name)?;
                }
                _ => {}
            }
        }
        if let Some(open) = walk.stack.last() {
            return Err(self.xml_err(
                base + content.len(),
                format!("in the coded content: <{open}> is not closed"),
            ));
        }
        Ok(())
    }

    fn coded_open(
        &mut self,
        walk: &mut CodedWalk,
        name: &str,
        attrs: &Attrs,
        at: Position,
    ) -> Res<()> {
        match name {
            "coding_scheme" => {
                if let Some(n) = attrs.text("name") {
                    self.coded.schemes.insert(
                        n.to_lowercase(),
                        attrs.text("designator").unwrap_or_default(),
                    );
                }
            }
            "entry" => {
                walk.entry = attrs.text("origtxt");
                walk.entry_has_code = false;
            }
            "code" if walk.stack.last().is_some_and(|p| p == "term") => {
                let (Some(value), Some(scheme)) = (attrs.text("value"), attrs.text("scheme"))
                else {
                    return Err(TemplateError::Invalid {
                        at,
                        message: "a coded-content <code> needs value and scheme".into(),
                    });
                };
                let code = Code {
                    value,
                    scheme,
                    meaning: attrs.get("meaning").map(collapse).unwrap_or_default(),
                };
                check_code(&code, at)?;
                let in_entry = walk.stack.iter().any(|n| n == "entry");
                match (&walk.entry, in_entry) {
                    (Some(orig), true) => {
                        if !walk.entry_has_code {
                            walk.entry_has_code = true;
                            self.coded.entries.push((orig.clone(), code, at));
                        }
                    }
                    (None, true) => {}
                    (_, false) => self.coded.codes.push((code, at)),
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn coded_close(&mut self, walk: &mut CodedWalk, name: &str) -> Res<()> {
        if name == "entry" {
            walk.entry = None;
        }
        Ok(())
    }

    // ---- the end

    fn finish(mut self) -> Res<Template> {
        let title = self
            .title
            .take()
            .filter(|t| !t.is_empty())
            .ok_or(TemplateError::MissingTitle)?;
        if !self.has_body {
            return Err(TemplateError::MissingBody);
        }
        // labels
        for f in &mut self.fields {
            if let Some(l) = self.labels.get(&f.id) {
                f.label = l.clone();
            }
            if f.label.is_empty() {
                f.label = f.name.clone().unwrap_or_else(|| f.id.clone());
            }
        }
        let index: HashMap<String, usize> = self
            .fields
            .iter()
            .enumerate()
            .map(|(i, f)| (f.id.clone(), i))
            .collect();
        // codes: check schemes, attach entries (data-code-* attributes win)
        let schemes = self.coded.schemes.clone();
        let declared = |c: &Code, at: Position| -> Res<()> {
            if !schemes.is_empty() && !schemes.contains_key(&c.scheme.to_lowercase()) {
                return Err(TemplateError::Invalid {
                    at,
                    message: format!(
                        "the coding scheme \"{}\" of code {} is not declared in <coding_schemes>",
                        c.scheme, c.value
                    ),
                });
            }
            Ok(())
        };
        for (c, at) in &self.coded.codes {
            declared(c, *at)?;
        }
        for (f, at) in self.fields.iter().zip(&self.field_at) {
            if let Some(c) = &f.code {
                declared(c, *at)?;
            }
            if let FieldKind::Choice { options, .. } = &f.kind {
                for c in options.iter().filter_map(|o| o.code.as_ref()) {
                    declared(c, *at)?;
                }
            }
        }
        let mut section_codes: HashMap<String, Code> = HashMap::new();
        for (orig, code, at) in std::mem::take(&mut self.coded.entries) {
            declared(&code, at)?;
            if let Some(&i) = index.get(&orig) {
                let f = &mut self.fields[i];
                f.code.get_or_insert(code);
            } else if let Some(&(fi, oi)) = self.option_ids.get(&orig) {
                if let FieldKind::Choice { options, .. } = &mut self.fields[fi].kind
                    && let Some(o) = options.get_mut(oi)
                {
                    o.code.get_or_insert(code);
                }
            } else {
                section_codes.entry(orig).or_insert(code);
            }
        }
        fn attach(s: &mut Section, codes: &HashMap<String, Code>) {
            if s.code.is_none()
                && let Some(c) = s.id.as_ref().and_then(|id| codes.get(id))
            {
                s.code = Some(c.clone());
            }
            if let Some(c) = &mut s.code
                && c.meaning.is_empty()
            {
                c.meaning = s.name.clone();
            }
            for item in &mut s.items {
                if let Item::Section(sub) = item {
                    attach(sub, codes);
                }
            }
        }
        for s in &mut self.sections {
            attach(s, &section_codes);
        }
        // empty meanings fall back to the label
        for f in &mut self.fields {
            if let Some(c) = &mut f.code
                && c.meaning.is_empty()
            {
                c.meaning = f.label.clone();
            }
            if let FieldKind::Choice { options, .. } = &mut f.kind {
                for o in options {
                    if let Some(c) = &mut o.code
                        && c.meaning.is_empty()
                    {
                        c.meaning = o.label.clone();
                    }
                }
            }
        }
        Ok(Template {
            title,
            metadata: self.metadata,
            codes: self.coded.codes.into_iter().map(|(c, _)| c).collect(),
            sections: self.sections,
            fields: self.fields,
            index,
        })
    }
}

fn check_code(c: &Code, at: Position) -> Res<()> {
    if c.value.chars().count() > 64
        || c.scheme.chars().count() > 64
        || c.meaning.chars().count() > 256
    {
        return Err(TemplateError::Invalid {
            at,
            message: "a code value or scheme is over 64 characters, or a meaning over 256".into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small template around `body` (sections and fields), with optional extra `<head>` content.
    fn doc(head: &str, body: &str) -> String {
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!DOCTYPE html>\n<html xmlns=\"http://www.w3.org/1999/xhtml\">\n\
             <head><title>Test template</title>{head}</head>\n<body>\n{body}\n</body>\n</html>\n"
        )
    }

    fn parse_err(head: &str, body: &str) -> TemplateError {
        match Template::parse(&doc(head, body)) {
            Ok(_) => panic!("accepted: {body}"),
            Err(e) => e,
        }
    }

    fn values(json: serde_json::Value) -> Values {
        serde_json::from_value(json).expect("values json")
    }

    const SAMPLE: &str = r#"<section id="findings" data-section-name="Findings">
  <header class="level1">Ignored header</header>
  <p><label for="lungs">Lungs:</label> <input type="text" id="lungs" name="lungs" required="required"/></p>
  <p><label for="size">Largest&nbsp;nodule</label>
     <input type="number" id="size" min="1" max="100" step="0.1" data-field-unit="mm"
            data-code-value="81827009" data-code-scheme="SCT" data-code-meaning="Diameter"/></p>
  <p><label for="seen">Date seen</label><input type="date" id="seen" data-field-type="DATE"/></p>
  <p><label for="side">Side</label>
    <select id="side" data-field-type="SELECTION">
      <option value="">– choose –</option>
      <option value="r" data-code-value="RID1302" data-code-scheme="RADLEX" data-code-meaning="right lung">Right</option>
      <option value="l">Left</option>
    </select></p>
  <p><label for="signs">Signs</label>
    <select id="signs" multiple="multiple"><option value="a">Alpha</option><option value="b">Beta</option></select></p>
  <section id="sub"><header class="level2">Pleura &amp; chest wall</header>
    <p><label>Effusion <input type="text" id="effusion" data-field-completion-action="ALERT"/></label></p>
  </section>
</section>
<section id="impression-section" data-section-name="Impression">
  <textarea id="impression" data-field-completion-action="PROHIBIT">Default text</textarea>
</section>"#;

    const CODED_HEAD: &str = r#"<meta name="dcterms.identifier" content="test:1"/>
<meta name="dcterms.contributor" content="A"/><meta name="dcterms.contributor" content="B"/>
<script type="text/xml"><!--
<template_attributes>
  <coding_schemes>
    <coding_scheme name="RADLEX" designator="2.16.840.1.113883.6.256"/>
    <coding_scheme name="SCT" designator="2.16.840.1.113883.6.96"/>
  </coding_schemes>
  <term><code meaning="computed tomography" value="RID10321" scheme="RADLEX"/></term>
  <coded_content>
    <entry ORIGTXT="findings"><term><code meaning="findings" value="RID28486" scheme="RADLEX"/></term></entry>
    <entry ORIGTXT="lungs"><term><code meaning="lungs" value="RID13437" scheme="RadLex"/></term></entry>
    <entry ORIGTXT="stale-id"><term><code meaning="x" value="RID1" scheme="RADLEX"/></term></entry>
  </coded_content>
</template_attributes>
--></script>"#;

    fn sample() -> Template {
        Template::parse(&doc(CODED_HEAD, SAMPLE)).expect("sample parses")
    }

    #[test]
    fn parses_the_sample() {
        let t = sample();
        assert_eq!(t.title(), "Test template");
        assert_eq!(t.meta("dcterms.identifier"), Some("test:1"));
        assert_eq!(t.meta("dcterms.contributor"), Some("A; B"));
        assert_eq!(t.codes().len(), 1);
        assert_eq!(t.codes()[0].value, "RID10321");
        let ids: Vec<&str> = t.fields().iter().map(|f| f.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "lungs",
                "size",
                "seen",
                "side",
                "signs",
                "effusion",
                "impression"
            ]
        );

        let lungs = t.field("lungs").expect("lungs");
        assert_eq!(lungs.label, "Lungs");
        assert!(lungs.required);
        assert_eq!(lungs.kind, FieldKind::Text { multiline: false });
        assert_eq!(
            lungs.code.as_ref().map(|c| c.value.as_str()),
            Some("RID13437")
        );

        let size = t.field("size").expect("size");
        assert_eq!(size.label, "Largest\u{a0}nodule".replace('\u{a0}', " "));
        assert_eq!(
            size.kind,
            FieldKind::Number {
                min: Some(1.0),
                max: Some(100.0),
                step: Some(0.1),
                unit: Some("mm".into()),
                decimals: Some(1)
            }
        );
        assert_eq!(
            size.code.as_ref().map(|c| c.meaning.as_str()),
            Some("Diameter")
        );

        assert_eq!(t.field("seen").map(|f| &f.kind), Some(&FieldKind::Date));
        let side = t.field("side").expect("side");
        match &side.kind {
            FieldKind::Choice { options, multiple } => {
                assert!(!multiple);
                assert_eq!(options.len(), 2, "the placeholder is not an option");
                assert_eq!(
                    options[0].code.as_ref().map(|c| c.value.as_str()),
                    Some("RID1302")
                );
            }
            k => panic!("side: {k:?}"),
        }
        assert!(matches!(
            t.field("signs").map(|f| &f.kind),
            Some(FieldKind::Choice { multiple: true, .. })
        ));
        let effusion = t.field("effusion").expect("effusion");
        assert_eq!(
            effusion.label, "Effusion",
            "a wrapping <label> labels its field"
        );
        assert_eq!(effusion.completion_action, CompletionAction::Alert);
        assert!(!effusion.required);
        let imp = t.field("impression").expect("impression");
        assert!(imp.required, "PROHIBIT means required");
        assert_eq!(imp.default.as_deref(), Some("Default text"));
        assert_eq!(imp.label, "impression", "no label: the id");

        // sections: names, nesting, codes
        let s = t.sections();
        assert_eq!(s.len(), 2);
        assert_eq!(
            s[0].name, "Findings",
            "data-section-name wins over the header"
        );
        assert_eq!(
            s[0].code.as_ref().map(|c| c.value.as_str()),
            Some("RID28486")
        );
        let sub = s[0].items.iter().find_map(|i| match i {
            Item::Section(sub) => Some(sub),
            Item::Field(_) => None,
        });
        assert_eq!(sub.map(|s| s.name.as_str()), Some("Pleura & chest wall"));
        assert_eq!(s[1].name, "Impression");
    }

    #[test]
    fn parses_every_starter_template_and_renders_every_field() {
        let starters = starter_templates();
        assert_eq!(starters.len(), 5);
        for (id, xhtml) in starters {
            let t = Template::parse(xhtml).unwrap_or_else(|e| panic!("{id}: {e}"));
            assert!(!t.title().is_empty(), "{id}");
            assert!(
                t.meta("dcterms.identifier")
                    .is_some_and(|m| m.ends_with(id)),
                "{id}"
            );
            assert_eq!(t.meta("dcterms.language"), Some("en"), "{id}");
            assert!(
                t.field("impression").is_some_and(|f| f.required),
                "{id}: a required impression"
            );
            assert!(t.fields().len() >= 5, "{id}");
            // a valid value for every field
            let mut v = Values::new();
            for f in t.fields() {
                let value = match &f.kind {
                    FieldKind::Text { .. } => Value::Text(format!("text of {}", f.id)),
                    FieldKind::Number { min, .. } => Value::Number(min.unwrap_or(0.0) + 1.0),
                    FieldKind::Date => Value::Text("2024-02-29".into()),
                    FieldKind::Choice { options, .. } => {
                        Value::Choice(vec![options[0].value.clone()])
                    }
                };
                v.insert(f.id.clone(), value);
            }
            assert_eq!(t.validate(&v), Ok(()), "{id}");
            let html = t.render_html(&v, "");
            let text: String = t
                .sections_text(&v)
                .iter()
                .map(|(h, b)| format!("{h}\n{b}\n"))
                .collect();
            for f in t.fields() {
                assert!(
                    html.contains(&format!("data-field=\"{}\"", f.id)),
                    "{id}: {} not in the HTML",
                    f.id
                );
                let shown = display_value(f, &v[&f.id])
                    .map(|s| s.text)
                    .unwrap_or_default();
                assert!(!shown.is_empty(), "{id}: {}", f.id);
                assert!(
                    text.contains(&shown),
                    "{id}: {} ({shown}) not in the text",
                    f.id
                );
            }
            // every section with a field shows up
            for s in t.sections() {
                assert!(html.contains(&esc(&s.name)), "{id}: section {}", s.name);
            }
            // an empty report renders without sections
            assert!(!t.render_html(&Values::new(), "").contains("report-section"));
            assert!(t.sections_text(&Values::new()).is_empty());
            assert!(t.validate_partial(&Values::new()).is_ok(), "{id}");
            assert!(t.validate(&Values::new()).is_err(), "{id}");
        }
    }

    #[test]
    fn refuses_invalid_templates_with_the_reason() {
        let sec = |inner: &str| format!("<section id=\"s\">{inner}</section>");
        // not XML
        let e = parse_err("", &sec("<p><input type=\"text\" id=\"a\"></p>"));
        assert!(matches!(e, TemplateError::Xml { .. }), "{e}");
        assert!(
            e.to_string().contains("line 6"),
            "the position of the mismatched end tag: {e}"
        );
        let e = Template::parse("<html><head><title>x</title></head><body>").err();
        assert!(matches!(e, Some(TemplateError::Xml { .. })), "{e:?}");
        assert!(matches!(
            Template::parse("just text"),
            Err(TemplateError::Xml { .. })
        ));
        assert!(matches!(
            Template::parse(""),
            Err(TemplateError::Xml { .. })
        ));
        assert!(matches!(
            Template::parse(&doc("", &sec("<p>&bogus;</p>"))),
            Err(TemplateError::Xml { message, .. }) if message.contains("bogus")
        ));
        assert!(matches!(
            Template::parse("<html><head><title>x</title></head><body/></html><html/>"),
            Err(TemplateError::Xml { .. })
        ));
        // the root, the title and the body
        assert!(matches!(
            Template::parse("<div><title>x</title></div>"),
            Err(TemplateError::NotHtml { found, .. }) if found == "div"
        ));
        assert_eq!(
            Template::parse("<html><head></head><body/></html>").err(),
            Some(TemplateError::MissingTitle)
        );
        assert_eq!(
            Template::parse("<html><head><title>  </title></head><body/></html>").err(),
            Some(TemplateError::MissingTitle)
        );
        assert_eq!(
            Template::parse("<html><head><title>x</title></head></html>").err(),
            Some(TemplateError::MissingBody)
        );
        // ids
        let e = parse_err("", &sec("<input id=\"a\"/><input id=\"a\"/>"));
        assert!(
            matches!(&e, TemplateError::DuplicateId { id, .. } if id == "a"),
            "{e}"
        );
        assert!(
            e.to_string().contains("line 6") && e.to_string().contains("duplicate id \"a\""),
            "{e}"
        );
        assert!(matches!(
            parse_err("", &sec("<input type=\"text\"/>")),
            TemplateError::MissingId { .. }
        ));
        // field types
        let e = parse_err("", &sec("<input id=\"a\" data-field-type=\"VIDEO\"/>"));
        assert!(
            matches!(&e, TemplateError::UnknownFieldType { field_type, .. } if field_type == "VIDEO"),
            "{e}"
        );
        assert!(matches!(
            parse_err("", &sec("<input id=\"a\" type=\"checkbox\"/>")),
            TemplateError::InvalidField { .. }
        ));
        assert!(matches!(
            parse_err(
                "",
                &sec("<input id=\"a\" type=\"date\" data-field-type=\"NUMBER\"/>")
            ),
            TemplateError::InvalidField { .. }
        ));
        assert!(matches!(
            parse_err("", &sec("<textarea id=\"a\" data-field-type=\"NUMBER\"/>")),
            TemplateError::InvalidField { .. }
        ));
        // selects
        let e = parse_err("", &sec("<select id=\"a\"></select>"));
        assert!(
            matches!(&e, TemplateError::NoOptions { id, .. } if id == "a"),
            "{e}"
        );
        assert!(matches!(
            parse_err("", &sec("<select id=\"a\"/>")),
            TemplateError::NoOptions { .. }
        ));
        assert!(matches!(
            parse_err(
                "",
                &sec("<select id=\"a\"><option value=\"\">choose</option></select>")
            ),
            TemplateError::NoOptions { .. }
        ));
        assert!(matches!(
            parse_err(
                "",
                &sec("<select id=\"a\"><option>x</option><option value=\"x\">X</option></select>")
            ),
            TemplateError::InvalidField { .. }
        ));
        assert!(matches!(
            parse_err("", &sec("<option value=\"x\">x</option>")),
            TemplateError::Invalid { .. }
        ));
        // numbers
        let e = parse_err(
            "",
            &sec("<input type=\"number\" id=\"n\" min=\"10\" max=\"5\" required=\"required\"/>"),
        );
        assert!(
            matches!(&e, TemplateError::InvalidField { id, message, .. } if id == "n" && message.contains("min 10")),
            "{e}"
        );
        assert!(matches!(
            parse_err("", &sec("<input type=\"number\" id=\"n\" max=\"lots\"/>")),
            TemplateError::InvalidField { .. }
        ));
        assert!(matches!(
            parse_err("", &sec("<input type=\"number\" id=\"n\" step=\"0\"/>")),
            TemplateError::InvalidField { .. }
        ));
        assert!(matches!(
            parse_err(
                "",
                &sec("<input id=\"n\" data-field-completion-action=\"MAYBE\"/>")
            ),
            TemplateError::InvalidField { .. }
        ));
        // structure
        assert!(matches!(
            parse_err("", "<p><input id=\"a\"/></p>"),
            TemplateError::Invalid { .. }
        ));
        assert!(matches!(
            parse_err("", &sec("<input id=\"a\" data-code-value=\"RID1\"/>")),
            TemplateError::Invalid { .. }
        ));
        // a code in an undeclared scheme
        let head = "<script type=\"text/xml\"><coding_schemes><coding_scheme name=\"RADLEX\"/></coding_schemes></script>";
        let e = parse_err(
            head,
            &sec("<input id=\"a\" data-code-value=\"1\" data-code-scheme=\"LN\"/>"),
        );
        assert!(e.to_string().contains("\"LN\""), "{e}");
        // broken coded content
        let e = parse_err(
            "<script type=\"text/xml\"><!-- <entry ORIGTXT=\"a\"> --></script>",
            &sec(""),
        );
        assert!(e.to_string().contains("coded content"), "{e}");
    }

    #[test]
    fn refuses_unsafe_templates() {
        let sec = |inner: &str| format!("<section id=\"s\">{inner}</section>");
        for (head, body) in [
            ("<script>alert(1)</script>", sec("")),
            (
                "<script type=\"text/javascript\">alert(1)</script>",
                sec(""),
            ),
            ("", sec("<script type=\"text/xml\"/>")),
            ("", sec("<p onclick=\"alert(1)\">x</p>")),
            ("", sec("<input id=\"a\" onfocus=\"alert(1)\"/>")),
            ("", sec("<a href=\" java\tscript:alert(1)\">x</a>")),
            ("", sec("<iframe src=\"https://example.org\"/>")),
            ("", sec("<object data=\"x.swf\"/>")),
            (
                "<meta http-equiv=\"refresh\" content=\"0;url=https://example.org\"/>",
                sec(""),
            ),
            ("<base href=\"https://example.org/\"/>", sec("")),
        ] {
            let e = Template::parse(&doc(head, &body)).err();
            assert!(
                matches!(e, Some(TemplateError::Unsafe { .. })),
                "{head} {body}: {e:?}"
            );
        }
    }

    #[test]
    fn enforces_size_and_depth_limits() {
        let big = doc(
            "",
            &format!(
                "<section id=\"s\"><p>{}</p></section>",
                "x".repeat(MAX_TEMPLATE_BYTES)
            ),
        );
        assert!(matches!(
            Template::parse(&big),
            Err(TemplateError::TooLarge { .. })
        ));
        let deep = doc(
            "",
            &format!(
                "{}{}",
                "<div>".repeat(MAX_DEPTH),
                "</div>".repeat(MAX_DEPTH)
            ),
        );
        assert!(matches!(
            Template::parse(&deep),
            Err(TemplateError::TooDeep { .. })
        ));
        let deep_coded = doc(
            &format!(
                "<script type=\"text/xml\"><!--{}{}--></script>",
                "<a>".repeat(MAX_DEPTH),
                "</a>".repeat(MAX_DEPTH)
            ),
            "",
        );
        assert!(matches!(
            Template::parse(&deep_coded),
            Err(TemplateError::TooDeep { .. })
        ));
        let fine = doc(
            "",
            &format!("{}{}", "<div>".repeat(20), "</div>".repeat(20)),
        );
        assert!(Template::parse(&fine).is_ok());
    }

    #[test]
    fn validates_values() {
        let t = sample();
        let ok = values(serde_json::json!({
            "lungs": "Clear.", "size": 12.5, "seen": "2024-02-29", "side": "r", "signs": ["a", "b"],
            "impression": "Normal."
        }));
        assert_eq!(t.validate(&ok), Ok(()));

        let problems = t
            .validate(&values(serde_json::json!({})))
            .expect_err("required fields");
        let missing: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(missing, ["lungs", "impression"]);
        assert!(problems.iter().all(|p| p.problem == Problem::Missing));
        assert_eq!(problems[0].to_string(), "Lungs (lungs): required");
        // blank counts as empty
        let blank = values(serde_json::json!({"lungs": "  ", "impression": null}));
        assert_eq!(t.validate(&blank).map_err(|p| p.len()), Err(2));
        assert_eq!(t.validate_partial(&blank), Ok(()));

        let cases: Vec<(serde_json::Value, &str, Problem)> = vec![
            (
                serde_json::json!({"size": 0.5}),
                "size",
                Problem::BelowMinimum { min: 1.0 },
            ),
            (
                serde_json::json!({"size": 100.5}),
                "size",
                Problem::AboveMaximum { max: 100.0 },
            ),
            (
                serde_json::json!({"size": "big"}),
                "size",
                Problem::NotANumber,
            ),
            (
                serde_json::json!({"size": ["1"]}),
                "size",
                Problem::WrongType {
                    expected: "a number",
                },
            ),
            (
                serde_json::json!({"seen": "2023-02-29"}),
                "seen",
                Problem::InvalidDate {
                    value: "2023-02-29".into(),
                },
            ),
            (
                serde_json::json!({"seen": "2024-13-01"}),
                "seen",
                Problem::InvalidDate {
                    value: "2024-13-01".into(),
                },
            ),
            (
                serde_json::json!({"seen": "1.2.2024"}),
                "seen",
                Problem::InvalidDate {
                    value: "1.2.2024".into(),
                },
            ),
            (
                serde_json::json!({"seen": 20240101}),
                "seen",
                Problem::WrongType {
                    expected: "a date (YYYY-MM-DD)",
                },
            ),
            (
                serde_json::json!({"side": "x"}),
                "side",
                Problem::NotAnOption { value: "x".into() },
            ),
            (
                serde_json::json!({"side": ["r", "l"]}),
                "side",
                Problem::TooManyChoices,
            ),
            (
                serde_json::json!({"signs": ["a", "a"]}),
                "signs",
                Problem::DuplicateChoice { value: "a".into() },
            ),
            (
                serde_json::json!({"signs": ["a", "z"]}),
                "signs",
                Problem::NotAnOption { value: "z".into() },
            ),
            (
                serde_json::json!({"lungs": 3}),
                "lungs",
                Problem::WrongType { expected: "text" },
            ),
            (
                serde_json::json!({"lungs": "x".repeat(MAX_TEXT_CHARS + 1)}),
                "lungs",
                Problem::TooLong {
                    limit: MAX_TEXT_CHARS,
                },
            ),
            (
                serde_json::json!({"nonsense": "x"}),
                "nonsense",
                Problem::UnknownField,
            ),
        ];
        for (json, field, problem) in cases {
            let v = values(json.clone());
            let partial = t.validate_partial(&v).expect_err(&json.to_string());
            assert_eq!(partial.len(), 1, "{json}: {partial:?}");
            assert_eq!(
                (partial[0].field.as_str(), &partial[0].problem),
                (field, &problem),
                "{json}"
            );
            assert!(!partial[0].to_string().is_empty());
        }
        // numbers as text, one choice as a string, dates as text
        let v = values(serde_json::json!({"size": " 7.25 ", "side": "l", "seen": "2020-01-31"}));
        assert_eq!(t.validate_partial(&v), Ok(()));
        // "" is no choice: empty, not an error
        assert_eq!(
            t.validate_partial(&values(serde_json::json!({"side": ""}))),
            Ok(())
        );
        // alerts
        assert_eq!(
            t.alerts(&ok)
                .iter()
                .map(|p| p.field.as_str())
                .collect::<Vec<_>>(),
            ["effusion"]
        );
    }

    #[test]
    fn values_round_trip_as_plain_json() {
        let json = serde_json::json!({"a": "text", "b": 1.5, "c": ["x", "y"], "d": null});
        let v = values(json);
        assert_eq!(v["a"], Value::Text("text".into()));
        assert_eq!(v["b"], Value::Number(1.5));
        assert_eq!(v["c"], Value::Choice(vec!["x".into(), "y".into()]));
        assert_eq!(v["d"], Value::Text(String::new()));
        let mut w = v.clone();
        w.insert("e".into(), Value::Date("2024-01-01".into()));
        assert_eq!(
            serde_json::to_value(&w).ok(),
            Some(
                serde_json::json!({"a": "text", "b": 1.5, "c": ["x", "y"], "d": "", "e": "2024-01-01"})
            )
        );
        assert!(serde_json::from_value::<Values>(serde_json::json!({"a": {"b": 1}})).is_err());
        assert!(serde_json::from_value::<Values>(serde_json::json!({"a": true})).is_err());
    }

    #[test]
    fn html_is_escaped() {
        let t = Template::parse(&doc(
            "",
            r#"<section id="s" data-section-name="A &lt;b&gt; &amp; &quot;c&quot;">
                 <label for="t">Label &lt;i&gt;</label><input id="t"/>
                 <select id="c"><option value="&lt;v&gt;">&lt;script&gt;x&lt;/script&gt;</option></select>
               </section>"#,
        ))
        .expect("parse");
        let v = values(serde_json::json!({
            "t": "<script>alert('x')</script> & \"quotes\"",
            "c": "<v>",
        }));
        let html = t.render_html(&v, "<img src=x onerror=alert(1)>\n\nsecond paragraph");
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(
            !html.contains("<b>") && !html.contains("<i>") && !html.contains("<v>"),
            "{html}"
        );
        assert!(
            html.contains(
                "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;quotes&quot;"
            ),
            "{html}"
        );
        assert!(html.contains("A &lt;b&gt; &amp; &quot;c&quot;"), "{html}");
        assert!(html.contains("Label &lt;i&gt;"), "{html}");
        assert!(
            html.contains("&lt;img src=x onerror=alert(1)&gt;"),
            "{html}"
        );
        assert!(html.contains("<p>second paragraph</p>"), "{html}");
        // a value outside the options is shown (escaped) as entered
        let html = t.render_html(&values(serde_json::json!({"c": "<b>bad</b>"})), "");
        assert!(
            html.contains("&lt;b&gt;bad&lt;/b&gt;") && !html.contains("<b>"),
            "{html}"
        );
        // unknown fields are left out
        let html = t.render_html(&values(serde_json::json!({"zzz": "<secret>"})), "");
        assert!(!html.contains("secret"), "{html}");
    }

    #[test]
    fn renders_values_and_codes() {
        let t = sample();
        let v = values(serde_json::json!({
            "lungs": "Clear.", "size": 12, "side": "r", "signs": ["b", "a"],
            "effusion": "Small left.", "impression": "Line one\nLine two"
        }));
        let html = t.render_html(&v, "");
        assert!(html.starts_with("<div class=\"radris-report\">"), "{html}");
        assert!(
            html.contains("<h1 class=\"report-title\">Test template</h1>"),
            "{html}"
        );
        assert!(html.contains("<h2>Findings</h2>"), "{html}");
        assert!(html.contains("<h3>Pleura &amp; chest wall</h3>"), "{html}");
        assert!(html.contains("<span class=\"report-label\">Largest nodule</span>: <span class=\"report-value\">12.0 mm</span>"), "{html}");
        assert!(html.contains("<span class=\"report-value\">Right</span> <span class=\"report-code\" title=\"RADLEX RID1302\">(right lung)</span>"), "{html}");
        assert!(html.contains("data-code=\"RADLEX:RID28486\""), "{html}");
        assert!(html.contains("Beta, Alpha"), "{html}");
        assert!(html.contains("Line one<br>Line two"), "{html}");
        assert!(!html.contains("Narrative"), "{html}");
    }

    #[test]
    fn sections_as_text() {
        let t = sample();
        let v = values(serde_json::json!({
            "lungs": "Clear.", "size": 8.04, "seen": "2024-05-01", "side": "r",
            "effusion": "None.", "impression": "No acute findings.\nFollow-up in 12 months."
        }));
        let s = t.sections_text(&v);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].0, "Findings");
        assert_eq!(
            s[0].1,
            "Lungs: Clear.\nLargest nodule: 8.0 mm\nDate seen: 2024-05-01\nSide: Right (right lung)\n\
             Pleura & chest wall:\n  Effusion: None."
        );
        // the impression field has no label of its own: its section's heading stands for it
        assert_eq!(
            s[1],
            (
                "Impression".into(),
                "No acute findings.\nFollow-up in 12 months.".into()
            )
        );
        // a field labelled like its section is shown without the label
        let xr = Template::parse(
            starter_templates()
                .iter()
                .find(|(id, _)| *id == "xr-chest")
                .map(|(_, x)| *x)
                .expect("xr-chest"),
        )
        .expect("parse");
        let s = xr.sections_text(&values(
            serde_json::json!({"impression": "No acute disease."}),
        ));
        assert_eq!(
            s,
            vec![("Impression".to_owned(), "No acute disease.".to_owned())]
        );
    }

    #[test]
    fn coded_findings() {
        let t = sample();
        let v = values(serde_json::json!({
            "lungs": "Clear.", "size": 12.5, "side": "r", "signs": ["a"], "impression": "x"
        }));
        let f = t.coded_findings(&v);
        assert_eq!(f.len(), 3, "{f:?}");
        assert_eq!(f[0].field, "lungs");
        assert_eq!(
            f[0].concept.as_ref().map(|c| c.value.as_str()),
            Some("RID13437")
        );
        assert_eq!(
            f[0].value,
            CodedValue::Text {
                text: "Clear.".into()
            }
        );
        assert_eq!(f[0].section, "Findings");
        assert_eq!(
            f[0].section_code.as_ref().map(|c| c.value.as_str()),
            Some("RID28486")
        );
        assert_eq!(
            f[1].value,
            CodedValue::Number {
                value: 12.5,
                unit: Some("mm".into())
            }
        );
        assert_eq!(
            f[1].concept.as_ref().map(|c| c.meaning.as_str()),
            Some("Diameter")
        );
        assert_eq!(f[2].field, "side");
        assert_eq!(f[2].concept, None, "an uncoded field with a coded option");
        assert!(matches!(&f[2].value, CodedValue::Code { code } if code.value == "RID1302"));
        // the uncoded option of an uncoded field gives nothing; invalid values give nothing
        let v = values(serde_json::json!({"side": "l", "size": 1000}));
        assert!(t.coded_findings(&v).is_empty());

        // the lung-nodule starter: site (coded option of a coded field) and diameter
        let lung = Template::parse(
            starter_templates()
                .iter()
                .find(|(id, _)| *id == "lung-nodule")
                .map(|(_, x)| *x)
                .expect("lung"),
        )
        .expect("parse");
        let v = values(
            serde_json::json!({"nodule1_location": "rul", "nodule1_diameter": 7.5, "nodule2_location": "lingula"}),
        );
        let f = lung.coded_findings(&v);
        assert_eq!(f.len(), 3, "{f:?}");
        assert_eq!(
            f[0].concept.as_ref().map(|c| c.value.as_str()),
            Some("363698007")
        );
        assert!(matches!(&f[0].value, CodedValue::Code { code } if code.value == "RID1303"));
        assert_eq!(
            f[0].section_code.as_ref().map(|c| c.value.as_str()),
            Some("RID50149")
        );
        assert_eq!(
            f[1].value,
            CodedValue::Number {
                value: 7.5,
                unit: Some("mm".into())
            }
        );
        assert_eq!(
            f[2].value,
            CodedValue::Text {
                text: "Lingula".into()
            }
        );
    }

    #[test]
    fn reads_published_style_templates() {
        // sections without ids, coded content in a comment, labels with colons, defaults,
        // a stylesheet link, single quotes
        let xhtml = "<!DOCTYPE html>\n<html>\n<head>\n<meta charset='UTF-8'/>\n\
            <link rel='stylesheet' type='text/css' href='style.css'/>\n\
            <script type='text/xml'>\n<!--\n<template_attributes><coded_content>\
            <entry ORIGTXT='T1'><term><code meaning='heart' value='RID1385' scheme='RadLex'/></term></entry>\
            </coded_content></template_attributes>\n-->\n</script>\n<title>Chest</title>\n</head>\n<body>\n\
            <section data-section-name='Findings'><header class='level1'>Findings</header>\
            <p><label for='T1'>Heart:</label><input type='text' id='T1' name='Heart' value='Normal.'/></p></section>\n\
            <section><header>Impression</header><textarea id='T2' name='Impression'>No acute disease. </textarea></section>\n\
            </body>\n</html>";
        let t = Template::parse(xhtml).expect("parse");
        let heart = t.field("T1").expect("T1");
        assert_eq!(
            (heart.label.as_str(), heart.default.as_deref()),
            ("Heart", Some("Normal."))
        );
        assert_eq!(
            heart.code.as_ref().map(|c| c.value.as_str()),
            Some("RID1385")
        );
        assert_eq!(t.field("T2").map(|f| f.label.as_str()), Some("Impression"));
        assert_eq!(t.sections()[1].name, "Impression");
        assert_eq!(t.sections()[1].id, None);
        let s = t.sections_text(&values(
            serde_json::json!({"T1": "Enlarged.", "T2": "Cardiomegaly."}),
        ));
        assert_eq!(
            s,
            vec![
                ("Findings".into(), "Heart: Enlarged.".into()),
                ("Impression".into(), "Cardiomegaly.".into())
            ]
        );
        // CDATA works as well
        let cdata = xhtml.replace("<!--", "<![CDATA[").replace("-->", "]]>");
        let t = Template::parse(&cdata).expect("cdata");
        assert!(t.field("T1").is_some_and(|f| f.code.is_some()));
    }

    #[test]
    fn error_positions_are_lines_and_columns() {
        let xhtml = "<html>\n<head><title>x</title></head>\n<body>\n  <section id=\"a\"><input id=\"a\"/></section>\n</body>\n</html>";
        match Template::parse(xhtml) {
            Err(TemplateError::DuplicateId { at, .. }) => assert_eq!(
                at,
                Position {
                    line: 4,
                    column: 19
                }
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn dates_and_numbers() {
        for (d, ok) in [
            ("2024-02-29", true),
            ("2000-02-29", true),
            ("1900-02-29", false),
            ("2023-04-31", false),
            ("2023-12-31", true),
            ("2023-00-10", false),
            ("2023-01-00", false),
            ("0999-01-01", false),
            ("2023-1-01", false),
            ("2023-01-01T00:00", false),
            ("２０２３-01-01", false),
        ] {
            assert_eq!(valid_date(d), ok, "{d}");
        }
        assert_eq!(fmt_num(12.0, None), "12");
        assert_eq!(fmt_num(12.25, None), "12.25");
        assert_eq!(fmt_num(-0.0, None), "0");
        assert_eq!(fmt_num(7.0, Some(1)), "7.0");
    }
}
