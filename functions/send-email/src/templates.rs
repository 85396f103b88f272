//! Named email templates, embedded in the binary and rendered with `minijinja`.
//!
//! Each template is one file under `templates/` of this package, shaped like a message:
//! a `Subject:` line, an empty line, then the plain-text body. Both parts are Jinja
//! templates over the `data` object of the request (`{{ name }}`, `{% if company %}`).
//!
//! | template | required variables | optional variables |
//! |---|---|---|
//! | `new-user-welcome-v2` | `name`, `email` | `plan` |
//! | `lead-follow-up` | `name` | `company`, `senderName` |
//! | `lead-nurture` | `name` | `company`, `topic` |
//!
//! An unknown template name, or a required variable missing from the data, is
//! `ActionDo.Validation`, listing every missing variable (`/data/<name>`). Printing a
//! variable that is not there fails too (minijinja's semi-strict mode); an optional
//! variable is only ever tested (`{% if plan %}`) before it is printed.
//!
//! # Example
//!
//! ```
//! let data = serde_json::json!({"name": "Ada", "email": "ada@example.com"});
//! let rendered = send_email::templates::render("new-user-welcome-v2", data.as_object().unwrap())?;
//! assert_eq!(rendered.subject, "Welcome to action.do, Ada!");
//! assert!(rendered.body.contains("ada@example.com"));
//! # Ok::<_, actiondo::ActionError>(())
//! ```

use std::collections::BTreeSet;
use std::sync::OnceLock;

use actiondo::ActionError;
use minijinja::syntax::SyntaxConfig;
use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde_json::{Map, Value, json};

/// One embedded template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TemplateSpec {
    /// Its name, as given in `template`.
    pub name: &'static str,
    /// What it is for.
    pub description: &'static str,
    /// Variables it may use but does not need.
    pub optional: &'static [&'static str],
    source: &'static str,
}

/// Every template this build knows, by name.
pub const TEMPLATES: &[TemplateSpec] = &[
    TemplateSpec {
        name: "new-user-welcome-v2",
        description: "Welcome a new user (onboarding).",
        optional: &["plan"],
        source: include_str!("../templates/new-user-welcome-v2.txt"),
    },
    TemplateSpec {
        name: "lead-follow-up",
        description: "Follow up with a qualified lead.",
        optional: &["company", "senderName"],
        source: include_str!("../templates/lead-follow-up.txt"),
    },
    TemplateSpec {
        name: "lead-nurture",
        description: "Nurture a lead that is not ready yet.",
        optional: &["company", "topic"],
        source: include_str!("../templates/lead-nurture.txt"),
    },
];

/// A rendered template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The subject: one line, whitespace collapsed.
    pub subject: String,
    /// The plain-text body.
    pub body: String,
}

/// The template of that name.
pub fn find(name: &str) -> Option<&'static TemplateSpec> {
    TEMPLATES.iter().find(|t| t.name == name)
}

/// The names of every template, for error messages and catalogs.
pub fn names() -> Vec<&'static str> {
    TEMPLATES.iter().map(|t| t.name).collect()
}

/// `ActionDo.Validation` for an unknown template, naming the known ones.
pub fn unknown_template(name: &str) -> ActionError {
    ActionError::validation(format!(
        "unknown template {name:?}; known templates: {}",
        names().join(", ")
    ))
    .with_details(json!({
        "errors": [{
            "path": "/template",
            "message": format!("unknown template {name:?}; known templates: {}", names().join(", ")),
        }],
        "knownTemplates": names(),
    }))
}

/// The variables `name` needs that `data` lacks, sorted; `Err` for an unknown template.
pub fn missing_variables(
    name: &str,
    data: &Map<String, Value>,
) -> Result<Vec<String>, ActionError> {
    let spec = find(name).ok_or_else(|| unknown_template(name))?;
    let env = environment()?;
    let mut needed = BTreeSet::new();
    for part in ["subject", "body"] {
        let template = env
            .get_template(&format!("{}/{part}", spec.name))
            .map_err(|e| ActionError::internal(format!("template {name}: {e}")))?;
        needed.extend(template.undeclared_variables(false));
    }
    Ok(needed
        .into_iter()
        .filter(|v| !spec.optional.contains(&v.as_str()))
        .filter(|v| data.get(v).is_none_or(Value::is_null))
        .collect())
}

/// Render template `name` with `data`.
///
/// `ActionDo.Validation` for an unknown template, for missing variables (listing all of
/// them), or for data the template cannot use (e.g. a list where it prints text).
pub fn render(name: &str, data: &Map<String, Value>) -> Result<Rendered, ActionError> {
    let missing = missing_variables(name, data)?;
    if !missing.is_empty() {
        let errors: Vec<Value> = missing
            .iter()
            .map(|v| {
                json!({
                    "path": format!("/data/{v}"),
                    "message": format!("missing template variable {v:?} (required by {name})"),
                })
            })
            .collect();
        return Err(ActionError::validation(format!(
            "template {name} needs variables missing from data: {}",
            missing.join(", ")
        ))
        .with_details(json!({"errors": errors, "missing": missing, "template": name})));
    }
    let env = environment()?;
    let ctx = minijinja::Value::from(minijinja::value::Serde(data));
    let part = |part: &str| -> Result<String, ActionError> {
        env.get_template(&format!("{name}/{part}"))
            .and_then(|t| t.render(&ctx))
            .map_err(|e| {
                ActionError::validation(format!("template {name} could not be rendered: {e:#}"))
                    .with_details(json!({
                        "errors": [{"path": "/data", "message": e.to_string()}],
                        "template": name,
                    }))
            })
    };
    let subject = part("subject")?
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    Ok(Rendered {
        subject,
        body: part("body")?,
    })
}

/// All templates, parsed once: `<name>/subject` and `<name>/body` for each.
fn environment() -> Result<&'static Environment<'static>, ActionError> {
    static ENV: OnceLock<Result<Environment<'static>, String>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::SemiStrict);
        env.set_auto_escape_callback(|_| AutoEscape::None);
        let syntax = SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .keep_trailing_newline(true)
            .build()
            .map_err(|e| format!("template syntax: {e}"))?;
        env.set_syntax(syntax);
        for spec in TEMPLATES {
            let (subject, body) = split_source(spec)?;
            env.add_template(leak(format!("{}/subject", spec.name)), subject)
                .and_then(|()| env.add_template(leak(format!("{}/body", spec.name)), body))
                .map_err(|e| format!("template {}: {e}", spec.name))?;
        }
        Ok(env)
    })
    .as_ref()
    .map_err(|e| ActionError::internal(e.clone()))
}

/// Template names live as long as the process (a handful, built once).
fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// `Subject: …` line, empty line, body.
fn split_source(spec: &TemplateSpec) -> Result<(&'static str, &'static str), String> {
    let (first, rest) = spec
        .source
        .split_once('\n')
        .ok_or_else(|| format!("template {} has no body", spec.name))?;
    let subject = first
        .strip_prefix("Subject:")
        .ok_or_else(|| format!("template {} must start with a Subject: line", spec.name))?;
    let body = rest.strip_prefix('\n').ok_or_else(|| {
        format!(
            "template {}: an empty line must follow the subject",
            spec.name
        )
    })?;
    Ok((subject.trim(), body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn every_template_parses_and_renders_with_its_required_variables() {
        for spec in TEMPLATES {
            let missing = missing_variables(spec.name, &Map::new()).expect("known");
            assert!(!missing.is_empty(), "{} needs something", spec.name);
            let full: Map<String, Value> = missing
                .iter()
                .map(|v| (v.clone(), Value::String(format!("<{v}>"))))
                .collect();
            let rendered = render(spec.name, &full).expect("renders");
            assert!(!rendered.subject.is_empty() && !rendered.subject.contains('\n'));
            for v in &missing {
                assert!(
                    rendered.subject.contains(&format!("<{v}>"))
                        || rendered.body.contains(&format!("<{v}>")),
                    "{}: {v} is used",
                    spec.name
                );
            }
        }
    }

    #[test]
    fn the_welcome_template_uses_the_user_fields_and_the_optional_plan() {
        let r = render(
            "new-user-welcome-v2",
            &data(json!({"name": "Ada", "email": "ada@example.com", "plan": "pro"})),
        )
        .expect("renders");
        assert_eq!(r.subject, "Welcome to action.do, Ada!");
        assert!(r.body.starts_with("Hi Ada,\n"));
        assert!(r.body.contains("ada@example.com"));
        assert!(r.body.contains("You are on the pro plan."));
        let without = render(
            "new-user-welcome-v2",
            &data(json!({"name": "Ada", "email": "ada@example.com"})),
        )
        .expect("renders");
        assert!(!without.body.contains("plan."));
        // Paragraphs stay apart whether or not the optional block renders.
        assert!(
            r.body
                .contains("ada@example.com.\n\nYou are on the pro plan.\n\nNext steps:")
        );
        assert!(without.body.contains("ada@example.com.\n\nNext steps:"));
    }

    #[test]
    fn missing_variables_are_all_listed() {
        let err =
            render("new-user-welcome-v2", &data(json!({"plan": "free"}))).expect_err("missing");
        assert_eq!(err.kind(), actiondo::ErrorKind::Validation);
        let details = err.details().expect("details");
        assert_eq!(details["missing"], json!(["email", "name"]));
        assert_eq!(details["errors"][0]["path"], "/data/email");
        assert_eq!(details["errors"][1]["path"], "/data/name");
        // null counts as missing
        let err = render(
            "lead-follow-up",
            &data(json!({"name": null, "company": "Acme"})),
        )
        .expect_err("null name");
        assert_eq!(err.details().expect("details")["missing"], json!(["name"]));
    }

    #[test]
    fn an_unknown_template_names_the_known_ones() {
        let err = render("welcome-v9", &Map::new()).expect_err("unknown");
        assert_eq!(err.kind(), actiondo::ErrorKind::Validation);
        assert!(err.message().contains("new-user-welcome-v2"));
        assert_eq!(
            err.details().expect("details")["errors"][0]["path"],
            "/template"
        );
    }

    #[test]
    fn optional_variables_render_when_given() {
        let r = render(
            "lead-follow-up",
            &data(json!({"name": "Grace", "company": "Acme", "senderName": "Sam"})),
        )
        .expect("renders");
        assert_eq!(r.subject, "Following up with Acme, Grace");
        assert!(r.body.trim_end().ends_with("Sam"));
        let r = render(
            "lead-nurture",
            &data(json!({"name": "Grace", "topic": "payments"})),
        )
        .expect("renders");
        assert!(r.body.contains("compliance.\n\nYou told us"), "{}", r.body);
        assert!(
            r.body.contains("example.\n\n-- The action.do team"),
            "{}",
            r.body
        );
    }

    #[test]
    fn values_are_not_html_escaped() {
        let r = render(
            "lead-nurture",
            &data(json!({"name": "Tom & Jerry <tj@example.com>"})),
        )
        .expect("renders");
        assert!(r.body.contains("Hi Tom & Jerry <tj@example.com>,"));
    }
}
