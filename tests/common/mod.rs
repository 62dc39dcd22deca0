//! Helpers shared by the integration test binaries (`mod common;`).

pub mod netns;
