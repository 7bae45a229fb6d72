//! Sequence search for ferrofold. The search pipeline lands with its own issue; this crate
//! reserves its place in the workspace.
