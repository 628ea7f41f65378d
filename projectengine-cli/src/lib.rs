#![doc = include_str!("../README.md")]

pub mod args;
pub mod artifacts;
pub mod client;
pub mod error;
pub mod event;
pub mod output;
pub mod token;
pub mod watch;

use std::io::{IsTerminal, Read};
use std::path::Path;

use reqwest::Method;
use serde_json::{json, Map, Value};

pub use args::Cli;
use args::{Command, ListArgs, SubmitArgs};
use client::Api;
pub use error::{CliError, Exit, Result};
use event::{Event, Outcome};
use output::{Bar, JsonLines, Lines};
use watch::{EventSink, WatchOptions};

/// Runs the command line `cli`; answers the exit code, or the error to report.
pub async fn run(cli: Cli) -> Result<Exit> {
    let json = cli.json;
    if let Command::Token(t) = &cli.command {
        let minted = token::mint(&token::TokenRequest {
            sub: &t.sub,
            ttl: t.ttl,
            secret: t.secret.as_deref(),
            issuer: t.issuer.as_deref(),
            audience: t.audience.as_deref(),
        })?;
        if json {
            output::print_json(
                &json!({ "token": minted.token, "sub": t.sub, "expires_at": minted.expires_at }),
            );
        } else {
            println!("{}", minted.token);
        }
        return Ok(Exit::Success);
    }
    // A variable set to an empty value counts as unset, as for the server.
    let server = match cli.server.trim() {
        "" => args::DEFAULT_SERVER,
        s => s,
    };
    let api = Api::new(server, cli.token)?;
    match cli.command {
        Command::Submit(s) => submit(&api, s, json).await,
        Command::Watch(w) => {
            let opts = WatchOptions {
                after: w.after,
                reconnect_for: w.reconnect_for,
            };
            watch_job(&api, &w.id, &opts, json).await
        }
        Command::List(l) => list(&api, l, json).await,
        Command::Show { id } => {
            let job = api.job(&id).await?;
            show(&job, json, output::job_detail)
        }
        Command::Cancel { id } => {
            let url = api.url(&["api", "jobs", &id, "cancel"], true);
            let job = api.json(Method::POST, url, None).await?;
            show(&job, json, |j| output::job_line("cancel:", j) + "\n")
        }
        Command::Retry { id } => {
            let url = api.url(&["api", "jobs", &id, "retry"], true);
            let job = api.json(Method::POST, url, None).await?;
            show(&job, json, |j| output::job_line("retry:", j) + "\n")
        }
        Command::Approve { id } => {
            let url = api.url(&["api", "jobs", &id, "approve"], true);
            let job = api.json(Method::POST, url, None).await?;
            show(&job, json, |j| output::job_line("approve:", j) + "\n")
        }
        Command::Reject { id, comment } => {
            let url = api.url(&["api", "jobs", &id, "reject"], true);
            let body = json!({ "comment": comment });
            let job = api.json(Method::POST, url, Some(&body)).await?;
            show(&job, json, |j| output::job_line("reject:", j) + "\n")
        }
        Command::Rerun { id } => {
            let url = api.url(&["api", "jobs", &id, "rerun"], true);
            let job = api.json(Method::POST, url, None).await?;
            show(&job, json, |j| output::job_line("rerun:", j) + "\n")
        }
        Command::Artifacts { id } => {
            let list = artifacts::list(&api, &id).await?;
            show(&list, json, output::artifacts_table)
        }
        Command::Download(d) => {
            let out = match d.output {
                Some(o) => o,
                None => artifacts::default_output(&d.name)?,
            };
            let got = artifacts::download(&api, &d.id, &d.name, &out).await?;
            if json {
                output::print_json(&json!({
                    "name": got.name,
                    "path": got.path.display().to_string(),
                    "size": got.size,
                    "sha256": got.sha256,
                }));
            } else {
                println!(
                    "wrote {} ({} bytes, sha256 {} verified)",
                    got.path.display(),
                    got.size,
                    got.sha256
                );
            }
            Ok(Exit::Success)
        }
        Command::Token(_) => Ok(Exit::Success),
    }
}

/// Prints `value` as JSON or through `human`.
fn show(value: &Value, json: bool, human: impl Fn(&Value) -> String) -> Result<Exit> {
    if json {
        output::print_json(value);
    } else {
        print!("{}", human(value));
    }
    Ok(Exit::Success)
}

async fn submit(api: &Api, s: SubmitArgs, json: bool) -> Result<Exit> {
    let mut body = Map::new();
    body.insert("prompt".into(), s.prompt.into());
    if let Some(kind) = s.kind {
        body.insert("kind".into(), kind.into());
    }
    if let Some(path) = &s.params {
        body.insert("params".into(), Value::Object(read_params(path)?));
    }
    if let Some(p) = s.priority {
        body.insert("priority".into(), p.into());
    }
    if let Some(m) = s.max_attempts {
        body.insert("max_attempts".into(), m.into());
    }
    if let Some(t) = s.timeout {
        body.insert("timeout_s".into(), t.into());
    }
    if s.review {
        body.insert("review".into(), true.into());
    }

    if let Some(project) = s.project {
        body.insert("project".into(), project.into());
    }
    if !s.depends_on.is_empty() {
        body.insert("depends_on".into(), s.depends_on.into());
    }
    if let Some(key) = s.concurrency_key {
        body.insert("concurrency_key".into(), key.into());
    }
    if let Some(limit) = s.concurrency_limit {
        body.insert("concurrency_limit".into(), limit.into());
    }
    let url = api.url(&["api", "jobs"], true);
    let job = api
        .json(Method::POST, url, Some(&Value::Object(body)))
        .await?;
    if json {
        output::print_json(&job);
    } else {
        println!("{}", output::job_line("submitted", &job));
    }
    if !s.watch {
        return Ok(Exit::Success);
    }
    let id = job
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| CliError::Protocol(format!("a submitted job without an id: {job}")))?;
    let opts = WatchOptions {
        after: 0,
        reconnect_for: s.reconnect_for,
    };
    watch_job(api, id, &opts, json).await
}

/// The params in `path` (`-`: standard input): a JSON object.
pub fn read_params(path: &Path) -> Result<Map<String, Value>> {
    let (what, text) = if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|source| CliError::Io {
                path: "standard input".into(),
                source,
            })?;
        ("standard input".to_owned(), text)
    } else {
        let text = std::fs::read_to_string(path).map_err(|source| CliError::Io {
            path: path.display().to_string(),
            source,
        })?;
        (path.display().to_string(), text)
    };
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(CliError::invalid(
            "--params",
            format!(
                "{what} must hold a JSON object, not {}",
                match other {
                    Value::Null => "null",
                    Value::Bool(_) => "a boolean",
                    Value::Number(_) => "a number",
                    Value::String(_) => "a string",
                    Value::Array(_) => "an array",
                    Value::Object(_) => "an object",
                }
            ),
        )),
        Err(e) => Err(CliError::invalid(
            "--params",
            format!("{what} is not valid JSON: {e}"),
        )),
    }
}

async fn list(api: &Api, l: ListArgs, json: bool) -> Result<Exit> {
    let mut url = api.url(&["api", "jobs"], true);
    {
        let mut q = url.query_pairs_mut();
        if let Some(s) = l.status {
            q.append_pair("status", s.as_str());
        }
        if let Some(n) = l.limit {
            q.append_pair("limit", &n.to_string());
        }
        if let Some(c) = &l.cursor {
            q.append_pair("cursor", c);
        }
        if l.newest_first {
            q.append_pair("order", "desc");
        }
        if let Some(p) = &l.project {
            q.append_pair("project", p);
        }
        if let Some(k) = &l.kind {
            q.append_pair("kind", k);
        }
    }
    if url.query() == Some("") {
        url.set_query(None);
    }
    let page = api.get(url).await?;
    show(&page, json, output::jobs_table)
}

/// Where a watch's events go.
enum Sink {
    Bar(Bar),
    Lines(Lines),
    Json(JsonLines),
}

impl EventSink for Sink {
    fn event(&mut self, event: &Event) {
        match self {
            Sink::Bar(s) => s.event(event),
            Sink::Lines(s) => s.event(event),
            Sink::Json(s) => s.event(event),
        }
    }

    fn notice(&mut self, message: &str) {
        match self {
            Sink::Bar(s) => s.notice(message),
            Sink::Lines(s) => s.notice(message),
            Sink::Json(s) => s.notice(message),
        }
    }
}

/// Watches job `id` to its end: a bar on a terminal, plain lines otherwise,
/// JSON lines with `--json`. Answers the exit code of its outcome.
async fn watch_job(api: &Api, id: &str, opts: &WatchOptions, json: bool) -> Result<Exit> {
    let mut sink = if json {
        Sink::Json(JsonLines)
    } else if std::io::stdout().is_terminal() {
        Sink::Bar(Bar::new(id))
    } else {
        Sink::Lines(Lines)
    };
    let result = tokio::select! {
        r = watch::watch(api, id, opts, &mut sink) => r,
        _ = tokio::signal::ctrl_c() => {
            if let Sink::Bar(b) = &mut sink {
                b.abandon();
            }
            eprintln!("projectengine: interrupted; the job goes on (watch it again with `projectengine watch {id}`)");
            return Ok(Exit::Interrupted);
        }
    };
    let outcome = match result {
        Ok(o) => o,
        Err(e) => {
            if let Sink::Bar(b) = &mut sink {
                b.abandon();
            }
            return Err(e);
        }
    };
    match &mut sink {
        Sink::Bar(b) => b.finish(id, outcome),
        Sink::Lines(_) => println!("job {id} {}", outcome.as_str()),
        Sink::Json(_) => {}
    }
    Ok(match outcome {
        Outcome::Succeeded => Exit::Success,
        Outcome::Failed => Exit::JobFailed,
        Outcome::Cancelled => Exit::JobCancelled,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str, text: &str) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("pe-cli-{}-{name}", std::process::id()));
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn params_must_be_a_json_object() {
        let ok = temp("ok.json", r#"{"steps": 3, "fail": "fatal"}"#);
        assert_eq!(read_params(&ok).unwrap()["steps"], 3);
        for (name, text, want) in [
            ("arr.json", "[1]", "must hold a JSON object, not an array"),
            ("bad.json", "{steps: 3}", "is not valid JSON"),
        ] {
            let p = temp(name, text);
            let e = read_params(&p).unwrap_err();
            assert!(e.to_string().contains(want), "{e}");
            assert_eq!(e.exit(), Exit::Usage);
            let _ = std::fs::remove_file(p);
        }
        let e = read_params(Path::new("/nonexistent/params.json")).unwrap_err();
        assert!(matches!(e, CliError::Io { .. }), "{e}");
        let _ = std::fs::remove_file(ok);
    }
}
