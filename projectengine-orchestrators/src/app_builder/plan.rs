//! The site plan the planner returns: its schema, and how a reply becomes
//! one (or a clear reason why not).

use std::collections::BTreeSet;

use projectengine_core::artifact::validate_name;
use serde::{Deserialize, Serialize};

/// Where the generated sources are kept as artifacts.
pub(crate) const SOURCE_PREFIX: &str = "source";

/// A site plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// The app's name.
    pub name: String,
    /// What it is, in a sentence or two.
    #[serde(default)]
    pub description: String,
    /// Every file to write.
    pub files: Vec<PlannedFile>,
    /// How to build it (none: the job's params, else a static copy).
    #[serde(default)]
    pub build: Option<BuildSpec>,
}

/// One file of a plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlannedFile {
    /// Its path, relative (`/`-separated, no `..`).
    pub path: String,
    /// What goes in it.
    #[serde(default)]
    pub purpose: String,
}

/// A build command and the directory it leaves the site in.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildSpec {
    /// The command, run as given (no shell) in the sources' directory.
    pub argv: Vec<String>,
    /// The directory of the built site, relative.
    pub output: String,
}

impl BuildSpec {
    /// The build of a plain static site: the sources copied into `site/`.
    pub fn static_copy() -> Self {
        Self {
            argv: vec![
                "sh".into(),
                "-ec".into(),
                "mkdir -p site && tar --exclude=./site -cf - . | tar -xf - -C site".into(),
            ],
            output: "site".into(),
        }
    }

    /// Checks the command and the output directory.
    pub fn validate(&self) -> Result<(), String> {
        if self.argv.is_empty() || self.argv[0].is_empty() {
            return Err("build.argv must name a program".into());
        }
        if self.argv.iter().any(|a| a.contains('\0')) {
            return Err("build.argv must not contain NUL".into());
        }
        validate_name(&self.output).map_err(|e| format!("build.output: {e}"))?;
        if self.output == SOURCE_PREFIX || self.output.starts_with("source/") {
            return Err("build.output must not be under `source/`".into());
        }
        Ok(())
    }
}

/// The JSON object in a model's reply: the reply itself, or the inside of
/// a fenced code block, or the text from the first `{` to the last `}`.
pub(crate) fn json_in(reply: &str) -> &str {
    let t = reply.trim();
    if let Some(start) = t.find('{') {
        if let Some(end) = t.rfind('}') {
            if end > start {
                return &t[start..=end];
            }
        }
    }
    t
}

/// Parses and checks a planner's reply: at most `max_files` files, each a
/// valid artifact name, no repeats.
pub(crate) fn parse(reply: &str, max_files: usize) -> Result<Plan, String> {
    let mut de = serde_json::Deserializer::from_str(json_in(reply));
    let plan: Plan = serde_path_to_error::deserialize(&mut de)
        .map_err(|e| format!("the plan is not valid JSON of the schema: {e}"))?;
    if plan.name.trim().is_empty() {
        return Err("name must not be empty".into());
    }
    if plan.files.is_empty() {
        return Err("files must list at least one file".into());
    }
    if plan.files.len() > max_files {
        return Err(format!(
            "files lists {} files, at most {max_files} allowed",
            plan.files.len()
        ));
    }
    let mut seen = BTreeSet::new();
    for (i, f) in plan.files.iter().enumerate() {
        check_path(&f.path).map_err(|e| format!("files[{i}].path: {e}"))?;
        if !seen.insert(f.path.as_str()) {
            return Err(format!("files[{i}].path: {:?} is listed twice", f.path));
        }
    }
    if let Some(build) = &plan.build {
        build.validate()?;
    }
    Ok(plan)
}

/// A generated file's path: a valid artifact name, not hidden under
/// `source/`.
pub(crate) fn check_path(path: &str) -> Result<(), String> {
    validate_name(path).map_err(|e| e.to_string())?;
    if path.len() > 200 {
        return Err("must be at most 200 bytes".into());
    }
    Ok(())
}

/// The schema, as the planner is told it.
pub(crate) const SCHEMA: &str = r#"{
  "name": "string, the app's name",
  "description": "string, one or two sentences",
  "files": [{"path": "relative path, e.g. index.html or css/style.css", "purpose": "what goes in it"}],
  "build": null
}"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fenced_plan_is_read() {
        let reply = "Here you go:\n```json\n{\"name\": \"Bakery\", \"files\": [{\"path\": \"index.html\"}]}\n```";
        let plan = parse(reply, 10).unwrap();
        assert_eq!(plan.name, "Bakery");
        assert_eq!(plan.files[0].path, "index.html");
        assert!(plan.build.is_none());
    }

    #[test]
    fn bad_plans_are_refused_saying_why() {
        let cases = [
            ("not json at all", "not valid JSON"),
            (r#"{"name": "x", "files": []}"#, "at least one file"),
            (
                r#"{"name": "x", "files": [{"path": "../etc/passwd"}]}"#,
                "files[0].path",
            ),
            (
                r#"{"name": "x", "files": [{"path": "/abs"}]}"#,
                "files[0].path",
            ),
            (
                r#"{"name": "x", "files": [{"path": "a"}, {"path": "a"}]}"#,
                "listed twice",
            ),
            (r#"{"name": "", "files": [{"path": "a"}]}"#, "name"),
            (r#"{"name": "x", "files": [{"path": 3}]}"#, "files[0].path"),
            (
                r#"{"name": "x", "files": [{"path": "a"}], "build": {"argv": [], "output": "d"}}"#,
                "build.argv",
            ),
            (
                r#"{"name": "x", "files": [{"path": "a"}], "build": {"argv": ["make"], "output": "../d"}}"#,
                "build.output",
            ),
        ];
        for (reply, expected) in cases {
            let err = parse(reply, 10).unwrap_err();
            assert!(err.contains(expected), "{reply}: {err}");
        }
        let many = serde_json::json!({"name": "x", "files": (0..11).map(|i| serde_json::json!({"path": format!("f{i}")})).collect::<Vec<_>>()});
        assert!(parse(&many.to_string(), 10)
            .unwrap_err()
            .contains("at most 10"));
    }
}
