//! [`Event`]: one entry of a job's event log, as the server sends it, and how
//! it reads as a line of text.

use serde_json::Value;

use crate::error::{CliError, Result};

/// How a watched job ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It succeeded.
    Succeeded,
    /// It failed.
    Failed,
    /// It was cancelled.
    Cancelled,
}

impl Outcome {
    /// The outcome of a terminal status name; `None` for the others.
    pub fn from_status(status: &str) -> Option<Self> {
        match status {
            "succeeded" => Some(Outcome::Succeeded),
            "failed" => Some(Outcome::Failed),
            "cancelled" => Some(Outcome::Cancelled),
            _ => None,
        }
    }

    /// The status name.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
            Outcome::Cancelled => "cancelled",
        }
    }
}

/// An event `{job_id, seq, attempt, at, type, data}`. Kinds this client does
/// not know are kept and shown as they are.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// 1, 2, 3 … per job, without gaps.
    pub seq: u64,
    /// `status`, `stage`, `step`, …
    pub kind: String,
    /// The payload (`Null` when absent).
    pub data: Value,
    /// The whole event as received.
    pub raw: Value,
}

impl Event {
    /// Reads an event from its JSON text.
    pub fn parse(text: &str) -> Result<Self> {
        let raw: Value = serde_json::from_str(text)
            .map_err(|e| CliError::Protocol(format!("an event that is not JSON: {e}")))?;
        let seq = raw
            .get("seq")
            .and_then(Value::as_u64)
            .ok_or_else(|| CliError::Protocol(format!("an event without a seq: {raw}")))?;
        let kind = raw
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("unknown")
            .to_owned();
        let data = raw.get("data").cloned().unwrap_or(Value::Null);
        Ok(Self {
            seq,
            kind,
            data,
            raw,
        })
    }

    fn text(&self, key: &str) -> &str {
        self.data.get(key).and_then(Value::as_str).unwrap_or("")
    }

    /// For a `status` event, the new status.
    pub fn status(&self) -> Option<&str> {
        (self.kind == "status").then(|| self.text("status"))
    }

    /// For a terminal `status` event, how the job ended.
    pub fn outcome(&self) -> Option<Outcome> {
        self.status().and_then(Outcome::from_status)
    }

    /// For a `stage` event, the stage.
    pub fn stage(&self) -> Option<&str> {
        (self.kind == "stage").then(|| self.text("stage"))
    }

    /// For a `progress` event, the percentage.
    pub fn progress(&self) -> Option<u64> {
        if self.kind != "progress" {
            return None;
        }
        self.data
            .get("progress")
            .and_then(Value::as_u64)
            .map(|p| p.min(100))
    }

    /// For a `step` event, (status, name).
    pub fn step(&self) -> Option<(&str, &str)> {
        (self.kind == "step").then(|| (self.text("status"), self.text("name")))
    }

    /// The event as one line of text, without its seq.
    pub fn describe(&self) -> String {
        match self.kind.as_str() {
            "status" => {
                let mut s = format!("status {}", self.text("status"));
                let attempt = self.raw.get("attempt").and_then(Value::as_u64).unwrap_or(0);
                if self.text("status") == "running" && attempt > 0 {
                    s.push_str(&format!(" (attempt {attempt})"));
                }
                if let Some(e) = self.data.get("error") {
                    s.push_str(&format!(" — {}", error(e)));
                }
                // The first `queued` carries the submission's run_at too;
                // only a requeue's says something new.
                if let Some(at) = self
                    .data
                    .get("run_at")
                    .and_then(Value::as_str)
                    .filter(|_| self.seq > 1)
                {
                    s.push_str(&format!(" (runs at {at})"));
                }
                s
            }
            "stage" => format!("stage {}", self.text("stage")),
            "step" => format!("step {}: {}", self.text("status"), self.text("name")),
            "progress" => format!("progress {}%", self.progress().unwrap_or(0)),
            "log" => format!("log {}: {}", self.text("level"), self.text("message")),
            "app" => format!("app {:?} {}", self.text("name"), self.text("app_id")),
            "error" => format!("error {}", error(&self.data)),
            "cancel_requested" => "cancel requested".to_owned(),
            other if self.data.is_null() => other.to_owned(),
            other => format!("{other} {}", self.data),
        }
    }
}

/// A job error `{code, message}` as `code: message`.
pub(crate) fn error(v: &Value) -> String {
    format!(
        "{}: {}",
        v.get("code").and_then(Value::as_str).unwrap_or("error"),
        v.get("message").and_then(Value::as_str).unwrap_or("")
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn ev(kind: &str, data: Value) -> Event {
        let raw =
            json!({"job_id": "j", "seq": 3, "attempt": 2, "at": "t", "type": kind, "data": data});
        Event::parse(&raw.to_string()).unwrap()
    }

    #[test]
    fn every_kind_reads_as_a_line() {
        let cases = [
            (
                ev("status", json!({"status": "running"})),
                "status running (attempt 2)",
            ),
            (
                ev(
                    "status",
                    json!({"status": "failed", "error": {"code": "orchestrator_error", "message": "boom"}}),
                ),
                "status failed — orchestrator_error: boom",
            ),
            (
                ev("status", json!({"status": "queued", "run_at": "t1"})),
                "status queued (runs at t1)",
            ),
            (ev("stage", json!({"stage": "PLANNING"})), "stage PLANNING"),
            (
                ev("step", json!({"name": "write a.rs", "status": "completed"})),
                "step completed: write a.rs",
            ),
            (ev("progress", json!({"progress": 40})), "progress 40%"),
            (
                ev("log", json!({"level": "info", "message": "hi"})),
                "log info: hi",
            ),
            (
                ev("app", json!({"app_id": "a1", "name": "todo"})),
                "app \"todo\" a1",
            ),
            (
                ev("error", json!({"code": "timeout", "message": "too long"})),
                "error timeout: too long",
            ),
            (ev("cancel_requested", Value::Null), "cancel requested"),
            (
                ev("artifact", json!({"name": "x"})),
                "artifact {\"name\":\"x\"}",
            ),
        ];
        for (e, line) in cases {
            assert_eq!(e.describe(), line);
            assert_eq!(e.seq, 3);
        }
    }

    #[test]
    fn the_first_queued_status_hides_its_run_at() {
        let raw = json!({"seq": 1, "type": "status", "data": {"status": "queued", "run_at": "t"}});
        let e = Event::parse(&raw.to_string()).unwrap();
        assert_eq!(e.describe(), "status queued");
    }

    #[test]
    fn terminal_statuses_are_outcomes() {
        assert_eq!(
            ev("status", json!({"status": "succeeded"})).outcome(),
            Some(Outcome::Succeeded)
        );
        assert_eq!(
            ev("status", json!({"status": "failed"})).outcome(),
            Some(Outcome::Failed)
        );
        assert_eq!(
            ev("status", json!({"status": "cancelled"})).outcome(),
            Some(Outcome::Cancelled)
        );
        assert_eq!(ev("status", json!({"status": "queued"})).outcome(), None);
        assert_eq!(ev("stage", json!({"stage": "failed"})).outcome(), None);
    }

    #[test]
    fn an_event_needs_a_seq() {
        assert!(Event::parse(r#"{"type": "stage"}"#).is_err());
        assert!(Event::parse("not json").is_err());
    }
}
