//! A pipeline job's params: parsed, checked against the configured caps,
//! turned into sandbox commands.

use std::collections::BTreeSet;
use std::time::Duration;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use projectengine_sandbox::{checked_relative, Command, Limits};
use serde::Deserialize;
use serde_json::Value;

use super::PipelineConfig;

/// The params as submitted.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawParams {
    #[serde(default)]
    files: Vec<RawFile>,
    phases: Vec<RawPhase>,
    #[serde(default)]
    artifacts: Vec<String>,
    #[serde(default)]
    on_failure: OnFailure,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    path: String,
    content: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPhase {
    name: String,
    argv: Vec<String>,
    #[serde(default = "one")]
    weight: u32,
    #[serde(default)]
    allow_network: bool,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    gate: bool,
}

fn one() -> u32 {
    1
}

/// Per-phase limits; each may only lower the configured one.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    wall_time_ms: Option<u64>,
    cpu_time_ms: Option<u64>,
    memory_bytes: Option<u64>,
    processes: Option<u64>,
    file_size_bytes: Option<u64>,
    open_files: Option<u64>,
    output_bytes: Option<u64>,
}

/// Whether a failing phase fails the attempt for good or lets it be retried.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// The job fails now (the default).
    #[default]
    Fatal,
    /// The job is retried while attempts remain.
    Retryable,
}

/// One input file.
#[derive(Debug)]
pub(crate) struct InputFile {
    pub path: String,
    pub content: String,
}

/// One phase, ready to run.
#[derive(Debug)]
pub(crate) struct Phase {
    pub name: String,
    pub command: Command,
    pub weight: u32,
    pub gate: bool,
}

/// A checked pipeline.
#[derive(Debug)]
pub(crate) struct Pipeline {
    pub files: Vec<InputFile>,
    pub phases: Vec<Phase>,
    pub artifact_patterns: Vec<String>,
    pub artifacts: GlobSet,
    pub on_failure: OnFailure,
}

/// Bad params: the field (a path such as `phases[1].argv`) and why.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Invalid {
    pub field: String,
    pub reason: String,
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "params.{}: {}", self.field, self.reason)
    }
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Invalid {
    Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

impl Pipeline {
    /// Parses and checks `params` against `config`.
    pub(crate) fn parse(params: &Value, config: &PipelineConfig) -> Result<Self, Invalid> {
        let raw: RawParams = serde_path_to_error::deserialize(params).map_err(|e| {
            let path = e.path().to_string();
            invalid(
                if path == "." { String::new() } else { path },
                e.into_inner().to_string(),
            )
        })?;
        if raw.files.len() > config.max_files {
            return Err(invalid(
                "files",
                format!("at most {} files", config.max_files),
            ));
        }
        let total: usize = raw.files.iter().map(|f| f.content.len()).sum();
        if total > config.max_input_bytes {
            return Err(invalid(
                "files",
                format!(
                    "{total} bytes of content, more than {}",
                    config.max_input_bytes
                ),
            ));
        }
        let mut paths = BTreeSet::new();
        for (i, file) in raw.files.iter().enumerate() {
            checked_relative(&file.path)
                .map_err(|e| invalid(format!("files[{i}].path"), e.to_string()))?;
            if !paths.insert(file.path.as_str()) {
                return Err(invalid(
                    format!("files[{i}].path"),
                    format!("{} is given twice", file.path),
                ));
            }
        }
        if raw.phases.is_empty() {
            return Err(invalid("phases", "at least one phase is needed"));
        }
        if raw.phases.len() > config.max_phases {
            return Err(invalid(
                "phases",
                format!("at most {} phases", config.max_phases),
            ));
        }
        let mut names = BTreeSet::new();
        let mut phases = Vec::with_capacity(raw.phases.len());
        for (i, phase) in raw.phases.into_iter().enumerate() {
            let field = |f: &str| format!("phases[{i}].{f}");
            let name_ok = !phase.name.is_empty()
                && phase.name.len() <= 64
                && phase
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !name_ok {
                return Err(invalid(
                    field("name"),
                    "1 to 64 ASCII letters, digits, `-` or `_`",
                ));
            }
            if !names.insert(phase.name.clone()) {
                return Err(invalid(
                    field("name"),
                    format!("{} is given twice", phase.name),
                ));
            }
            if phase.allow_network && !config.allow_network {
                return Err(invalid(
                    field("allow_network"),
                    "this server runs phases offline only",
                ));
            }
            let limits = limits(&phase.limits, &config.limits)
                .map_err(|(f, reason)| invalid(field(&format!("limits.{f}")), reason))?;
            let command = Command::new(phase.argv)
                .allow_network(phase.allow_network)
                .limits(limits);
            command
                .validate()
                .map_err(|e| invalid(field("argv"), e.to_string()))?;
            phases.push(Phase {
                name: phase.name,
                command,
                weight: phase.weight,
                gate: phase.gate,
            });
        }
        if phases.iter().map(|p| u64::from(p.weight)).sum::<u64>() == 0 {
            return Err(invalid("phases", "the weights add up to zero"));
        }
        let mut globs = GlobSetBuilder::new();
        for (i, pattern) in raw.artifacts.iter().enumerate() {
            let field = format!("artifacts[{i}]");
            let plain = !pattern.is_empty()
                && !pattern.starts_with('/')
                && !pattern.contains('\0')
                && !pattern.contains('\\')
                && pattern
                    .split('/')
                    .all(|part| part != ".." && part != "." && !part.is_empty());
            if !plain {
                return Err(invalid(
                    field,
                    "must be a relative glob without `.`, `..`, `\\` or empty parts",
                ));
            }
            let glob = GlobBuilder::new(pattern)
                .literal_separator(true)
                .build()
                .map_err(|e| invalid(field, e.kind().to_string()))?;
            globs.add(glob);
        }
        let artifacts = globs
            .build()
            .map_err(|e| invalid("artifacts", e.to_string()))?;
        Ok(Self {
            files: raw
                .files
                .into_iter()
                .map(|f| InputFile {
                    path: f.path,
                    content: f.content,
                })
                .collect(),
            phases,
            artifact_patterns: raw.artifacts,
            artifacts,
            on_failure: raw.on_failure,
        })
    }

    /// The sum of the weights.
    pub(crate) fn total_weight(&self) -> u64 {
        self.phases.iter().map(|p| u64::from(p.weight)).sum()
    }
}

/// The configured caps, lowered where the phase asks for less. Asking for
/// more than a cap is refused.
fn limits(raw: &RawLimits, cap: &Limits) -> Result<Limits, (&'static str, String)> {
    fn lower(
        field: &'static str,
        asked: Option<u64>,
        cap: Option<u64>,
    ) -> Result<Option<u64>, (&'static str, String)> {
        match (asked, cap) {
            (None, cap) => Ok(cap),
            (Some(0), _) => Err((field, "must be more than zero".into())),
            (Some(asked), Some(cap)) if asked > cap => {
                Err((field, format!("{asked} is more than this server's {cap}")))
            }
            (Some(asked), _) => Ok(Some(asked)),
        }
    }
    let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let wall = lower(
        "wall_time_ms",
        raw.wall_time_ms,
        Some(millis(cap.wall_time)),
    )?;
    let cpu = lower("cpu_time_ms", raw.cpu_time_ms, cap.cpu_time.map(millis))?;
    let output = lower("output_bytes", raw.output_bytes, Some(cap.output_bytes))?;
    Ok(Limits {
        wall_time: Duration::from_millis(wall.unwrap_or(u64::MAX)),
        cpu_time: cpu.map(Duration::from_millis),
        memory_bytes: lower("memory_bytes", raw.memory_bytes, cap.memory_bytes)?,
        processes: lower("processes", raw.processes, cap.processes)?,
        file_size_bytes: lower("file_size_bytes", raw.file_size_bytes, cap.file_size_bytes)?,
        open_files: lower("open_files", raw.open_files, cap.open_files)?,
        output_bytes: output.unwrap_or(cap.output_bytes),
        ..cap.clone()
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(params: Value) -> Result<Pipeline, Invalid> {
        Pipeline::parse(&params, &PipelineConfig::default())
    }

    fn field(params: Value) -> String {
        parse(params).expect_err("invalid").field
    }

    #[test]
    fn a_full_pipeline_parses_with_defaults_and_lowered_limits() {
        let p = parse(json!({
            "files": [{"path": "src/main.c", "content": "int main(){return 0;}"}],
            "phases": [
                {"name": "build", "argv": ["cc", "src/main.c"], "weight": 3, "limits": {"wall_time_ms": 5000, "processes": 10}},
                {"name": "test", "argv": ["./a.out"], "gate": true}
            ],
            "artifacts": ["a.out", "out/**/*.txt"],
            "on_failure": "retryable"
        }))
        .expect("valid");
        assert_eq!(p.phases.len(), 2);
        assert_eq!(p.total_weight(), 4);
        assert!(p.phases[1].gate);
        let limits = p.phases[0].command.limits_ref();
        assert_eq!(limits.wall_time, Duration::from_secs(5));
        assert_eq!(limits.processes, Some(10));
        assert_eq!(limits.memory_bytes, Limits::default().memory_bytes);
        assert_eq!(p.on_failure, OnFailure::Retryable);
        assert!(p.artifacts.is_match("out/a/b.txt"));
        assert!(p.artifacts.is_match("a.out"));
        assert!(!p.artifacts.is_match("sub/a.out"));
    }

    #[test]
    fn bad_params_name_their_field() {
        assert_eq!(field(json!({})), "");
        assert_eq!(field(json!({"phases": []})), "phases");
        assert_eq!(
            field(json!({"phases": [{"name": "a", "argv": []}]})),
            "phases[0].argv"
        );
        assert_eq!(
            field(json!({"phases": [{"name": "a b", "argv": ["x"]}]})),
            "phases[0].name"
        );
        assert_eq!(
            field(json!({"phases": [{"name": "a", "argv": ["x"]}, {"name": "a", "argv": ["y"]}]})),
            "phases[1].name"
        );
        assert_eq!(
            field(json!({"phases": [{"name": "a", "argv": ["x"], "weight": 0}]})),
            "phases"
        );
        assert_eq!(
            field(json!({"phases": [{"name": "a", "argv": ["x"], "colour": 1}]})),
            "phases[0].colour"
        );
        assert_eq!(
            field(
                json!({"phases": [{"name": "a", "argv": ["x"], "limits": {"memory_bytes": 1u64 << 40}}]})
            ),
            "phases[0].limits.memory_bytes"
        );
        assert_eq!(
            field(json!({"phases": [{"name": "a", "argv": ["x"], "allow_network": true}]})),
            "phases[0].allow_network"
        );
        assert_eq!(
            field(
                json!({"files": [{"path": "../x", "content": ""}], "phases": [{"name": "a", "argv": ["x"]}]})
            ),
            "files[0].path"
        );
        for bad in ["/etc/*", "../*", "a/../b", "[", ""] {
            assert_eq!(
                field(json!({"phases": [{"name": "a", "argv": ["x"]}], "artifacts": [bad]})),
                "artifacts[0]",
                "{bad}"
            );
        }
    }
}
