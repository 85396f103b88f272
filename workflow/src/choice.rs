//! The rules of a Choice state: `And`, `Or`, `Not`, and `Variable` with one comparison.
//!
//! A comparison of values of different types is false (as in Step Functions); a
//! `Variable` that selects nothing is `States.Runtime`, except under `IsPresent`.

use chrono::{DateTime, FixedOffset};
use serde_json::Value;

use crate::error::StatesError;
use crate::path::Path;

/// What a comparison compares with.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    /// A literal.
    Value(Value),
    /// The value at a path (`…Path` operators).
    Path(Path),
}

/// The comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `StringEquals`.
    StringEquals,
    /// `StringLessThan`.
    StringLessThan,
    /// `StringGreaterThan`.
    StringGreaterThan,
    /// `StringLessThanEquals`.
    StringLessThanEquals,
    /// `StringGreaterThanEquals`.
    StringGreaterThanEquals,
    /// `StringMatches` (`*` wildcards).
    StringMatches,
    /// `NumericEquals`.
    NumericEquals,
    /// `NumericLessThan`.
    NumericLessThan,
    /// `NumericGreaterThan`.
    NumericGreaterThan,
    /// `NumericLessThanEquals`.
    NumericLessThanEquals,
    /// `NumericGreaterThanEquals`.
    NumericGreaterThanEquals,
    /// `BooleanEquals`.
    BooleanEquals,
    /// `TimestampEquals`.
    TimestampEquals,
    /// `TimestampLessThan`.
    TimestampLessThan,
    /// `TimestampGreaterThan`.
    TimestampGreaterThan,
    /// `TimestampLessThanEquals`.
    TimestampLessThanEquals,
    /// `TimestampGreaterThanEquals`.
    TimestampGreaterThanEquals,
    /// `IsNull`.
    IsNull,
    /// `IsPresent`.
    IsPresent,
    /// `IsNumeric`.
    IsNumeric,
    /// `IsString`.
    IsString,
    /// `IsBoolean`.
    IsBoolean,
    /// `IsTimestamp`.
    IsTimestamp,
}

const OPS: [(&str, Op); 23] = [
    ("StringEquals", Op::StringEquals),
    ("StringLessThan", Op::StringLessThan),
    ("StringGreaterThan", Op::StringGreaterThan),
    ("StringLessThanEquals", Op::StringLessThanEquals),
    ("StringGreaterThanEquals", Op::StringGreaterThanEquals),
    ("StringMatches", Op::StringMatches),
    ("NumericEquals", Op::NumericEquals),
    ("NumericLessThan", Op::NumericLessThan),
    ("NumericGreaterThan", Op::NumericGreaterThan),
    ("NumericLessThanEquals", Op::NumericLessThanEquals),
    ("NumericGreaterThanEquals", Op::NumericGreaterThanEquals),
    ("BooleanEquals", Op::BooleanEquals),
    ("TimestampEquals", Op::TimestampEquals),
    ("TimestampLessThan", Op::TimestampLessThan),
    ("TimestampGreaterThan", Op::TimestampGreaterThan),
    ("TimestampLessThanEquals", Op::TimestampLessThanEquals),
    ("TimestampGreaterThanEquals", Op::TimestampGreaterThanEquals),
    ("IsNull", Op::IsNull),
    ("IsPresent", Op::IsPresent),
    ("IsNumeric", Op::IsNumeric),
    ("IsString", Op::IsString),
    ("IsBoolean", Op::IsBoolean),
    ("IsTimestamp", Op::IsTimestamp),
];

/// A choice rule.
#[derive(Debug, Clone, PartialEq)]
pub enum Rule {
    /// `And`.
    And(Vec<Rule>),
    /// `Or`.
    Or(Vec<Rule>),
    /// `Not`.
    Not(Box<Rule>),
    /// `Variable` compared by `op` with `operand`.
    Compare {
        /// `Variable`.
        variable: Path,
        /// The operator.
        op: Op,
        /// What it is compared with.
        operand: Operand,
    },
}

impl Rule {
    /// Parse a rule; `top` rules carry `Next` (checked by the caller). The error is
    /// (field suffix, problem).
    pub fn parse(v: &Value, top: bool) -> Result<Self, (String, String)> {
        let obj = v
            .as_object()
            .ok_or_else(|| (String::new(), "a rule is an object".to_owned()))?;
        let allowed_extra = |k: &str| k == "Comment" || (top && k == "Next");
        if let Some(list) = obj.get("And").or_else(|| obj.get("Or")) {
            let key = if obj.contains_key("And") { "And" } else { "Or" };
            if obj.keys().any(|k| k != key && !allowed_extra(k)) {
                return Err((
                    format!(".{key}"),
                    "And/Or rules take no other field".to_owned(),
                ));
            }
            let items = list
                .as_array()
                .filter(|a| !a.is_empty())
                .ok_or_else(|| (format!(".{key}"), "a non-empty array of rules".to_owned()))?;
            let rules = items
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    Rule::parse(r, false).map_err(|(f, e)| (format!(".{key}[{i}]{f}"), e))
                })
                .collect::<Result<Vec<_>, _>>()?;
            return Ok(if key == "And" {
                Rule::And(rules)
            } else {
                Rule::Or(rules)
            });
        }
        if let Some(inner) = obj.get("Not") {
            if obj.keys().any(|k| k != "Not" && !allowed_extra(k)) {
                return Err((
                    ".Not".to_owned(),
                    "a Not rule takes no other field".to_owned(),
                ));
            }
            return Rule::parse(inner, false)
                .map(|r| Rule::Not(Box::new(r)))
                .map_err(|(f, e)| (format!(".Not{f}"), e));
        }
        let variable = obj.get("Variable").and_then(Value::as_str).ok_or_else(|| {
            (
                ".Variable".to_owned(),
                "a comparison needs Variable".to_owned(),
            )
        })?;
        let variable = Path::parse(variable).map_err(|e| (".Variable".to_owned(), e))?;
        let mut found = None;
        for (k, val) in obj {
            if k == "Variable" || allowed_extra(k) {
                continue;
            }
            let (base, by_path) = match k.strip_suffix("Path") {
                Some(b) => (b, true),
                None => (k.as_str(), false),
            };
            let Some((_, op)) = OPS.iter().find(|(n, _)| *n == base) else {
                return Err((
                    format!(".{k}"),
                    format!("{k:?} is not a comparison operator"),
                ));
            };
            if found.is_some() {
                return Err((
                    format!(".{k}"),
                    "a rule has exactly one comparison".to_owned(),
                ));
            }
            let is_test = matches!(
                op,
                Op::IsNull
                    | Op::IsPresent
                    | Op::IsNumeric
                    | Op::IsString
                    | Op::IsBoolean
                    | Op::IsTimestamp
            );
            if by_path && is_test {
                return Err((
                    format!(".{k}"),
                    format!("{k:?} is not a comparison operator"),
                ));
            }
            let operand = if by_path {
                let p = val
                    .as_str()
                    .ok_or_else(|| (format!(".{k}"), "a path".to_owned()))?;
                Operand::Path(Path::parse(p).map_err(|e| (format!(".{k}"), e))?)
            } else {
                let ok = match op {
                    Op::StringEquals
                    | Op::StringLessThan
                    | Op::StringGreaterThan
                    | Op::StringLessThanEquals
                    | Op::StringGreaterThanEquals
                    | Op::StringMatches => val.is_string(),
                    Op::NumericEquals
                    | Op::NumericLessThan
                    | Op::NumericGreaterThan
                    | Op::NumericLessThanEquals
                    | Op::NumericGreaterThanEquals => val.is_number(),
                    Op::TimestampEquals
                    | Op::TimestampLessThan
                    | Op::TimestampGreaterThan
                    | Op::TimestampLessThanEquals
                    | Op::TimestampGreaterThanEquals => val.as_str().and_then(timestamp).is_some(),
                    _ => val.is_boolean(),
                };
                if !ok {
                    return Err((
                        format!(".{k}"),
                        format!("{val} is not a valid operand of {k}"),
                    ));
                }
                Operand::Value(val.clone())
            };
            found = Some((*op, operand));
        }
        let (op, operand) =
            found.ok_or_else(|| (String::new(), "a comparison needs an operator".to_owned()))?;
        Ok(Rule::Compare {
            variable,
            op,
            operand,
        })
    }

    /// Whether the rule holds for `input`.
    pub fn eval(&self, input: &Value, context: &Value) -> Result<bool, StatesError> {
        match self {
            Rule::And(rules) => {
                for r in rules {
                    if !r.eval(input, context)? {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
            Rule::Or(rules) => {
                for r in rules {
                    if r.eval(input, context)? {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            Rule::Not(r) => Ok(!r.eval(input, context)?),
            Rule::Compare {
                variable,
                op,
                operand,
            } => {
                let found = variable.find(input, context);
                if *op == Op::IsPresent {
                    return Ok(found.is_some() == (operand == &Operand::Value(Value::Bool(true))));
                }
                let value = found.ok_or_else(|| {
                    StatesError::runtime(format!(
                        "Invalid path '{}': The choice state's condition path references an invalid value.",
                        variable.as_str()
                    ))
                })?;
                let other = match operand {
                    Operand::Value(v) => v.clone(),
                    Operand::Path(p) => p.select(input, context)?,
                };
                Ok(compare(*op, &value, &other))
            }
        }
    }
}

fn timestamp(s: &str) -> Option<DateTime<FixedOffset>> {
    DateTime::parse_from_rfc3339(s).ok()
}

/// `*` matches any run of characters; `\*` is a literal star, `\\` a backslash.
fn matches_pattern(text: &str, pattern: &str) -> bool {
    #[derive(PartialEq)]
    enum Tok {
        Star,
        Char(char),
    }
    let mut toks = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => toks.push(Tok::Char(chars.next().unwrap_or('\\'))),
            '*' => toks.push(Tok::Star),
            c => toks.push(Tok::Char(c)),
        }
    }
    let text: Vec<char> = text.chars().collect();
    // Classic wildcard matching with backtracking to the last star.
    let (mut t, mut p) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match toks.get(p) {
            Some(Tok::Char(c)) if *c == text[t] => {
                t += 1;
                p += 1;
            }
            Some(Tok::Star) => {
                star = Some((p, t));
                p += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    toks[p..].iter().all(|t| *t == Tok::Star)
}

fn compare(op: Op, v: &Value, other: &Value) -> bool {
    use std::cmp::Ordering::{Equal, Greater, Less};
    let ord = |o: Option<std::cmp::Ordering>, want: &[std::cmp::Ordering]| {
        o.is_some_and(|o| want.contains(&o))
    };
    let strings = || match (v, other) {
        (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
        _ => None,
    };
    let numbers = || match (v.as_f64(), other.as_f64()) {
        (Some(a), Some(b)) if v.is_number() && other.is_number() => a.partial_cmp(&b),
        _ => None,
    };
    let times = || match (
        v.as_str().and_then(timestamp),
        other.as_str().and_then(timestamp),
    ) {
        (Some(a), Some(b)) => Some(a.cmp(&b)),
        _ => None,
    };
    match op {
        Op::StringEquals => ord(strings(), &[Equal]),
        Op::StringLessThan => ord(strings(), &[Less]),
        Op::StringGreaterThan => ord(strings(), &[Greater]),
        Op::StringLessThanEquals => ord(strings(), &[Less, Equal]),
        Op::StringGreaterThanEquals => ord(strings(), &[Greater, Equal]),
        Op::StringMatches => match (v, other) {
            (Value::String(a), Value::String(p)) => matches_pattern(a, p),
            _ => false,
        },
        Op::NumericEquals => ord(numbers(), &[Equal]),
        Op::NumericLessThan => ord(numbers(), &[Less]),
        Op::NumericGreaterThan => ord(numbers(), &[Greater]),
        Op::NumericLessThanEquals => ord(numbers(), &[Less, Equal]),
        Op::NumericGreaterThanEquals => ord(numbers(), &[Greater, Equal]),
        Op::BooleanEquals => v.is_boolean() && v == other,
        Op::TimestampEquals => ord(times(), &[Equal]),
        Op::TimestampLessThan => ord(times(), &[Less]),
        Op::TimestampGreaterThan => ord(times(), &[Greater]),
        Op::TimestampLessThanEquals => ord(times(), &[Less, Equal]),
        Op::TimestampGreaterThanEquals => ord(times(), &[Greater, Equal]),
        Op::IsNull => v.is_null() == (other == &Value::Bool(true)),
        Op::IsNumeric => v.is_number() == (other == &Value::Bool(true)),
        Op::IsString => v.is_string() == (other == &Value::Bool(true)),
        Op::IsBoolean => v.is_boolean() == (other == &Value::Bool(true)),
        Op::IsTimestamp => {
            v.as_str().and_then(timestamp).is_some() == (other == &Value::Bool(true))
        }
        Op::IsPresent => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_like_step_functions() {
        assert!(matches_pattern("log-2024.txt", "log-*.txt"));
        assert!(matches_pattern("a*b", "a\\*b"));
        assert!(!matches_pattern("axb", "a\\*b"));
        assert!(matches_pattern("", "*"));
        assert!(!matches_pattern("abc", "a*d"));
    }
}
