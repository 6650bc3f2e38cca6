//! posternd: the Postern mail daemon, and the library behind the `postern` admin CLI.

pub mod admin;
pub mod admin_access;
pub mod cli;
pub mod connection_limits;
pub mod credential_cache;
pub mod directory;
pub mod dnsbl;
pub mod files;
pub mod filter;
pub mod health_gate;
pub mod imap;
pub mod login;
pub mod login_guard;
pub mod mailbox_io;
pub mod metrics;
pub mod peer_noise;
pub mod pop3;
pub mod server;
#[cfg(test)]
mod session_deadlines;
pub mod smtp;
pub mod store_admin;
#[cfg(test)]
mod test_store;
pub mod tls;
pub mod trace_headers;
