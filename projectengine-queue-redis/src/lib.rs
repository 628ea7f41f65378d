#![doc = include_str!("../README.md")]

mod config;
mod error;
mod link;
mod notifier;
mod queue;

pub use config::RedisConfig;
pub use notifier::RedisNotifier;
pub use queue::RedisQueue;
