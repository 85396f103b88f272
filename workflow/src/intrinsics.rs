//! The intrinsic functions of the States language (`States.Format('{}#{}', $$.Execution.Id,
//! $$.State.Name)`…): parsed once with the definition into a [`Call`], evaluated per state.
//!
//! A call that cannot be evaluated (a wrong argument type, a count that does not match)
//! is `States.Runtime` naming the function and the problem, as AWS reports it (the
//! documentation reserves `States.IntrinsicFailure` "for future use").

use base64::Engine as _;
use serde_json::Value;

use crate::error::StatesError;
use crate::path::Path;

/// The largest array `States.ArrayRange` makes (the AWS limit).
pub const MAX_ARRAY_RANGE: usize = 1000;
/// The longest input of `States.Base64Encode` / `States.Base64Decode` (the AWS limit).
pub const MAX_BASE64_INPUT: usize = 10_000;
/// The longest input of `States.Hash` (the AWS limit).
pub const MAX_HASH_INPUT: usize = 10_000;

/// The functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    /// `States.Format(template, args…)`.
    Format,
    /// `States.StringToJson(text)`.
    StringToJson,
    /// `States.JsonToString(value)`.
    JsonToString,
    /// `States.Array(values…)`.
    Array,
    /// `States.ArrayPartition(array, size)`.
    ArrayPartition,
    /// `States.ArrayContains(array, value)`.
    ArrayContains,
    /// `States.ArrayRange(first, last, step)`.
    ArrayRange,
    /// `States.ArrayGetItem(array, index)`.
    ArrayGetItem,
    /// `States.ArrayLength(array)`.
    ArrayLength,
    /// `States.ArrayUnique(array)`.
    ArrayUnique,
    /// `States.Base64Encode(text)`.
    Base64Encode,
    /// `States.Base64Decode(text)`.
    Base64Decode,
    /// `States.Hash(data, algorithm)`.
    Hash,
    /// `States.JsonMerge(a, b, false)`.
    JsonMerge,
    /// `States.MathRandom(start, end[, seed])`.
    MathRandom,
    /// `States.MathAdd(a, b)`.
    MathAdd,
    /// `States.StringSplit(text, delimiters)`.
    StringSplit,
    /// `States.UUID()`.
    Uuid,
}

impl Function {
    fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "States.Format" => Self::Format,
            "States.StringToJson" => Self::StringToJson,
            "States.JsonToString" => Self::JsonToString,
            "States.Array" => Self::Array,
            "States.ArrayPartition" => Self::ArrayPartition,
            "States.ArrayContains" => Self::ArrayContains,
            "States.ArrayRange" => Self::ArrayRange,
            "States.ArrayGetItem" => Self::ArrayGetItem,
            "States.ArrayLength" => Self::ArrayLength,
            "States.ArrayUnique" => Self::ArrayUnique,
            "States.Base64Encode" => Self::Base64Encode,
            "States.Base64Decode" => Self::Base64Decode,
            "States.Hash" => Self::Hash,
            "States.JsonMerge" => Self::JsonMerge,
            "States.MathRandom" => Self::MathRandom,
            "States.MathAdd" => Self::MathAdd,
            "States.StringSplit" => Self::StringSplit,
            "States.UUID" => Self::Uuid,
            _ => return None,
        })
    }

    /// The allowed argument counts (min, max).
    fn arity(self) -> (usize, usize) {
        match self {
            Self::Format => (1, usize::MAX),
            Self::Array => (0, usize::MAX),
            Self::StringToJson
            | Self::JsonToString
            | Self::ArrayLength
            | Self::ArrayUnique
            | Self::Base64Encode
            | Self::Base64Decode => (1, 1),
            Self::ArrayPartition
            | Self::ArrayContains
            | Self::ArrayGetItem
            | Self::Hash
            | Self::MathAdd
            | Self::StringSplit => (2, 2),
            Self::ArrayRange | Self::JsonMerge => (3, 3),
            Self::MathRandom => (2, 3),
            Self::Uuid => (0, 0),
        }
    }
}

/// An argument of a call.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    /// A literal: a string in single quotes, a number, `true`, `false`, `null`.
    Literal(Value),
    /// A path over the input or the context object.
    Path(Path),
    /// A nested call.
    Call(Call),
}

/// A parsed intrinsic function call.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    name: String,
    function: Function,
    args: Vec<Arg>,
}

impl Call {
    /// Parse `States.Name(args…)`; the error says what is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut p = Parser {
            s: text.as_bytes(),
            text,
            i: 0,
        };
        let call = p.call()?;
        p.ws();
        if p.i != p.s.len() {
            return Err(format!(
                "unexpected text after the call in {text:?}: {:?}",
                &text[p.i..]
            ));
        }
        Ok(call)
    }

    /// Evaluate against `input` and `context`.
    pub fn eval(&self, input: &Value, context: &Value) -> Result<Value, StatesError> {
        let args = self
            .args
            .iter()
            .map(|a| match a {
                Arg::Literal(v) => Ok(v.clone()),
                Arg::Path(p) => p.select(input, context),
                Arg::Call(c) => c.eval(input, context),
            })
            .collect::<Result<Vec<_>, _>>()?;
        apply(&self.name, self.function, args)
    }
}

struct Parser<'a> {
    s: &'a [u8],
    text: &'a str,
    i: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn call(&mut self) -> Result<Call, String> {
        self.ws();
        let start = self.i;
        while self.i < self.s.len()
            && (self.s[self.i].is_ascii_alphanumeric() || self.s[self.i] == b'.')
        {
            self.i += 1;
        }
        let name = &self.text[start..self.i];
        let function = Function::from_name(name)
            .ok_or_else(|| format!("{name:?} is not an intrinsic function"))?;
        self.ws();
        if self.s.get(self.i) != Some(&b'(') {
            return Err(format!("expected ( after {name}"));
        }
        self.i += 1;
        let mut args = Vec::new();
        self.ws();
        if self.s.get(self.i) == Some(&b')') {
            self.i += 1;
        } else {
            loop {
                args.push(self.arg()?);
                self.ws();
                match self.s.get(self.i) {
                    Some(b',') => self.i += 1,
                    Some(b')') => {
                        self.i += 1;
                        break;
                    }
                    _ => return Err(format!("expected , or ) in the arguments of {name}")),
                }
            }
        }
        let (min, max) = function.arity();
        if args.len() < min || args.len() > max {
            return Err(format!(
                "{name} takes {} argument(s), not {}",
                if min == max {
                    min.to_string()
                } else if max == usize::MAX {
                    format!("at least {min}")
                } else {
                    format!("{min} to {max}")
                },
                args.len()
            ));
        }
        Ok(Call {
            name: name.to_owned(),
            function,
            args,
        })
    }

    fn arg(&mut self) -> Result<Arg, String> {
        self.ws();
        match self.s.get(self.i) {
            Some(b'\'') => {
                self.i += 1;
                let mut out = String::new();
                loop {
                    let Some(c) = self.text[self.i..].chars().next() else {
                        return Err("an unterminated string literal".to_owned());
                    };
                    self.i += c.len_utf8();
                    match c {
                        '\'' => break,
                        '\\' => {
                            let Some(n) = self.text[self.i..].chars().next() else {
                                return Err("an unterminated string literal".to_owned());
                            };
                            self.i += n.len_utf8();
                            // `\{` and `\}` stay escaped for States.Format; the others
                            // are the character itself.
                            if n == '{' || n == '}' {
                                out.push('\\');
                            }
                            out.push(n);
                        }
                        c => out.push(c),
                    }
                }
                Ok(Arg::Literal(Value::String(out)))
            }
            Some(b'$') => {
                let start = self.i;
                let mut depth = 0i32;
                let mut quote: Option<u8> = None;
                while self.i < self.s.len() {
                    let c = self.s[self.i];
                    if let Some(q) = quote {
                        if c == q {
                            quote = None;
                        }
                    } else {
                        match c {
                            b'\'' | b'"' => quote = Some(c),
                            b'[' | b'(' => depth += 1,
                            b']' => depth -= 1,
                            b')' if depth == 0 => break,
                            b')' => depth -= 1,
                            b',' if depth == 0 => break,
                            _ => {}
                        }
                    }
                    self.i += 1;
                }
                let text = self.text[start..self.i].trim_end();
                Path::parse(text).map(Arg::Path)
            }
            Some(b'S') => self.call().map(Arg::Call),
            _ => {
                let start = self.i;
                while self.i < self.s.len() && !matches!(self.s[self.i], b',' | b')') {
                    self.i += 1;
                }
                let text = self.text[start..self.i].trim();
                match serde_json::from_str::<Value>(text) {
                    Ok(v @ (Value::Number(_) | Value::Bool(_) | Value::Null)) => {
                        Ok(Arg::Literal(v))
                    }
                    _ => Err(format!(
                        "{text:?} is not an argument (a 'string', a number, true, false, null, a path or a call)"
                    )),
                }
            }
        }
    }
}

fn fail(name: &str, problem: impl std::fmt::Display) -> StatesError {
    StatesError::intrinsic(format!("{name}: {problem}"))
}

fn as_array<'a>(name: &str, v: &'a Value, what: &str) -> Result<&'a Vec<Value>, StatesError> {
    v.as_array()
        .ok_or_else(|| fail(name, format!("{what} must be an array, not {v}")))
}

fn as_str<'a>(name: &str, v: &'a Value, what: &str) -> Result<&'a str, StatesError> {
    v.as_str()
        .ok_or_else(|| fail(name, format!("{what} must be a string, not {v}")))
}

/// An integer argument: a number without a fraction.
fn as_int(name: &str, v: &Value, what: &str) -> Result<i64, StatesError> {
    v.as_i64()
        .or_else(|| {
            v.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                .map(|f| f as i64)
        })
        .ok_or_else(|| fail(name, format!("{what} must be an integer, not {v}")))
}

fn format_arg(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn apply(name: &str, f: Function, args: Vec<Value>) -> Result<Value, StatesError> {
    match f {
        Function::Format => {
            let template = as_str(name, &args[0], "the template")?;
            let mut values = args[1..].iter();
            let mut out = String::new();
            let mut chars = template.chars().peekable();
            let mut used = 0usize;
            while let Some(c) = chars.next() {
                match c {
                    '\\' => match chars.next() {
                        Some(n) => out.push(n),
                        None => out.push('\\'),
                    },
                    '{' if chars.peek() == Some(&'}') => {
                        chars.next();
                        let v = values
                            .next()
                            .ok_or_else(|| fail(name, "the template has more {} than arguments"))?;
                        used += 1;
                        out.push_str(&format_arg(v));
                    }
                    c => out.push(c),
                }
            }
            if used != args.len() - 1 {
                return Err(fail(
                    name,
                    format!(
                        "the template has {used} {{}} for {} argument(s)",
                        args.len() - 1
                    ),
                ));
            }
            Ok(Value::String(out))
        }
        Function::StringToJson => {
            let text = as_str(name, &args[0], "the argument")?;
            serde_json::from_str(text).map_err(|e| fail(name, format!("not JSON: {e}")))
        }
        Function::JsonToString => Ok(Value::String(args[0].to_string())),
        Function::Array => Ok(Value::Array(args)),
        Function::ArrayPartition => {
            let items = as_array(name, &args[0], "the first argument")?;
            let size = as_int(name, &args[1], "the chunk size")?;
            if size <= 0 {
                return Err(fail(name, "the chunk size must be positive"));
            }
            let size = usize::try_from(size).unwrap_or(usize::MAX);
            Ok(Value::Array(
                items
                    .chunks(size)
                    .map(|c| Value::Array(c.to_vec()))
                    .collect(),
            ))
        }
        Function::ArrayContains => {
            let items = as_array(name, &args[0], "the first argument")?;
            Ok(Value::Bool(items.contains(&args[1])))
        }
        Function::ArrayRange => {
            let first = as_int(name, &args[0], "the first value")?;
            let last = as_int(name, &args[1], "the last value")?;
            let step = as_int(name, &args[2], "the step")?;
            if step == 0 {
                return Err(fail(name, "the step cannot be 0"));
            }
            let mut out = Vec::new();
            let mut v = first;
            while (step > 0 && v <= last) || (step < 0 && v >= last) {
                if out.len() == MAX_ARRAY_RANGE {
                    return Err(fail(
                        name,
                        format!("the range has more than {MAX_ARRAY_RANGE} items"),
                    ));
                }
                out.push(Value::from(v));
                v = v.saturating_add(step);
            }
            Ok(Value::Array(out))
        }
        Function::ArrayGetItem => {
            let items = as_array(name, &args[0], "the first argument")?;
            let index = as_int(name, &args[1], "the index")?;
            usize::try_from(index)
                .ok()
                .and_then(|i| items.get(i))
                .cloned()
                .ok_or_else(|| fail(name, format!("the index {index} is out of bounds")))
        }
        Function::ArrayLength => {
            let items = as_array(name, &args[0], "the argument")?;
            Ok(Value::from(items.len()))
        }
        Function::ArrayUnique => {
            let items = as_array(name, &args[0], "the argument")?;
            let mut out: Vec<Value> = Vec::with_capacity(items.len());
            for v in items {
                if !out.contains(v) {
                    out.push(v.clone());
                }
            }
            Ok(Value::Array(out))
        }
        Function::Base64Encode => {
            let text = as_str(name, &args[0], "the argument")?;
            if text.len() > MAX_BASE64_INPUT {
                return Err(fail(
                    name,
                    format!("the input is over {MAX_BASE64_INPUT} characters"),
                ));
            }
            Ok(Value::String(
                base64::engine::general_purpose::STANDARD.encode(text),
            ))
        }
        Function::Base64Decode => {
            let text = as_str(name, &args[0], "the argument")?;
            if text.len() > MAX_BASE64_INPUT {
                return Err(fail(
                    name,
                    format!("the input is over {MAX_BASE64_INPUT} characters"),
                ));
            }
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|e| fail(name, format!("not base64: {e}")))?;
            String::from_utf8(bytes)
                .map(Value::String)
                .map_err(|_| fail(name, "the decoded bytes are not UTF-8"))
        }
        Function::Hash => {
            let data = format_arg(&args[0]);
            if data.len() > MAX_HASH_INPUT {
                return Err(fail(
                    name,
                    format!("the input is over {MAX_HASH_INPUT} characters"),
                ));
            }
            let algorithm = as_str(name, &args[1], "the algorithm")?;
            use sha2::Digest as _;
            let bytes = data.as_bytes();
            let digest = match algorithm {
                "MD5" => hex::encode(md5::Md5::digest(bytes)),
                "SHA-1" => hex::encode(sha1::Sha1::digest(bytes)),
                "SHA-256" => hex::encode(sha2::Sha256::digest(bytes)),
                "SHA-384" => hex::encode(sha2::Sha384::digest(bytes)),
                "SHA-512" => hex::encode(sha2::Sha512::digest(bytes)),
                other => {
                    return Err(fail(
                        name,
                        format!(
                            "{other:?} is not an algorithm (MD5, SHA-1, SHA-256, SHA-384, SHA-512)"
                        ),
                    ));
                }
            };
            Ok(Value::String(digest))
        }
        Function::JsonMerge => {
            if args[2] != Value::Bool(false) {
                return Err(fail(name, "only the shallow merge (false) is supported"));
            }
            let (Value::Object(a), Value::Object(b)) = (&args[0], &args[1]) else {
                return Err(fail(name, "both arguments must be objects"));
            };
            let mut out = a.clone();
            for (k, v) in b {
                out.insert(k.clone(), v.clone());
            }
            Ok(Value::Object(out))
        }
        Function::MathRandom => {
            let start = as_int(name, &args[0], "the start")?;
            let end = as_int(name, &args[1], "the end")?;
            if end <= start {
                return Err(fail(name, "the end must be greater than the start"));
            }
            let span = u64::try_from(end.saturating_sub(start)).unwrap_or(u64::MAX);
            let draw = match args.get(2) {
                Some(seed) => {
                    // A seeded draw is reproducible: splitmix64 of the seed.
                    let mut z = as_int(name, seed, "the seed")? as u64;
                    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
                    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                    z ^ (z >> 31)
                }
                None => crate::clock::random_u64(),
            };
            Ok(Value::from(start.saturating_add((draw % span) as i64)))
        }
        Function::MathAdd => {
            let a = as_int(name, &args[0], "the first value")?;
            let b = as_int(name, &args[1], "the second value")?;
            Ok(Value::from(a.saturating_add(b)))
        }
        Function::StringSplit => {
            let text = as_str(name, &args[0], "the string")?;
            let delimiters = as_str(name, &args[1], "the delimiters")?;
            Ok(Value::Array(
                text.split(|c| delimiters.contains(c))
                    .filter(|s| !s.is_empty())
                    .map(|s| Value::String(s.to_owned()))
                    .collect(),
            ))
        }
        Function::Uuid => Ok(Value::String(uuid::Uuid::new_v4().to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn eval(text: &str, input: Value) -> Result<Value, StatesError> {
        Call::parse(text).expect(text).eval(
            &input,
            &json!({"Execution": {"Id": "arn:x"}, "State": {"Name": "S"}}),
        )
    }

    #[test]
    fn format_builds_the_task_key() {
        assert_eq!(
            eval(
                "States.Format('{}#{}', $$.Execution.Id, $$.State.Name)",
                json!({})
            )
            .ok(),
            Some(json!("arn:x#S"))
        );
        assert_eq!(
            eval(
                "States.Format('a \\{\\} {} {}', $.n, $.o)",
                json!({"n": 1, "o": {"k": true}})
            )
            .ok(),
            Some(json!("a {} 1 {\"k\":true}"))
        );
        assert_eq!(
            eval("States.Format('{} {}', 'x')", json!({})).map_err(|e| e.error),
            Err("States.Runtime".to_owned())
        );
    }

    #[test]
    fn parse_errors_name_the_problem() {
        assert!(Call::parse("States.Nope(1)").is_err());
        assert!(Call::parse("States.UUID(1)").is_err());
        assert!(Call::parse("States.Format('x'").is_err());
        assert!(Call::parse("States.Array(1) extra").is_err());
    }

    #[test]
    fn nested_calls_and_arrays() {
        assert_eq!(
            eval(
                "States.ArrayLength(States.ArrayUnique(States.Array(1, 1, 2, $.x)))",
                json!({"x": 3})
            )
            .ok(),
            Some(json!(3))
        );
        assert_eq!(
            eval("States.ArrayRange(1, 9, 3)", json!({})).ok(),
            Some(json!([1, 4, 7]))
        );
        assert_eq!(
            eval("States.Hash('input data', 'SHA-1')", json!({})).ok(),
            Some(json!("aaff4a450a104cd177d28d18d74485e8cae074b7"))
        );
    }
}
