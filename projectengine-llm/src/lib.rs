#![doc = include_str!("../README.md")]

mod client;
mod config;
mod error;
#[cfg(feature = "fake")]
pub mod fake;
mod limiter;
mod usage;
mod wire;

pub use client::{Completion, Llm, Message, Role};
pub use config::{AgentProfile, LlmConfig, ProviderProfile};
pub use error::{Error, Result};
pub use limiter::Limiter;
pub use usage::{estimate_tokens, Price, Usage};
