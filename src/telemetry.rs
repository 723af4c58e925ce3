//! Process metrics in the Prometheus model (`prometheus-client`): one registry for the
//! process, fed by the server (requests by route template, refusals) and the engine (webhook
//! deliveries), exposed by the management listener's `/metrics`. Names and units follow the
//! Prometheus conventions (`_total`, `_seconds`, `_bytes`).

use std::sync::OnceLock;

/// The log target of the access log: one event per request (`cli::logging` routes it).
pub const ACCESS_TARGET: &str = "pbackend::access";
/// The log target of audit events written out once their change has committed.
pub const AUDIT_TARGET: &str = "pbackend::audit";
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The route template (`/api/stacks/{org}/{project}/{stack}`), never the raw path: one
    /// series per route, not per stack.
    pub route: String,
    pub method: String,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
    pub method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModeLabels {
    pub mode: String,
}

/// How the CLI sent state.
#[derive(Clone, Copy, Debug)]
pub enum StateMode {
    Checkpoint = 0,
    Verbatim = 1,
    Delta = 2,
    Journal = 3,
}

const STATE_MODES: [&str; 4] = ["checkpoint", "verbatim", "delta", "journal"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

pub struct Metrics {
    pub requests: Family<RequestLabels, Counter>,
    pub request_duration: Family<RouteLabels, Histogram>,
    pub auth_failures: Counter,
    pub webhook_deliveries: Family<OutcomeLabels, Counter>,
    pub database_size: Gauge,
    /// Per [`StateMode`]: (writes, bytes), resolved once — the journal and checkpoint paths
    /// are hot, and a family lookup allocates its label and takes a lock.
    state_counters: [(Counter, Counter); 4],
    pub journal_entries: Counter,
    pub running_updates: Gauge,
    pub live_leases: Gauge,
    pub writer_queue: Gauge,
    pub write_transaction_duration: Histogram,
    pub backups: Family<OutcomeLabels, Counter>,
    pub backup_last_success: Gauge,
    pub uptime: Gauge,
    started: Instant,
    registry: Registry,
}

fn latency_histogram() -> Histogram {
    // 0.5 ms to ~16 s: journal batches are milliseconds, large exports seconds.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.0005, 2.0, 16,
    ))
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("pbackend");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by route template, method and status",
            requests.clone(),
        );
        let request_duration = Family::<RouteLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        registry.register_with_unit(
            "http_request_duration",
            "Time to answer an HTTP request, by route template and method",
            prometheus_client::registry::Unit::Seconds,
            request_duration.clone(),
        );
        let auth_failures = Counter::default();
        registry.register(
            "auth_failures",
            "Requests refused for their credential or a missing permission",
            auth_failures.clone(),
        );
        let webhook_deliveries = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "webhook_delivery_attempts",
            "Webhook delivery attempts, by outcome (delivered, retry, failed)",
            webhook_deliveries.clone(),
        );
        let database_size = Gauge::default();
        registry.register_with_unit(
            "database_size",
            "Size of the SQLite database with its WAL (0 on PostgreSQL)",
            prometheus_client::registry::Unit::Bytes,
            database_size.clone(),
        );
        let state_writes = Family::<ModeLabels, Counter>::default();
        registry.register(
            "state_writes",
            "State writes accepted from updates, by how the CLI sent them (checkpoint, verbatim, delta, journal)",
            state_writes.clone(),
        );
        let state_write_bytes = Family::<ModeLabels, Counter>::default();
        registry.register_with_unit(
            "state_write",
            "Request-body bytes (decompressed) of those state writes",
            prometheus_client::registry::Unit::Bytes,
            state_write_bytes.clone(),
        );
        let journal_entries = Counter::default();
        registry.register(
            "journal_entries",
            "Journal entries stored",
            journal_entries.clone(),
        );
        let running_updates = Gauge::default();
        registry.register(
            "running_updates",
            "Updates (not previews) holding a stack, as of the last scrape",
            running_updates.clone(),
        );
        let live_leases = Gauge::default();
        registry.register(
            "live_leases",
            "Of those, the ones whose lease has not expired",
            live_leases.clone(),
        );
        let writer_queue = Gauge::default();
        registry.register(
            "writer_queue_depth",
            "SQLite: writes waiting for the writer thread",
            writer_queue.clone(),
        );
        let write_transaction_duration = latency_histogram();
        registry.register_with_unit(
            "write_transaction_duration",
            "Time from a write reaching the database to its commit",
            prometheus_client::registry::Unit::Seconds,
            write_transaction_duration.clone(),
        );
        let backups = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "backups",
            "Scheduled backups taken by this process, by outcome (succeeded, failed)",
            backups.clone(),
        );
        let backup_last_success = Gauge::default();
        registry.register_with_unit(
            "backup_last_success_timestamp",
            "Unix time of this process's last successful scheduled backup (0: none yet)",
            prometheus_client::registry::Unit::Seconds,
            backup_last_success.clone(),
        );
        let uptime = Gauge::default();
        registry.register_with_unit(
            "uptime",
            "Seconds since the process started",
            prometheus_client::registry::Unit::Seconds,
            uptime.clone(),
        );
        let info = Family::<Vec<(String, String)>, Gauge>::default();
        info.get_or_create(&vec![(
            "version".to_owned(),
            env!("CARGO_PKG_VERSION").to_owned(),
        )])
        .set(1);
        registry.register("build_info", "The running version", info);
        Metrics {
            requests,
            request_duration,
            auth_failures,
            webhook_deliveries,
            database_size,
            state_counters: STATE_MODES.map(|mode| {
                let labels = ModeLabels {
                    mode: mode.to_owned(),
                };
                (
                    state_writes.get_or_create(&labels).clone(),
                    state_write_bytes.get_or_create(&labels).clone(),
                )
            }),
            journal_entries,
            running_updates,
            live_leases,
            writer_queue,
            write_transaction_duration,
            backups,
            backup_last_success,
            uptime,
            started: Instant::now(),
            registry,
        }
    }

    /// Records one answered request.
    pub fn request(&self, route: &str, method: &str, status: u16, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels {
                route: route.to_owned(),
                method: method.to_owned(),
                status: status.to_string(),
            })
            .inc();
        self.request_duration
            .get_or_create(&RouteLabels {
                route: route.to_owned(),
                method: method.to_owned(),
            })
            .observe(seconds);
        if status == 401 || status == 403 {
            self.auth_failures.inc();
        }
    }

    /// One state write of an update, `bytes` long (decompressed).
    pub fn state_write(&self, mode: StateMode, bytes: usize) {
        let (writes, total) = &self.state_counters[mode as usize];
        writes.inc();
        total.inc_by(bytes as u64);
    }

    pub fn backup(&self, outcome: &str, at: Option<i64>) {
        self.backups
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_owned(),
            })
            .inc();
        if let Some(t) = at {
            self.backup_last_success.set(t);
        }
    }

    pub fn webhook_attempt(&self, outcome: &str) {
        self.webhook_deliveries
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// The exposition in the classic Prometheus text format (0.0.4), which every scraper
    /// and `promtool check metrics` read: the OpenMetrics text with counters' metadata under
    /// their `_total` names and without the `# UNIT`/`# EOF` lines.
    pub fn render_prometheus(&self) -> String {
        let open = self.render();
        let counters: Vec<String> = open
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.strip_suffix(" counter"))
            .map(str::to_owned)
            .collect();
        let mut out = String::with_capacity(open.len());
        for line in open.lines() {
            if line.starts_with("# UNIT ") || line == "# EOF" {
                continue;
            }
            let meta = ["# HELP ", "# TYPE "]
                .iter()
                .find_map(|p| line.strip_prefix(p).map(|rest| (*p, rest)));
            match meta {
                Some((p, rest)) => {
                    let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                    if counters.iter().any(|c| c == name) {
                        out.push_str(&format!("{p}{name}_total {tail}\n"));
                    } else {
                        out.push_str(line);
                        out.push('\n');
                    }
                }
                None => {
                    out.push_str(line);
                    out.push('\n');
                }
            }
        }
        out
    }

    /// The exposition text (OpenMetrics).
    pub fn render(&self) -> String {
        self.uptime
            .set(i64::try_from(self.started.elapsed().as_secs()).unwrap_or(i64::MAX));
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(Metrics::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histograms_and_info() {
        let m = Metrics::new();
        m.request("/api/stacks/{org}", "GET", 200, 0.002);
        m.request("/api/user", "GET", 401, 0.0001);
        m.webhook_attempt("delivered");
        let text = m.render();
        assert!(text.contains("pbackend_http_requests_total{route=\"/api/stacks/{org}\",method=\"GET\",status=\"200\"} 1"), "{text}");
        assert!(
            text.contains("pbackend_http_request_duration_seconds_bucket"),
            "{text}"
        );
        assert!(text.contains("pbackend_auth_failures_total 1"), "{text}");
        assert!(text.contains("pbackend_webhook_delivery_attempts_total{outcome=\"delivered\"} 1"));
        assert!(text.contains("pbackend_build_info{version="), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
        let classic = m.render_prometheus();
        assert!(
            classic.contains("# TYPE pbackend_auth_failures_total counter"),
            "{classic}"
        );
        assert!(classic.contains("# HELP pbackend_http_requests_total HTTP requests"));
        assert!(!classic.contains("# EOF") && !classic.contains("# UNIT"));
    }
}
