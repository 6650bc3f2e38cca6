//! postern-hwmon: the hardware monitor of the appliance (DESIGN.md 3.6).
//!
//! - [`model`]: components, states, readings, observations, events, and [`model::Health`]
//!   (current state, bounded history, transition detection, the storage verdict).
//! - [`collectors`]: SMART (smartctl --json), md RAID, hwmon sysfs, thermal zones, EDAC, system
//!   (sysinfo), filesystems (statvfs), IPMI; each reads a configurable root or command.
//! - [`sinks`]: where events go (log, metrics, e-mail, webhook, syslog).
//! - [`board`]: board files (`board-configs/*.toml`) and the rule parameters (the schema is
//!   postern-board's, shared with the image builder and the init; re-exported here).
//! - [`config`]: hwmond's configuration file.
//! - [`api`]: the health API (Unix socket, newline-delimited JSON).
//! - [`daemon`]: the scheduler that runs collectors, the model and the sinks.

pub mod api;
pub mod board;
pub mod collectors;
pub mod config;
pub mod daemon;
pub mod log_sink;
pub mod model;
pub mod sinks;
pub mod status;
pub mod toml_load;
