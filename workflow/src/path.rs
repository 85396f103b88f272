//! Paths and payload templates of the States language in JSONPath mode.
//!
//! - [`Path`]: `InputPath`, `OutputPath`, `ItemsPath`, the `.$` fields of templates,
//!   `Variable`, `SecondsPath`… A path that starts with `$$` reads the context object. Paths
//!   are RFC 9535 JSONPath ([`serde_json_path`]); a *definite* path (no wildcard, slice,
//!   union, filter or descendant segment) selects one value and fails when it selects
//!   none, an indefinite one selects the array of what it finds, as Step Functions does.
//! - [`ReferencePath`]: `ResultPath`, the one path that writes: `$`, or fields and indexes
//!   (`$.a.b`, `$['a b']`, `$.list[0]`).
//! - [`Template`]: `Parameters`, `ResultSelector`, `ItemSelector`: JSON whose `name.$`
//!   fields are paths or intrinsic functions ([`crate::intrinsics`]).

use serde_json::{Map, Value};
use serde_json_path::JsonPath;

use crate::error::{StatesError, names};
use crate::intrinsics::Call;

/// A compiled JSONPath over the state's input (`$…`) or the context object (`$$…`).
#[derive(Debug, Clone)]
pub struct Path {
    text: String,
    context: bool,
    definite: bool,
    compiled: JsonPath,
}

impl PartialEq for Path {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Path {
    /// Compile `text`; the error says why it is not a path.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (context, rest) = match text.strip_prefix("$$") {
            Some(rest) => (true, format!("${rest}")),
            None if text.starts_with('$') => (false, text.to_owned()),
            None => return Err(format!("{text:?} is not a path (a path starts with $)")),
        };
        let compiled =
            JsonPath::parse(&rest).map_err(|e| format!("{text:?} is not a valid JSONPath: {e}"))?;
        Ok(Self {
            text: text.to_owned(),
            context,
            definite: is_definite(&rest),
            compiled,
        })
    }

    /// The path as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the path reads the context object (`$$`).
    pub fn is_context(&self) -> bool {
        self.context
    }

    /// What the path selects from `input` (or `context`); `None` when a definite path
    /// selects nothing.
    pub fn find(&self, input: &Value, context: &Value) -> Option<Value> {
        let doc = if self.context { context } else { input };
        let nodes = self.compiled.query(doc);
        if self.definite {
            nodes.exactly_one().ok().cloned()
        } else {
            Some(Value::Array(nodes.all().into_iter().cloned().collect()))
        }
    }

    /// [`Self::find`], with `States.Runtime` naming the path and the input when it
    /// selects nothing.
    pub fn select(&self, input: &Value, context: &Value) -> Result<Value, StatesError> {
        self.find(input, context).ok_or_else(|| {
            StatesError::runtime(format!(
                "Invalid path '{}': the path could not be found in the input '{}'",
                self.text,
                if self.context { context } else { input }
            ))
        })
    }
}

/// Whether a JSONPath selects at most one value by its syntax: no `*`, `..`, filter,
/// slice or union outside quoted names.
fn is_definite(path: &str) -> bool {
    let mut quote: Option<char> = None;
    let mut depth = 0usize;
    let mut prev = ' ';
    let mut escaped = false;
    for c in path.chars() {
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            prev = c;
            continue;
        }
        match c {
            '\'' | '"' => quote = Some(c),
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            '*' | '?' => return false,
            '.' if prev == '.' => return false,
            ':' | ',' if depth > 0 => return false,
            _ => {}
        }
        prev = c;
    }
    true
}

/// One step of a [`ReferencePath`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// An object member.
    Field(String),
    /// An array element.
    Index(usize),
}

/// `ResultPath`: where a state's result goes in its input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferencePath {
    text: String,
    steps: Vec<Step>,
}

impl ReferencePath {
    /// Parse `$`, `$.a.b`, `$['a']`, `$.a[0]`; anything else (wildcards, filters, the
    /// context object) is refused.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("{text:?} is not a reference path ({why})");
        let mut rest = text
            .strip_prefix('$')
            .ok_or_else(|| bad("it must start with $"))?;
        if rest.starts_with('$') {
            return Err(bad("the context object cannot be written"));
        }
        let mut steps = Vec::new();
        while !rest.is_empty() {
            if let Some(r) = rest.strip_prefix('.') {
                let end = r.find(['.', '[']).unwrap_or(r.len());
                let name = &r[..end];
                if name.is_empty() || name.contains(['*', '?', '@', ']', '\'', '"', ' ']) {
                    return Err(bad("a field name is empty or has a wildcard"));
                }
                steps.push(Step::Field(name.to_owned()));
                rest = &r[end..];
            } else if let Some(r) = rest.strip_prefix('[') {
                let end = r.find(']').ok_or_else(|| bad("an unclosed ["))?;
                let inner = r[..end].trim();
                if let Some(q) = inner
                    .strip_prefix('\'')
                    .and_then(|s| s.strip_suffix('\''))
                    .or_else(|| inner.strip_prefix('"').and_then(|s| s.strip_suffix('"')))
                {
                    steps.push(Step::Field(q.to_owned()));
                } else {
                    let index = inner
                        .parse::<usize>()
                        .map_err(|_| bad("only names and non-negative indexes"))?;
                    steps.push(Step::Index(index));
                }
                rest = &r[end + 1..];
            } else {
                return Err(bad("expected . or ["));
            }
        }
        Ok(Self {
            text: text.to_owned(),
            steps,
        })
    }

    /// The path as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// `input` with `value` at this path (`$`: the value itself). Missing objects on the
    /// way are created; a step through something else is `States.ResultPathMatchFailure`.
    pub fn apply(&self, input: Value, value: Value) -> Result<Value, StatesError> {
        if self.steps.is_empty() {
            return Ok(value);
        }
        let mut root = input;
        let fail = |root: &Value| {
            StatesError::new(
                names::RESULT_PATH_MATCH_FAILURE,
                format!(
                    "Unable to apply ResultPath \"{}\" to input \"{}\"",
                    self.text, root
                ),
            )
        };
        let snapshot = root.clone();
        let mut slot = &mut root;
        for step in &self.steps {
            slot = match step {
                Step::Field(name) => {
                    if slot.is_null() {
                        *slot = Value::Object(Map::new());
                    }
                    match slot {
                        Value::Object(map) => map.entry(name.clone()).or_insert(Value::Null),
                        _ => return Err(fail(&snapshot)),
                    }
                }
                Step::Index(i) => match slot {
                    Value::Array(items) if *i < items.len() => &mut items[*i],
                    _ => return Err(fail(&snapshot)),
                },
            };
        }
        *slot = value;
        Ok(root)
    }
}

/// A payload template: `Parameters`, `ResultSelector`, `ItemSelector`.
#[derive(Debug, Clone, PartialEq)]
pub enum Template {
    /// A value taken as it is.
    Literal(Value),
    /// An object whose members are templates (a `name.$` member is stored as `name`).
    Object(Vec<(String, Template)>),
    /// An array of templates.
    Array(Vec<Template>),
    /// A `name.$` member's path.
    Path(Path),
    /// A `name.$` member's intrinsic function.
    Intrinsic(Call),
}

impl Template {
    /// Compile `value`; the error names the member (`a.b.$`) and the problem.
    pub fn parse(value: &Value) -> Result<Self, (String, String)> {
        match value {
            Value::Object(map) => {
                let mut members = Vec::with_capacity(map.len());
                for (key, v) in map {
                    if let Some(name) = key.strip_suffix(".$") {
                        let Value::String(expr) = v else {
                            return Err((key.clone(), "a .$ field takes a string".to_owned()));
                        };
                        let t = if expr.starts_with('$') {
                            Template::Path(Path::parse(expr).map_err(|e| (key.clone(), e))?)
                        } else if expr.starts_with("States.") {
                            Template::Intrinsic(Call::parse(expr).map_err(|e| (key.clone(), e))?)
                        } else {
                            return Err((
                                key.clone(),
                                format!(
                                    "{expr:?} is neither a path ($…) nor an intrinsic function (States.…)"
                                ),
                            ));
                        };
                        members.push((name.to_owned(), t));
                    } else {
                        let t = Template::parse(v).map_err(|(f, e)| (format!("{key}.{f}"), e))?;
                        members.push((key.clone(), t));
                    }
                }
                Ok(Template::Object(members))
            }
            Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, v)| Template::parse(v).map_err(|(f, e)| (format!("[{i}].{f}"), e)))
                .collect::<Result<_, _>>()
                .map(Template::Array),
            other => Ok(Template::Literal(other.clone())),
        }
    }

    /// The payload for `input` and `context`.
    pub fn render(&self, input: &Value, context: &Value) -> Result<Value, StatesError> {
        match self {
            Template::Literal(v) => Ok(v.clone()),
            Template::Object(members) => {
                let mut out = Map::with_capacity(members.len());
                for (name, t) in members {
                    let v = match t {
                        Template::Path(p) => p.find(input, context).ok_or_else(|| {
                            StatesError::runtime(format!(
                                "The JSONPath '{}' specified for the field '{name}.$' could not be found in the input '{}'",
                                p.as_str(),
                                if p.is_context() { context } else { input }
                            ))
                        })?,
                        other => other.render(input, context)?,
                    };
                    out.insert(name.clone(), v);
                }
                Ok(Value::Object(out))
            }
            Template::Array(items) => items
                .iter()
                .map(|t| t.render(input, context))
                .collect::<Result<_, _>>()
                .map(Value::Array),
            Template::Path(p) => p.select(input, context),
            Template::Intrinsic(call) => call.eval(input, context),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn definite_paths_select_one_value_and_others_an_array() {
        let input = json!({"a": {"b": [1, 2, 3]}, "c": [{"d": 1}, {"d": 2}]});
        let ctx = json!({"Execution": {"Id": "x"}});
        let p = |t: &str| Path::parse(t).expect(t);
        assert_eq!(p("$.a.b[1]").find(&input, &ctx), Some(json!(2)));
        assert_eq!(p("$.c[*].d").find(&input, &ctx), Some(json!([1, 2])));
        assert_eq!(p("$.missing").find(&input, &ctx), None);
        assert_eq!(p("$$.Execution.Id").find(&input, &ctx), Some(json!("x")));
        assert_eq!(p("$").find(&input, &ctx), Some(input.clone()));
        assert_eq!(p("$.c[?@.d > 1].d").find(&input, &ctx), Some(json!([2])));
    }

    #[test]
    fn reference_paths_create_objects_and_refuse_to_step_through_scalars() {
        let r = ReferencePath::parse("$.a.b").expect("path");
        assert_eq!(
            r.apply(json!({"x": 1}), json!(5)).expect("applies"),
            json!({"x": 1, "a": {"b": 5}})
        );
        assert_eq!(
            r.apply(json!({"a": "s"}), json!(5))
                .expect_err("a string")
                .error,
            names::RESULT_PATH_MATCH_FAILURE
        );
        assert!(ReferencePath::parse("$.a[*]").is_err());
        assert!(ReferencePath::parse("$$.a").is_err());
        assert_eq!(
            ReferencePath::parse("$['a b'][0]")
                .expect("path")
                .apply(json!({"a b": [0]}), json!(1))
                .expect("applies"),
            json!({"a b": [1]})
        );
    }
}
