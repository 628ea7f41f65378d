//! How results look: the watch sinks (a progress bar, plain lines, JSON
//! lines) and the human-readable forms of jobs and pages.

use std::io::Write;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;

use crate::event::{Event, Outcome};
use crate::watch::EventSink;

/// Prints `value` as one line of JSON on stdout.
pub fn print_json(value: &Value) {
    println!("{value}");
}

/// Each event as a plain line `#seq description` on stdout; notices on stderr.
/// For when stdout is not a terminal.
#[derive(Debug, Default)]
pub struct Lines;

impl EventSink for Lines {
    fn event(&mut self, event: &Event) {
        println!("#{} {}", event.seq, event.describe());
    }

    fn notice(&mut self, message: &str) {
        eprintln!("projectengine: {message}");
    }
}

/// Each event exactly as the server sent it, one JSON object per line on
/// stdout; notices on stderr.
#[derive(Debug, Default)]
pub struct JsonLines;

impl EventSink for JsonLines {
    fn event(&mut self, event: &Event) {
        print_json(&event.raw);
    }

    fn notice(&mut self, message: &str) {
        eprintln!("projectengine: {message}");
    }
}

/// A live progress bar on the terminal: status, progress %, stage and the
/// step in hand on the bar; stages, finished steps, log lines and notices
/// printed above it as they come.
#[derive(Debug)]
pub struct Bar {
    bar: ProgressBar,
    status: String,
    stage: String,
    step: String,
}

impl Bar {
    /// A bar drawn on stdout.
    pub fn new(job: &str) -> Self {
        let bar = ProgressBar::with_draw_target(Some(100), ProgressDrawTarget::stdout());
        let style =
            ProgressStyle::with_template("{spinner} {prefix} [{bar:30}] {pos:>3}% {wide_msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
        bar.set_style(style);
        bar.enable_steady_tick(Duration::from_millis(120));
        bar.println(format!("watching job {job}"));
        let mut this = Self {
            bar,
            status: "waiting".into(),
            stage: String::new(),
            step: String::new(),
        };
        this.redraw();
        this
    }

    fn redraw(&mut self) {
        self.bar.set_prefix(format!("{:<9}", self.status));
        let msg = match (self.stage.is_empty(), self.step.is_empty()) {
            (true, true) => String::new(),
            (false, true) => self.stage.clone(),
            (true, false) => self.step.clone(),
            (false, false) => format!("{} · {}", self.stage, self.step),
        };
        self.bar.set_message(msg);
    }

    /// Clears the bar and prints how the job ended, with its last stage and
    /// progress.
    pub fn finish(&mut self, job: &str, outcome: Outcome) {
        self.bar.finish_and_clear();
        let mark = match outcome {
            Outcome::Succeeded => "✔",
            Outcome::Failed => "✘",
            Outcome::Cancelled => "■",
        };
        let stage = if self.stage.is_empty() {
            String::new()
        } else {
            format!(", stage {}", self.stage)
        };
        println!(
            "{mark} job {job} {}{stage}, {}%",
            outcome.as_str(),
            self.bar.position()
        );
        let _ = std::io::stdout().flush();
    }

    /// Clears the bar without a verdict (an error or an interruption).
    pub fn abandon(&mut self) {
        self.bar.finish_and_clear();
    }
}

impl EventSink for Bar {
    fn event(&mut self, event: &Event) {
        if let Some(status) = event.status() {
            self.status = status.to_owned();
            if let Some(e) = event.data.get("error") {
                self.bar.println(format!("  ! {}", crate::event::error(e)));
            }
            if status == "queued" && event.seq > 1 {
                // A retry: the next attempt starts from nothing.
                self.bar.set_position(0);
                self.step.clear();
            }
        } else if let Some(stage) = event.stage() {
            self.stage = stage.to_owned();
            self.step.clear();
            self.bar.println(format!("▸ {stage}"));
        } else if let Some(p) = event.progress() {
            self.bar.set_position(p);
        } else if let Some((status, name)) = event.step() {
            match status {
                "started" => self.step = name.to_owned(),
                "completed" => {
                    self.bar.println(format!("  ✔ {name}"));
                    self.step.clear();
                }
                "failed" => {
                    self.bar.println(format!("  ✘ {name}"));
                    self.step.clear();
                }
                other => self.bar.println(format!("  {other} {name}")),
            }
        } else if event.kind == "log" {
            let text = |k: &str| event.data.get(k).and_then(Value::as_str).unwrap_or("");
            self.bar
                .println(format!("  {:<5} {}", text("level"), text("message")));
        } else {
            self.bar.println(format!("  {}", event.describe()));
        }
        self.redraw();
    }

    fn notice(&mut self, message: &str) {
        self.bar.println(format!("  ~ {message}"));
    }
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn number(v: &Value, key: &str) -> String {
    v.get(key).map_or_else(String::new, |n| match n {
        Value::Null => String::new(),
        other => other.to_string(),
    })
}

/// One line per job: id, status, progress, stage, kind, created, prompt.
pub fn jobs_table(page: &Value) -> String {
    let mut rows = vec![[
        "ID".to_owned(),
        "STATUS".into(),
        "PROGRESS".into(),
        "STAGE".into(),
        "KIND".into(),
        "CREATED".into(),
        "PROMPT".into(),
    ]];
    for job in page
        .get("items")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        rows.push([
            text(job, "id").to_owned(),
            text(job, "status").to_owned(),
            format!("{}%", number(job, "progress")),
            text(job, "stage").to_owned(),
            text(job, "kind").to_owned(),
            short_time(text(job, "created_at")),
            one_line(text(job, "prompt"), 40),
        ]);
    }
    let mut out = table(&rows);
    if let Some(cursor) = page.get("next_cursor").and_then(Value::as_str) {
        out.push_str(&format!("more: --cursor {cursor}\n"));
    }
    out
}

/// A job with its steps and attempts, as `show` prints it.
pub fn job_detail(job: &Value) -> String {
    let mut out = format!("job {} ({})\n", text(job, "id"), text(job, "kind"));
    let mut field = |name: &str, value: String| {
        if !value.is_empty() {
            out.push_str(&format!("  {name:<12}{value}\n"));
        }
    };
    field("status", text(job, "status").to_owned());
    field("stage", text(job, "stage").to_owned());
    field("progress", format!("{}%", number(job, "progress")));
    field("prompt", one_line(text(job, "prompt"), 200));
    if job
        .get("params")
        .is_some_and(|p| p.as_object().is_some_and(|o| !o.is_empty()))
    {
        field("params", job["params"].to_string());
    }
    field("priority", number(job, "priority"));
    field(
        "attempts",
        format!(
            "{} of {}",
            number(job, "attempts_used"),
            number(job, "max_attempts")
        ),
    );
    field("created", text(job, "created_at").to_owned());
    field("started", text(job, "started_at").to_owned());
    field("finished", text(job, "finished_at").to_owned());
    if job.get("cancel_requested") == Some(&Value::Bool(true)) {
        field("cancel", "requested".to_owned());
    }
    if let Some(e) = job.get("error").filter(|e| !e.is_null()) {
        field("error", crate::event::error(e));
    }
    let steps = job.get("steps").and_then(Value::as_array);
    if let Some(steps) = steps.filter(|s| !s.is_empty()) {
        out.push_str("steps:\n");
        for s in steps {
            out.push_str(&format!(
                "  #{:<5} {:<10} {}\n",
                number(s, "seq"),
                text(s, "status"),
                text(s, "name")
            ));
        }
    }
    let attempts = job.get("attempts").and_then(Value::as_array);
    if let Some(attempts) = attempts.filter(|a| !a.is_empty()) {
        out.push_str("attempts:\n");
        for a in attempts {
            let mut line = format!(
                "  {:<3} {:<10} {}",
                number(a, "number"),
                text(a, "status"),
                text(a, "started_at")
            );
            if let Some(e) = a.get("error").filter(|e| !e.is_null()) {
                line.push_str(&format!("  {}", crate::event::error(e)));
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
    }
    out
}

/// A job after `submit`, `cancel` or `retry`: one line.
pub fn job_line(verb: &str, job: &Value) -> String {
    let mut line = format!(
        "{verb} job {} ({}): {}",
        text(job, "id"),
        text(job, "kind"),
        text(job, "status")
    );
    if job.get("cancel_requested") == Some(&Value::Bool(true)) {
        line.push_str(", cancel requested");
    }
    line
}

/// A job's artifacts: name, size, sha256, content type, attempt.
pub fn artifacts_table(list: &Value) -> String {
    let items: Vec<&Value> = list
        .get("items")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .collect();
    if items.is_empty() {
        return "no artifacts\n".to_owned();
    }
    let mut rows = vec![[
        "NAME".to_owned(),
        "SIZE".into(),
        "SHA256".into(),
        "TYPE".into(),
        "ATTEMPT".into(),
    ]];
    for a in items {
        rows.push([
            text(a, "name").to_owned(),
            number(a, "size"),
            text(a, "sha256").to_owned(),
            text(a, "content_type").to_owned(),
            number(a, "attempt"),
        ]);
    }
    table(&rows)
}

/// Rows as left-aligned columns, two spaces apart.
fn table<const N: usize>(rows: &[[String; N]]) -> String {
    let mut widths = [0usize; N];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            if i + 1 == N {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `s` on one line, cut to `max` characters.
fn one_line(s: &str, max: usize) -> String {
    let flat: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max {
        return flat;
    }
    let mut cut: String = flat.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// An RFC 3339 time to the second, without the fraction.
fn short_time(t: &str) -> String {
    match t.split_once('.') {
        Some((head, _)) => format!("{head}Z"),
        None => t.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn tables_align_their_columns() {
        let page = json!({"items": [
            {"id": "a", "status": "running", "progress": 40, "stage": "PLANNING", "kind": "stub",
             "created_at": "2026-01-01T10:00:00.123456Z", "prompt": "build\nme   a todo app"},
            {"id": "bb", "status": "queued", "progress": 0, "stage": null, "kind": "app-builder",
             "created_at": "2026-01-01T10:00:01Z", "prompt": "x"}
        ], "next_cursor": "bb"});
        let out = jobs_table(&page);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 4, "{out}");
        assert!(
            lines[0].starts_with("ID  STATUS   PROGRESS  STAGE"),
            "{out}"
        );
        assert!(
            lines[1].contains("running  40%") && lines[1].ends_with("build me a todo app"),
            "{out}"
        );
        assert!(lines[1].contains("2026-01-01T10:00:00Z"), "{out}");
        assert_eq!(lines[3], "more: --cursor bb");
    }

    #[test]
    fn a_job_shows_its_steps_attempts_and_error() {
        let job = json!({"id": "j", "kind": "stub", "status": "failed", "stage": "GEN", "progress": 10,
            "prompt": "p", "params": {"fail": "fatal"}, "priority": 0, "attempts_used": 1, "max_attempts": 1,
            "created_at": "c", "started_at": "s", "finished_at": "f", "cancel_requested": false,
            "error": {"code": "orchestrator_error", "message": "boom"},
            "steps": [{"seq": 4, "status": "completed", "name": "step 1 of 2"}],
            "attempts": [{"number": 1, "status": "failed", "started_at": "s",
                          "error": {"code": "orchestrator_error", "message": "boom"}}]});
        let out = job_detail(&job);
        for want in [
            "job j (stub)",
            "  status      failed",
            "  params      {\"fail\":\"fatal\"}",
            "  attempts    1 of 1",
            "  error       orchestrator_error: boom",
            "  #4     completed  step 1 of 2",
            "  1   failed     s  orchestrator_error: boom",
        ] {
            assert!(out.lines().any(|l| l == want), "missing {want:?} in\n{out}");
        }
    }

    #[test]
    fn artifacts_list_as_a_table() {
        assert_eq!(artifacts_table(&json!({"items": []})), "no artifacts\n");
        let out = artifacts_table(&json!({"items": [
            {"name": "dist/app.tar.gz", "size": 1234, "sha256": "ab12", "content_type": "application/gzip", "attempt": 1}
        ]}));
        assert_eq!(
            out.lines().nth(1),
            Some("dist/app.tar.gz  1234  ab12    application/gzip  1")
        );
    }
}
