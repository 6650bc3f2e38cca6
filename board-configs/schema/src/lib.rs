//! postern-board: the board-config schema (`board-configs/*.toml`), one file per board (SKU),
//! read by the image builder (through `postern-board show --json`), the appliance init and
//! hwmond. One schema and one validation; every error is `file:line:column: message`.
//!
//! - [`board`]: the [`Board`] types, [`Board::load`] and the checks.
//! - [`health`]: component kinds, states and thresholds (hwmond's vocabulary, used by sensors
//!   and rule overrides).
//! - [`toml_load`]: TOML loading with `path:line:column` errors.

pub mod board;
mod check;
pub mod health;
pub mod toml_load;

pub use board::*;
pub use check::CONSOLE_BAUDS;

#[cfg(test)]
mod tests;
pub use toml_load::LoadError;
