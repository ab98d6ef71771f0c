//! Command-line helpers shared by the binary's subcommands.
//!
//! - [`go_flags`]: the original Go tools' single-dash long flags.

pub mod go_flags;
