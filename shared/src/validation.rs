//! Input validation helpers: [`FieldErrors`], the one builder of the `ActionDo.Validation`
//! error that lists every bad field, and (feature `email`) email address syntax.
//!
//! Every validation error of the project — the executor's schema errors and each action's
//! own [`Action::validate`](crate::Action::validate) — has the same shape:
//!
//! ```json
//! {"type": "ActionDo.Validation",
//!  "message": "invalid params for create-user: /email: must not be empty; /name: must not be blank",
//!  "details": {"errors": [{"path": "/email", "message": "must not be empty"},
//!                         {"path": "/name", "message": "must not be blank"}]}}
//! ```
//!
//! `path` is a JSON pointer into the input (`""` for the input as a whole).

use std::fmt;

use serde_json::{Value, json};

use crate::error::ActionError;

/// Collects the problems of an input, field by field, and turns them into one
/// `ActionDo.Validation` error that lists every one of them:
/// `details.errors = [{"path": "/email", "message": "…"}]`, and a message that names each
/// problem (`"<context>: /email: …; /name: …"`; a problem of the whole input, path `""`,
/// is named by its message alone).
///
/// # Example
///
/// ```
/// use actiondo::{ErrorKind, FieldErrors};
///
/// let mut errors = FieldErrors::new();
/// errors.add("/email", "must not be empty");
/// errors.add("/name", "must not be blank");
/// let err = errors.into_result("create-user").unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::Validation);
/// assert_eq!(
///     err.message(),
///     "invalid params for create-user: /email: must not be empty; /name: must not be blank"
/// );
/// assert_eq!(err.details().unwrap()["errors"][1]["path"], "/name");
///
/// // Another wording of the message, and one problem in one expression:
/// let err = FieldErrors::new().with("/lines", "must not be empty").into_error("invalid invoice");
/// assert_eq!(err.message(), "invalid invoice: /lines: must not be empty");
/// assert!(FieldErrors::new().into_result_with("invalid invoice").is_ok());
/// ```
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FieldErrors(Vec<(String, String)>);

impl FieldErrors {
    /// No problem yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Record a problem of the field at JSON pointer `path` (e.g. `/lines/0/quantity`;
    /// `""` for the input as a whole).
    pub fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push((path.into(), message.into()));
    }

    /// [`add`](Self::add), by value: `FieldErrors::new().with("/email", "…")`.
    #[must_use]
    pub fn with(mut self, path: impl Into<String>, message: impl Into<String>) -> Self {
        self.add(path, message);
        self
    }

    /// Whether no problem was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many problems were recorded.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// `Ok(())` when empty, else `ActionDo.Validation` with the message
    /// `"invalid params for <action>: <every problem>"` (the executor's wording for
    /// schema errors).
    pub fn into_result(self, action: &str) -> Result<(), ActionError> {
        self.into_result_with(format_args!("invalid params for {action}"))
    }

    /// `Ok(())` when empty, else `ActionDo.Validation` with the message
    /// `"<context>: <every problem>"` (e.g. `context` = `"invalid lead"`).
    pub fn into_result_with(self, context: impl fmt::Display) -> Result<(), ActionError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(self.into_error(context))
        }
    }

    /// The `ActionDo.Validation` error `"<context>: <every problem>"`, even when no
    /// problem was recorded (then its list is empty): for a caller that already knows
    /// the input is bad. Prefer [`into_result_with`](Self::into_result_with) otherwise.
    pub fn into_error(self, context: impl fmt::Display) -> ActionError {
        let summary = self
            .0
            .iter()
            .map(|(path, message)| {
                if path.is_empty() {
                    message.clone()
                } else {
                    format!("{path}: {message}")
                }
            })
            .collect::<Vec<_>>()
            .join("; ");
        let errors: Vec<Value> = self
            .0
            .into_iter()
            .map(|(path, message)| json!({"path": path, "message": message}))
            .collect();
        ActionError::validation(format!("{context}: {summary}"))
            .with_details(json!({ "errors": errors }))
    }
}

impl<P: Into<String>, M: Into<String>> Extend<(P, M)> for FieldErrors {
    fn extend<I: IntoIterator<Item = (P, M)>>(&mut self, iter: I) {
        for (path, message) in iter {
            self.add(path, message);
        }
    }
}

impl<P: Into<String>, M: Into<String>> FromIterator<(P, M)> for FieldErrors {
    fn from_iter<I: IntoIterator<Item = (P, M)>>(iter: I) -> Self {
        let mut errors = Self::new();
        errors.extend(iter);
        errors
    }
}

/// Why a free-text field is not acceptable, if it is not: longer than `max_chars`
/// characters (`"must be at most <max_chars> characters"`), or with a control character
/// (`"must not contain control characters"`). Blank text is the caller's rule.
///
/// ```
/// use actiondo::validation::text_problem;
///
/// assert_eq!(text_problem("Ann Lee", 200), None);
/// assert_eq!(text_problem("Ann", 2).as_deref(), Some("must be at most 2 characters"));
/// assert_eq!(text_problem("A\u{0}B", 200).as_deref(), Some("must not contain control characters"));
/// ```
pub fn text_problem(text: &str, max_chars: usize) -> Option<String> {
    if text.chars().count() > max_chars {
        Some(format!("must be at most {max_chars} characters"))
    } else if text.chars().any(char::is_control) {
        Some("must not contain control characters".into())
    } else {
        None
    }
}

/// Parse an email address as the actions accept it: RFC 5322 syntax (crate
/// `email_address`) with a domain that has a top-level domain, no display name
/// (`Ann <ann@acme.com>`) and no domain literal (`ann@[127.0.0.1]`).
///
/// `email` is parsed as given (trim or lower-case it first as the action stores it); the
/// error is the problem's message, `"\"<email>\" is not a valid email address: <why>"`.
///
/// Feature `email`.
///
/// # Example
///
/// ```
/// use actiondo::validation::parse_email;
///
/// assert_eq!(parse_email("ann@acme.com").map(|a| a.domain().to_owned()), Ok("acme.com".into()));
/// assert!(parse_email("ann@localhost").is_err());
/// assert!(parse_email("Ann <ann@acme.com>").is_err());
/// assert!(parse_email("ann@[127.0.0.1]").is_err());
/// ```
#[cfg(feature = "email")]
pub fn parse_email(email: &str) -> Result<email_address::EmailAddress, String> {
    let options = email_address::Options::default()
        .with_required_tld()
        .without_display_text()
        .without_domain_literal();
    email_address::EmailAddress::parse_with_options(email, options)
        .map_err(|e| format!("{email:?} is not a valid email address: {e}"))
}

/// Why `email` is not an acceptable address by [`parse_email`]'s rules, if it is not.
///
/// Feature `email`.
#[cfg(feature = "email")]
pub fn email_syntax_problem(email: &str) -> Option<String> {
    parse_email(email).err()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn no_problem_is_ok() {
        assert!(FieldErrors::new().into_result("a").is_ok());
        assert!(FieldErrors::new().into_result_with("invalid a").is_ok());
        assert!(FieldErrors::new().is_empty());
    }

    #[test]
    fn every_problem_is_listed_in_order() {
        let mut errors = FieldErrors::new();
        errors.add("/b", "two");
        errors.add("/a", "one");
        assert_eq!(errors.len(), 2);
        let err = errors.into_result("x").err().map(|e| {
            (
                e.kind(),
                e.message().to_owned(),
                e.details().cloned().unwrap_or_default(),
            )
        });
        assert_eq!(
            err,
            Some((
                ErrorKind::Validation,
                "invalid params for x: /b: two; /a: one".to_owned(),
                json!({"errors": [{"path": "/b", "message": "two"}, {"path": "/a", "message": "one"}]}),
            ))
        );
    }

    #[test]
    fn a_problem_of_the_whole_input_is_named_by_its_message() {
        let err = FieldErrors::new()
            .with("", "too large")
            .with("/x", "bad")
            .into_error("invalid thing");
        assert_eq!(err.message(), "invalid thing: too large; /x: bad");
        assert_eq!(
            err.details().cloned(),
            Some(
                json!({"errors": [{"path": "", "message": "too large"}, {"path": "/x", "message": "bad"}]})
            )
        );
    }

    #[test]
    fn collects_from_pairs() {
        let errors: FieldErrors = [("/a", "x"), ("/b", "y")].into_iter().collect();
        assert_eq!(errors, FieldErrors::new().with("/a", "x").with("/b", "y"));
    }

    #[cfg(feature = "email")]
    #[test]
    fn email_syntax() {
        assert_eq!(email_syntax_problem("ann@acme.com"), None);
        for bad in [
            "",
            "nope",
            "ann@localhost",
            "Ann <ann@acme.com>",
            "ann@[127.0.0.1]",
        ] {
            let problem = email_syntax_problem(bad).unwrap_or_default();
            assert!(
                problem.starts_with(&format!("{bad:?} is not a valid email address: ")),
                "{problem}"
            );
        }
    }
}
