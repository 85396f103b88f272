//! `actiondo new <name> [--settings] [--key required] [--mode optimistic]`: a new action
//! package and all of its wiring, so that its author edits one file,
//! `functions/<name>/src/lib.rs`.
//!
//! In the workspace that contains the current folder, it
//!
//! 1. writes `functions/<name>/`: `Cargo.toml` (the workspace's lints and features),
//!    `src/lib.rs` (the action: input and output types with JSON Schemas, `validate`,
//!    an `execute` that stages a write), `src/main.rs` (the Lambda entry point) and
//!    `src/tests.rs` (tests on the embedded store), from the templates in
//!    `cli/templates/`; the code passes `cargo fmt --check` and `cargo clippy -- -D
//!    warnings` as generated;
//! 2. adds the package's path dependency to `catalog/Cargo.toml` (cargo takes
//!    dependencies from manifests only; `catalog/build.rs` derives the registration), so
//!    `actiondo actions`, `actiondo serve` and the router serve the action;
//! 3. runs `tests/check_stack.py --fix`, which writes the action's function, the
//!    router's `ACTIONDO_FUNCTION_<NAME>` variable and its invoke permission into
//!    `template.yaml` (with the Python of `.tools/venv` when `./tests/run.sh` has
//!    installed it, else `python3`; it needs cfn-lint).
//!
//! `--settings` adds a settings struct read through `actiondo::config::FromSettings`
//! (`<NAME>_ENDPOINT`, `<NAME>_TIMEOUT_MS`); their values in `template.yaml` are for the
//! author to choose (a parameter, a secret), so the command names them instead.

use std::path::{Path, PathBuf};
use std::process::Command;

use clap::{Args, ValueEnum};
use serde_json::json;

use crate::{CliError, EXIT_OK};

/// The longest action name: longer ones would not fit the generated code's lines.
pub const MAX_NAME_CHARS: usize = 30;
/// The longest description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 160;

const CARGO_TOML: &str = include_str!("../templates/Cargo.toml.j2");
const LIB_RS: &str = include_str!("../templates/lib.rs.j2");
const MAIN_RS: &str = include_str!("../templates/main.rs.j2");
const TESTS_RS: &str = include_str!("../templates/tests.rs.j2");

/// Identifiers the generated code uses: the action's type may not be one of them.
const USED_IDENTIFIERS: &[&str] = &[
    "Action",
    "ActionContext",
    "ActionError",
    "ActionOptions",
    "ConfigError",
    "Duration",
    "EntityKey",
    "ErrorKind",
    "Execution",
    "Executor",
    "Expect",
    "FieldErrors",
    "FromSettings",
    "Invocation",
    "JsonSchema",
    "KeyPolicy",
    "Mode",
    "Settings",
    "Source",
    "Store",
    "TestResult",
    "Value",
];

/// Rust's keywords (and reserved words): a package named so has no crate name.
const KEYWORDS: &[&str] = &[
    "abstract", "as", "async", "await", "become", "box", "break", "const", "continue", "crate",
    "do", "dyn", "else", "enum", "extern", "false", "final", "fn", "for", "gen", "if", "impl",
    "in", "let", "loop", "macro", "match", "mod", "move", "mut", "override", "priv", "pub", "ref",
    "return", "self", "static", "struct", "super", "trait", "true", "try", "type", "typeof",
    "unsafe", "unsized", "use", "virtual", "where", "while", "yield",
];

/// The arguments of `actiondo new`.
#[derive(Debug, Args)]
pub struct NewArgs {
    /// The action's name, kebab-case (`accept-order`): its package, binary and
    /// `Action::NAME`.
    pub name: String,

    /// The one line the catalog shows (also the package's and the function's description).
    #[arg(long, value_name = "TEXT")]
    pub description: Option<String>,

    /// Generate a settings struct read from environment variables (`FromSettings`).
    #[arg(long)]
    pub settings: bool,

    /// The key policy: `required` for actions that are not idempotent by their params.
    #[arg(long, value_enum, default_value_t = KeyArg::Derived)]
    pub key: KeyArg,

    /// The mode: `optimistic` for actions whose only effects are staged writes.
    #[arg(long, value_enum, default_value_t = ModeArg::Claim)]
    pub mode: ModeArg,
}

/// `--key`: `actiondo::KeyPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KeyArg {
    /// Without a caller's key, the key is derived from the params.
    Derived,
    /// A caller must give a key.
    Required,
}

/// `--mode`: `actiondo::Mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    /// Claim the key, run, commit: safe for external effects.
    Claim,
    /// Run, then commit everything at once: staged writes only.
    Optimistic,
}

/// A new action, checked: what `actiondo new` generates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scaffold {
    name: String,
    description: String,
    settings: bool,
    key: KeyArg,
    mode: ModeArg,
}

impl Scaffold {
    /// The action `args` describe, if its name and description can be used (whether the
    /// name is taken in a workspace is [`check_free`]'s question).
    pub fn new(args: &NewArgs) -> Result<Self, CliError> {
        check_name(&args.name).map_err(CliError::Usage)?;
        let description = match &args.description {
            Some(text) => {
                let text = text.trim();
                if text.is_empty() || text.chars().count() > MAX_DESCRIPTION_CHARS {
                    return Err(CliError::Usage(format!(
                        "--description must be 1 to {MAX_DESCRIPTION_CHARS} characters"
                    )));
                }
                if text.chars().any(char::is_control) {
                    return Err(CliError::Usage(
                        "--description must be one line, without control characters".into(),
                    ));
                }
                text.to_owned()
            }
            None => format!("TODO: what {} does, in one line.", args.name),
        };
        Ok(Self {
            name: args.name.clone(),
            description,
            settings: args.settings,
            key: args.key,
            mode: args.mode,
        })
    }

    /// The package name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The files of the package, relative to `functions/<name>/`, with their contents.
    pub fn files(&self) -> Result<Vec<(&'static str, String)>, CliError> {
        let description_rust = format!("{:?}", self.description);
        // rustfmt moves a value that does not fit the line to the next one, if it fits
        // there.
        let one_line = format!("    const DESCRIPTION: &'static str = {description_rust};");
        let wrapped = format!("        {description_rust};");
        let wrap = one_line.chars().count() > 100 && wrapped.chars().count() <= 100;
        let context = json!({
            "name": self.name,
            "crate_name": self.name.replace('-', "_"),
            "type_name": upper_camel(&self.name),
            "env_prefix": self.name.to_ascii_uppercase().replace('-', "_"),
            "description": self.description,
            "description_rust": description_rust,
            // A TOML basic string: the description has no control characters, so Rust's
            // escapes (of `"` and `\`) are TOML's.
            "description_toml": description_rust,
            "description_wrapped": wrap,
            "settings": self.settings,
            "key_required": self.key == KeyArg::Required,
            "key_policy": match self.key {
                KeyArg::Derived => "Derived",
                KeyArg::Required => "Required",
            },
            "mode": match self.mode {
                ModeArg::Claim => "Claim",
                ModeArg::Optimistic => "Optimistic",
            },
        });
        let mut env = minijinja::Environment::new();
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .keep_trailing_newline(true)
            .build()
            .map_err(|e| CliError::Failed(format!("template syntax: {e}")))?;
        env.set_syntax(syntax);
        // Rust and TOML, not HTML: nothing is escaped.
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        let context = minijinja::Value::from(minijinja::value::Serde(context));
        let mut files = Vec::new();
        for (path, template) in [
            ("Cargo.toml", CARGO_TOML),
            ("src/lib.rs", LIB_RS),
            ("src/main.rs", MAIN_RS),
            ("src/tests.rs", TESTS_RS),
        ] {
            let text = env
                .render_str(template, context.clone())
                .map_err(|e| CliError::Failed(format!("template of {path}: {e}")))?;
            files.push((path, text));
        }
        Ok(files)
    }
}

/// Run `actiondo new`.
pub fn run(args: &NewArgs) -> Result<u8, CliError> {
    let scaffold = Scaffold::new(args)?;
    let root = workspace_root(&std::env::current_dir()?)?;
    check_free(&root, scaffold.name()).map_err(CliError::Usage)?;
    let files = scaffold.files()?;
    let name = scaffold.name();
    let package = root.join("functions").join(name);
    // Everything that can be refused is, before anything is written.
    let catalog = root.join("catalog/Cargo.toml");
    let manifest = std::fs::read_to_string(&catalog).map_err(|e| failed(&catalog, e))?;
    let manifest = with_catalog_dependency(&manifest, name).map_err(CliError::Usage)?;

    for (path, text) in &files {
        let path = package.join(path);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| failed(&path, e))?;
        }
        std::fs::write(&path, text).map_err(|e| failed(&path, e))?;
    }
    let mut report = vec![format!(
        "created functions/{name}/: {}",
        files.iter().map(|(p, _)| *p).collect::<Vec<_>>().join(", ")
    )];

    std::fs::write(&catalog, manifest).map_err(|e| failed(&catalog, e))?;
    report.push(format!(
        "catalog/Cargo.toml: {} (catalog/build.rs registers the action)",
        catalog_dependency(name)
    ));

    report.extend(fix_template(&root)?);
    if scaffold.settings {
        let prefix = name.to_ascii_uppercase().replace('-', "_");
        report.push(format!(
            "template.yaml: give {}Function's Environment.Variables {prefix}_ENDPOINT (and \
             {prefix}_TIMEOUT_MS if 5000 ms does not suit), e.g. from a Parameter",
            upper_camel(name)
        ));
    }
    report.push(format!(
        "next: write the action in functions/{name}/src/lib.rs, then run \
         ./tests/run.sh -- -p {name} -p actiondo-cli"
    ));
    crate::print_stdout(&report.join("\n"))?;
    Ok(EXIT_OK)
}

fn failed(path: &Path, e: std::io::Error) -> CliError {
    CliError::Failed(format!("{}: {e}", path.display()))
}

/// Whether `name` can name an action: kebab-case (lowercase ASCII letters and digits in
/// words joined by single hyphens, starting with a letter), at most [`MAX_NAME_CHARS`],
/// not a Rust keyword, and not the name of a type the generated code uses.
pub fn check_name(name: &str) -> Result<(), String> {
    let kebab = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.split('-').all(|w| {
            !w.is_empty()
                && w.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        });
    if !kebab {
        return Err(format!(
            "{name:?} is not kebab-case: lowercase letters and digits in words joined by \
             hyphens, starting with a letter (accept-order)"
        ));
    }
    if name.len() > MAX_NAME_CHARS {
        return Err(format!(
            "{name:?} is longer than {MAX_NAME_CHARS} characters"
        ));
    }
    if KEYWORDS.contains(&name) {
        return Err(format!(
            "{name:?} is a Rust keyword: it cannot name a crate"
        ));
    }
    if USED_IDENTIFIERS.contains(&upper_camel(name).as_str()) {
        return Err(format!(
            "{name:?} would name the action's type {}, which the generated code uses for \
             something else",
            upper_camel(name)
        ));
    }
    Ok(())
}

/// Whether `name` is free in the workspace at `root`: no package under `functions/`
/// (nor another package of the workspace, nor a workspace dependency) has that name or
/// the same type name, so that the crate, its `<Type>Function` and its
/// `ACTIONDO_FUNCTION_<NAME>` are new.
pub fn check_free(root: &Path, name: &str) -> Result<(), String> {
    if root.join("functions").join(name).exists() {
        return Err(format!("functions/{name} exists already"));
    }
    let manifest = std::fs::read_to_string(root.join("Cargo.toml"))
        .map_err(|e| format!("{}: {e}", root.join("Cargo.toml").display()))?;
    let ty = upper_camel(name);
    for package in workspace_packages(root, &manifest) {
        if package == name {
            return Err(format!(
                "the workspace has a package named {name:?} already"
            ));
        }
        if upper_camel(&package) == ty {
            return Err(format!(
                "{name:?} and the package {package:?} would have the same type name, {ty}"
            ));
        }
    }
    let dependencies = table_keys(&manifest, "workspace.dependencies");
    if dependencies.iter().any(|d| d.replace('_', "-") == name) {
        return Err(format!(
            "{name:?} is a dependency of the workspace: the crate names would clash"
        ));
    }
    Ok(())
}

/// The workspace containing `from`: the closest folder above it (or itself) with a
/// `Cargo.toml` that has a `[workspace]`, a `functions/` folder and `catalog/Cargo.toml`.
pub fn workspace_root(from: &Path) -> Result<PathBuf, CliError> {
    from.ancestors()
        .find(|dir| {
            dir.join("functions").is_dir()
                && dir.join("catalog/Cargo.toml").is_file()
                && std::fs::read_to_string(dir.join("Cargo.toml"))
                    .is_ok_and(|m| m.lines().any(|l| l.trim() == "[workspace]"))
        })
        .map(Path::to_path_buf)
        .ok_or_else(|| {
            CliError::Usage(format!(
                "{} is not inside the action.do workspace (a Cargo.toml with [workspace], \
                 functions/ and catalog/)",
                from.display()
            ))
        })
}

/// `accept-order` → `AcceptOrder`: the action's type (and `<Type>Function` in
/// `template.yaml`).
pub fn upper_camel(name: &str) -> String {
    name.split('-')
        .map(|word| {
            let mut chars = word.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// The catalog's dependency line of action `name`.
pub fn catalog_dependency(name: &str) -> String {
    format!("{name} = {{ path = \"../functions/{name}\" }}")
}

/// `catalog/Cargo.toml` with the path dependency of `name` among the others (in name
/// order), or why it cannot be added.
pub fn with_catalog_dependency(manifest: &str, name: &str) -> Result<String, String> {
    let mut lines: Vec<&str> = manifest.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.trim() == "[dependencies]")
        .ok_or("catalog/Cargo.toml has no [dependencies]")?;
    let end = lines[start + 1..]
        .iter()
        .position(|l| l.trim_start().starts_with('['))
        .map_or(lines.len(), |i| start + 1 + i);
    let actions: Vec<usize> = (start + 1..end)
        .filter(|&i| lines[i].contains("path = \"../functions/"))
        .collect();
    if actions
        .iter()
        .any(|&i| lines[i].split('=').next().map(str::trim) == Some(name))
    {
        return Err(format!("catalog/Cargo.toml depends on {name} already"));
    }
    let line = catalog_dependency(name);
    let at = actions
        .iter()
        .copied()
        .find(|&i| lines[i] > line.as_str())
        .or_else(|| actions.last().map(|&i| i + 1))
        .unwrap_or(start + 1);
    lines.insert(at, &line);
    let mut text = lines.join("\n");
    text.push('\n');
    Ok(text)
}

/// Run `tests/check_stack.py --fix` in `root`; its report lines.
fn fix_template(root: &Path) -> Result<Vec<String>, CliError> {
    let venv = root.join(".tools/venv/bin/python");
    let python = if venv.is_file() {
        venv.into_os_string()
    } else {
        "python3".into()
    };
    let out = Command::new(&python)
        .arg("tests/check_stack.py")
        .arg("--fix")
        .current_dir(root)
        .output()
        .map_err(|e| {
            CliError::Failed(format!(
                "the package and its catalog entry are written, but template.yaml is not: \
                 cannot run {} ({e}); run `python3 tests/check_stack.py --fix` (it needs \
                 cfn-lint: ./tests/run.sh --checks-only installs it)",
                python.to_string_lossy()
            ))
        })?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(CliError::Failed(format!(
            "the package and its catalog entry are written, but tests/check_stack.py --fix \
             failed; fix template.yaml, then run it again:\n{stdout}{stderr}"
        )));
    }
    Ok(stdout
        .lines()
        .map(|l| format!("template.yaml: {}", l.trim_start_matches("check_stack: ")))
        .collect())
}

/// The members of the workspace manifest `manifest` (at `root`), `dir/*` globs
/// expanded, as package names.
fn workspace_packages(root: &Path, manifest: &str) -> Vec<String> {
    let Some(start) = manifest.find("members") else {
        return Vec::new();
    };
    let rest = &manifest[start..];
    let list = rest
        .find('[')
        .and_then(|open| {
            rest[open..]
                .find(']')
                .map(|close| &rest[open + 1..open + close])
        })
        .unwrap_or_default();
    let mut dirs = Vec::new();
    for member in list.split(',').map(|m| m.trim().trim_matches('"')) {
        if member.is_empty() {
            continue;
        }
        match member.strip_suffix("/*") {
            Some(parent) => {
                if let Ok(entries) = std::fs::read_dir(root.join(parent)) {
                    dirs.extend(entries.filter_map(Result::ok).map(|e| e.path()));
                }
            }
            None => dirs.push(root.join(member)),
        }
    }
    dirs.iter()
        .filter_map(|dir| std::fs::read_to_string(dir.join("Cargo.toml")).ok())
        .filter_map(|m| {
            let package = table_keys_values(&m, "package");
            package
                .into_iter()
                .find(|(k, _)| k == "name")
                .map(|(_, v)| v.trim_matches('"').to_owned())
        })
        .collect()
}

/// The keys of table `[name]` of a manifest.
fn table_keys(manifest: &str, name: &str) -> Vec<String> {
    table_keys_values(manifest, name)
        .into_iter()
        .map(|(k, _)| k)
        .collect()
}

/// The `key = value` lines of table `[name]` of a manifest (one-line values).
fn table_keys_values(manifest: &str, name: &str) -> Vec<(String, String)> {
    let header = format!("[{name}]");
    manifest
        .lines()
        .map(str::trim)
        .skip_while(|l| *l != header)
        .skip(1)
        .take_while(|l| !l.starts_with('['))
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(name: &str) -> NewArgs {
        NewArgs {
            name: name.to_owned(),
            description: None,
            settings: false,
            key: KeyArg::Derived,
            mode: ModeArg::Claim,
        }
    }

    #[test]
    fn names_are_kebab_case_and_usable_as_crates_and_types() {
        for good in ["accept-order", "send-2fa", "a", "x1-y2-z3"] {
            assert_eq!(check_name(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "Accept-order",
            "accept_order",
            "accept--order",
            "-accept",
            "accept-",
            "2fa",
            "accept order",
            "self",
            "mode",
            "action-context",
            "a-very-long-action-name-over-thirty",
        ] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn type_names_are_upper_camel_case() {
        assert_eq!(upper_camel("accept-order"), "AcceptOrder");
        assert_eq!(upper_camel("send-2fa"), "Send2fa");
        assert_eq!(
            upper_camel("create-or-update-contact"),
            "CreateOrUpdateContact"
        );
    }

    #[test]
    fn descriptions_are_one_short_line() {
        let mut a = args("accept-order");
        a.description = Some("two\nlines".into());
        assert!(Scaffold::new(&a).is_err());
        a.description = Some(" ".into());
        assert!(Scaffold::new(&a).is_err());
        a.description = Some("x".repeat(MAX_DESCRIPTION_CHARS + 1));
        assert!(Scaffold::new(&a).is_err());
        a.description = Some(r#"Says "hi" \ once."#.into());
        let files = Scaffold::new(&a)
            .and_then(|s| s.files())
            .unwrap_or_default();
        let manifest = files.iter().find(|(p, _)| *p == "Cargo.toml");
        assert!(
            manifest.is_some_and(|(_, t)| t.contains(r#"description = "Says \"hi\" \\ once.""#)),
            "{files:?}"
        );
    }

    #[test]
    fn the_catalog_dependency_goes_in_name_order() {
        let manifest = "[package]\nname = \"c\"\n\n[dependencies]\nactiondo.workspace = true\n\
                        # actions\nb = { path = \"../functions/b\" }\nd = { path = \"../functions/d\" }\n\n\
                        [lints]\nworkspace = true\n";
        let added = with_catalog_dependency(manifest, "c");
        assert_eq!(
            added.as_deref(),
            Ok(
                "[package]\nname = \"c\"\n\n[dependencies]\nactiondo.workspace = true\n\
                # actions\nb = { path = \"../functions/b\" }\nc = { path = \"../functions/c\" }\n\
                d = { path = \"../functions/d\" }\n\n[lints]\nworkspace = true\n"
            )
        );
        let last = with_catalog_dependency(manifest, "e").unwrap_or_default();
        assert!(
            last.contains("d\" }\ne = { path = \"../functions/e\" }\n"),
            "{last}"
        );
        let first = with_catalog_dependency(manifest, "a").unwrap_or_default();
        assert!(first.contains("# actions\na = "), "{first}");
        assert!(with_catalog_dependency(manifest, "b").is_err());
    }
}
