#![doc = include_str!("../README.md")]

mod command;
mod config;
mod error;
mod limits;
mod outcome;
mod output;
mod sandbox;
mod workdir;

pub use command::Command;
pub use config::{Isolation, SandboxConfig};
pub use error::{Error, Result};
pub use limits::Limits;
pub use outcome::{Failure, Outcome, Status};
pub use output::{Line, Stream};
pub use sandbox::{Running, Sandbox, INSIDE_ID, INSIDE_WORKDIR};
pub use workdir::{checked_relative, Workdir};
