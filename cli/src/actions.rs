//! `actiondo actions [NAME] [--json]`: the catalog.
//!
//! Without `--json`, a table of names, descriptions and a one-line summary of each input
//! (`email, name, company?` — `?` marks an optional field). With a NAME, that action's
//! input and output JSON Schemas. With `--json`,
//! `{"actions": [{"name", "description", "keyPolicy", "inputSchema", "outputSchema"}]}`,
//! the body of the router's `GET /actions`.

use std::sync::Arc;

use actiondo::{Catalog, DynAction};
use actiondo_api::view::{ActionInfo, describe};
use clap::Args;
use serde_json::{Value, json};

use crate::{CliError, EXIT_OK};

/// The arguments of `actiondo actions`.
#[derive(Debug, Args)]
pub struct ActionsArgs {
    /// Show only this action, with its input and output JSON Schemas.
    pub name: Option<String>,

    /// Print JSON (name, description, input and output schemas) instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Run `actiondo actions`.
pub fn run(args: &ActionsArgs) -> Result<u8, CliError> {
    let catalog = actiondo_catalog::catalog();
    crate::print_stdout(&render(&catalog, args)?)?;
    Ok(EXIT_OK)
}

/// The output of `actiondo actions` for `catalog`.
pub fn render(catalog: &Catalog, args: &ActionsArgs) -> Result<String, CliError> {
    let selected: Vec<&Arc<dyn DynAction>> = match &args.name {
        Some(name) => vec![
            catalog
                .resolve(name)
                .map_err(|e| CliError::Usage(e.message().to_owned()))?,
        ],
        None => catalog.iter().collect(),
    };
    if args.json {
        let actions: Vec<ActionInfo> = selected.iter().map(|a| describe(a.as_ref())).collect();
        return crate::json::pretty(&json!({ "actions": actions }))
            .map_err(|e| CliError::Output(std::io::Error::other(e)));
    }
    if let [action] = selected.as_slice()
        && args.name.is_some()
    {
        return detail(action.as_ref());
    }
    if selected.is_empty() {
        return Ok("no actions in the catalog".to_owned());
    }
    let mut table = crate::audit::new_table(["NAME", "DESCRIPTION", "INPUT (? = optional)"]);
    for action in selected {
        table.add_row([
            action.name().to_owned(),
            action.description().to_owned(),
            input_summary(&action.input_schema()),
        ]);
    }
    Ok(table.to_string())
}

fn detail(action: &dyn DynAction) -> Result<String, CliError> {
    let schema =
        |v: Value| crate::json::pretty(&v).map_err(|e| CliError::Output(std::io::Error::other(e)));
    Ok(format!(
        "{}\n  {}\n\ninput: {}\n\ninput schema:\n{}\n\noutput schema:\n{}",
        action.name(),
        action.description(),
        input_summary(&action.input_schema()),
        schema(action.input_schema())?,
        schema(action.output_schema())?,
    ))
}

/// A one-line summary of an object schema's fields: `email: string, company?: string`.
pub fn input_summary(schema: &Value) -> String {
    let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
        return type_name(schema);
    };
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    properties
        .iter()
        .map(|(name, prop)| {
            let optional = if required.contains(&name.as_str()) {
                ""
            } else {
                "?"
            };
            format!("{name}{optional}: {}", type_name(prop))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A short name for a schema's type: `string`, `integer`, `Line[]`, `string|null`.
fn type_name(schema: &Value) -> String {
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        return reference.rsplit('/').next().unwrap_or(reference).to_owned();
    }
    for combinator in ["anyOf", "oneOf"] {
        if let Some(parts) = schema.get(combinator).and_then(Value::as_array) {
            return parts.iter().map(type_name).collect::<Vec<_>>().join("|");
        }
    }
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        return values
            .iter()
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
            .collect::<Vec<_>>()
            .join("|");
    }
    match schema.get("type") {
        Some(Value::String(t)) if t == "array" => match schema.get("items") {
            Some(items) => format!("{}[]", type_name(items)),
            None => "array".to_owned(),
        },
        Some(Value::String(t)) => t.clone(),
        Some(Value::Array(types)) => types
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join("|"),
        _ => "any".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summarises_fields_marking_optional_ones() {
        let schema = json!({
            "type": "object",
            "properties": {
                "email": {"type": "string"},
                "company": {"type": ["string", "null"]},
                "lines": {"type": "array", "items": {"$ref": "#/$defs/Line"}},
                "outcome": {"enum": ["created", "updated"]},
                "data": {}
            },
            "required": ["email", "lines"]
        });
        assert_eq!(
            input_summary(&schema),
            "company?: string|null, data?: any, email: string, lines: Line[], outcome?: created|updated"
        );
    }

    #[test]
    fn a_schema_without_properties_is_named_by_its_type() {
        assert_eq!(input_summary(&json!({"type": "integer"})), "integer");
    }
}
