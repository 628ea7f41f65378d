//! Results: a human table and one JSON line.

use serde_json::{json, Map, Value};

#[derive(Debug, Default)]
pub struct Report {
    pub workload: String,
    pub backend: String,
    pub n: usize,
    pub k: u32,
    pub concurrency: usize,
    pub fields: Vec<(String, Value)>,
}

impl Report {
    pub fn set(&mut self, key: &str, value: impl Into<Value>) {
        self.fields.push((key.to_owned(), value.into()));
    }

    pub fn print(&self) {
        println!(
            "workload {}  backend {}  n {}  k {}  concurrency {}",
            self.workload, self.backend, self.n, self.k, self.concurrency
        );
        for (k, v) in &self.fields {
            println!("  {k:<28} {v}");
        }
        let mut line = Map::new();
        line.insert("workload".into(), json!(self.workload));
        line.insert("backend".into(), json!(self.backend));
        line.insert("n".into(), json!(self.n));
        line.insert("k".into(), json!(self.k));
        line.insert("concurrency".into(), json!(self.concurrency));
        for (k, v) in &self.fields {
            line.insert(k.clone(), v.clone());
        }
        println!("{}", Value::Object(line));
    }
}

/// The q-th percentile (0–100) of sorted samples, in ms with 3 decimals.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    (sorted[rank.min(sorted.len() - 1)] * 1000.0).round() / 1000.0
}

/// Peak resident set size of this process, in MB, from /proc.
pub fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some((kb / 1024.0 * 10.0).round() / 10.0)
}
