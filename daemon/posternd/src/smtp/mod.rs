//! SMTP sessions over the network; the protocol itself lives in the sans-IO `postern-smtp`.
pub mod connection;
pub mod session;
