//! The health API (Unix socket, newline-delimited JSON).
