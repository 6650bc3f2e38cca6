//! POP3 metrics, registered into the daemon's registry by `Metrics::new` and fed by the
//! same events that are logged (`pop3.*`).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

pub struct Pop3Metrics {
    pub connections: Family<Labels, Counter>,
    pub connections_active: Gauge,
    pub connections_refused: Family<Labels, Counter>,
    pub logins: Family<Labels, Counter>,
    pub auth_failures: Counter,
    pub messages_retrieved: Counter,
    pub bytes_sent: Counter,
    pub messages_deleted: Counter,
    pub rejects: Family<Labels, Counter>,
}

impl Pop3Metrics {
    pub fn register(registry: &mut Registry) -> Pop3Metrics {
        let m = Pop3Metrics {
            connections: Family::default(),
            connections_active: Gauge::default(),
            connections_refused: Family::default(),
            logins: Family::default(),
            auth_failures: Counter::default(),
            messages_retrieved: Counter::default(),
            bytes_sent: Counter::default(),
            messages_deleted: Counter::default(),
            rejects: Family::default(),
        };
        // prometheus-client appends `_total` to counters.
        registry.register(
            "postern_pop3_connections",
            "POP3 connections accepted, by listener (pop3, pop3s)",
            m.connections.clone(),
        );
        registry.register(
            "postern_pop3_connections_active",
            "POP3 connections open now",
            m.connections_active.clone(),
        );
        registry.register(
            "postern_pop3_connections_refused",
            "POP3 connections refused before the greeting, by reason",
            m.connections_refused.clone(),
        );
        registry.register(
            "postern_pop3_logins",
            "POP3 maildrops opened, by listener",
            m.logins.clone(),
        );
        registry.register(
            "postern_pop3_auth_failures",
            "Failed POP3 authentications (USER/PASS and AUTH)",
            m.auth_failures.clone(),
        );
        registry.register(
            "postern_pop3_messages_retrieved",
            "Messages sent by RETR",
            m.messages_retrieved.clone(),
        );
        registry.register(
            "postern_pop3_retrieved_bytes",
            "Message bytes read for RETR and TOP",
            m.bytes_sent.clone(),
        );
        registry.register(
            "postern_pop3_messages_deleted",
            "Messages removed in the UPDATE state (DELE then QUIT)",
            m.messages_deleted.clone(),
        );
        registry.register(
            "postern_pop3_rejects",
            "POP3 commands and sessions refused, by reason",
            m.rejects.clone(),
        );
        m
    }

    pub fn reject(&self, reason: &str) {
        self.rejects
            .get_or_create(&vec![("reason", reason.to_string())])
            .inc();
    }
}
