//! The assembled projectEngine: this package only owns the examples and the
//! end-to-end tests of the workspace. Use the `projectengine-*` crates directly.
