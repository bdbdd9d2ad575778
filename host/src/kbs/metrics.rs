//! Prometheus metrics (`GET /metrics`, OpenMetrics text) with `prometheus-client`:
//! requests by endpoint and status, decisions by outcome, latency histograms.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = Vec<(String, String)>;

/// The broker's metrics.
pub struct Metrics {
    registry: Registry,
    requests: Family<Labels, Counter>,
    decisions: Family<Labels, Counter>,
    latency: Family<Labels, Histogram, fn() -> Histogram>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

fn latency_histogram() -> Histogram {
    // 0.25 ms .. ~4 s.
    Histogram::new(exponential_buckets(0.000_25, 2.0, 15))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("veil_kbs");
        let requests = Family::<Labels, Counter>::default();
        let decisions = Family::<Labels, Counter>::default();
        let latency = Family::<Labels, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram);
        registry.register("requests", "HTTP requests by endpoint and status", requests.clone());
        registry.register("decisions", "Attestation and release decisions by outcome", decisions.clone());
        registry.register("request_duration_seconds", "Request latency by endpoint", latency.clone());
        Self { registry, requests, decisions, latency }
    }
}

impl Metrics {
    /// Records one request.
    pub fn request(&self, endpoint: &str, status: u16, seconds: f64) {
        self.requests
            .get_or_create(&vec![("endpoint".into(), endpoint.into()), ("status".into(), status.to_string())])
            .inc();
        self.latency.get_or_create(&vec![("endpoint".into(), endpoint.into())]).observe(seconds);
    }

    /// Records a decision (`attested`, `attest_refused`, `released`, `denied`).
    pub fn decision(&self, outcome: &str) {
        self.decisions.get_or_create(&vec![("outcome".into(), outcome.into())]).inc();
    }

    /// The OpenMetrics text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
