#![doc = include_str!("../README.md")]
//!
//! This package holds the examples and the end-to-end tests of the workspace;
//! use the `projectengine-*` crates directly.
