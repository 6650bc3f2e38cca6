//! TOML loading with `path:line:column: message` errors: shared with the board schema, defined
//! in postern-board (one loader, one error format for hwmond's config and board files).

pub use postern_board::toml_load::*;
