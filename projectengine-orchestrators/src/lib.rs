#![doc = include_str!("../README.md")]

pub mod pipeline;

pub use pipeline::{PipelineConfig, PipelineOrchestrator};
