//! The console's state and `update(state, action)`: pure, no I/O (the Elm pattern).
//!
//! Everything the console knows arrives as an [`Action`] — a key press already mapped by
//! [`super::keys`], or a result from [`super::sources`] — and `update` answers with the
//! [`Command`]s the runtime should start. Tests drive it with plain values.
//!
//! - [`model`]: the state and the messages in and out ([`Action`], [`Command`]).
//! - [`update`]: how each action changes the state.

mod model;
mod update;

pub use super::health::HealthInfo;
pub use crate::node::address::validate_address;
pub use model::*;
pub use update::*;
// Helpers the other console modules share with `update`.
pub(in crate::tui) use update::step;
