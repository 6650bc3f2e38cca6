//! Board files (`board-configs/*.toml`): the schema and its validation live in postern-board,
//! shared with the image builder and the appliance init; re-exported here for hwmond.

pub use postern_board::*;
