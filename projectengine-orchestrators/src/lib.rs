#![doc = include_str!("../README.md")]

pub mod app_builder;
pub mod pipeline;

pub use app_builder::{AppBuilder, AppBuilderConfig};
pub use pipeline::{PipelineConfig, PipelineOrchestrator};
