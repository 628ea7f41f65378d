//! What to run: an argv, its environment, whether it may use the network,
//! its limits.

use crate::{Error, Limits, Result};

/// A command to run in a sandbox. The argv is executed as given, never
/// through a shell (pass `sh -c` yourself to get one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    pub(crate) argv: Vec<String>,
    pub(crate) env: Vec<(String, String)>,
    pub(crate) allow_network: bool,
    pub(crate) limits: Limits,
}

impl Command {
    /// A command from its argv (program first), with the default
    /// [`Limits`], no network and the sandbox's base environment only.
    pub fn new<I, S>(argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            argv: argv.into_iter().map(Into::into).collect(),
            env: Vec::new(),
            allow_network: false,
            limits: Limits::default(),
        }
    }

    /// Sets an environment variable (the environment starts empty but for
    /// `PATH`, `HOME`, `TMPDIR` and `LANG`).
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Lets the command use the host's network (its loopback included).
    /// Off by default: the command then has a network namespace of its own,
    /// with only its own loopback.
    pub fn allow_network(mut self, allow: bool) -> Self {
        self.allow_network = allow;
        self
    }

    /// Replaces the limits.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The argv.
    pub fn argv(&self) -> &[String] {
        &self.argv
    }

    /// The limits.
    pub fn limits_ref(&self) -> &Limits {
        &self.limits
    }

    /// Checks the argv, environment and limits.
    pub fn validate(&self) -> Result<()> {
        if self.argv.is_empty() || self.argv[0].is_empty() {
            return Err(Error::invalid("argv", "needs a program"));
        }
        if self.argv.iter().any(|a| a.contains('\0')) {
            return Err(Error::invalid("argv", "contains a NUL byte"));
        }
        for (key, value) in &self.env {
            if key.is_empty() || key.contains('=') || key.contains('\0') {
                return Err(Error::invalid("env", format!("bad variable name {key:?}")));
            }
            if value.contains('\0') {
                return Err(Error::invalid("env", format!("{key} contains a NUL byte")));
            }
        }
        self.limits.validate()
    }
}
