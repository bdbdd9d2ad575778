//! The runtime's Prometheus metrics (`GET /metrics`, OpenMetrics text, behind the same
//! API keys as the rest of the API): requests by endpoint and status with latency
//! histograms, prompt and generated tokens by model (tokens/s is their `rate()`), the
//! time per generated token, and each model's queue depth at scrape time. Nothing in
//! them names a client, a prompt or an answer.

use std::sync::atomic::AtomicI64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = Vec<(String, String)>;

/// The runtime's metrics.
pub struct Metrics {
    registry: Registry,
    requests: Family<Labels, Counter>,
    latency: Family<Labels, Histogram, fn() -> Histogram>,
    prompt_tokens: Family<Labels, Counter>,
    generated_tokens: Family<Labels, Counter>,
    token_seconds: Family<Labels, Histogram, fn() -> Histogram>,
    queue_depth: Family<Labels, Gauge<i64, AtomicI64>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

fn request_histogram() -> Histogram {
    // 1 ms .. ~65 s: an embedding to a long generation.
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

fn token_histogram() -> Histogram {
    // 1 ms .. ~1 s per generated token.
    Histogram::new(exponential_buckets(0.001, 2.0, 11))
}

fn model(m: &str) -> Labels {
    vec![("model".into(), m.into())]
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("veil_runtime");
        let requests = Family::<Labels, Counter>::default();
        let latency = Family::<Labels, Histogram, fn() -> Histogram>::new_with_constructor(request_histogram);
        let prompt_tokens = Family::<Labels, Counter>::default();
        let generated_tokens = Family::<Labels, Counter>::default();
        let token_seconds = Family::<Labels, Histogram, fn() -> Histogram>::new_with_constructor(token_histogram);
        let queue_depth = Family::<Labels, Gauge<i64, AtomicI64>>::default();
        registry.register("requests", "API requests by endpoint and status", requests.clone());
        registry.register("request_duration_seconds", "API request latency by endpoint", latency.clone());
        registry.register("prompt_tokens", "Prompt tokens processed, by model", prompt_tokens.clone());
        registry.register("generated_tokens", "Tokens generated, by model", generated_tokens.clone());
        registry.register(
            "seconds_per_generated_token",
            "Wall time per generated token of each answer (prompt included), by model",
            token_seconds.clone(),
        );
        registry.register("queue_depth", "Requests waiting for each model", queue_depth.clone());
        Self { registry, requests, latency, prompt_tokens, generated_tokens, token_seconds, queue_depth }
    }
}

impl Metrics {
    /// Records one answered request.
    pub fn request(&self, endpoint: &str, status: u16, seconds: f64) {
        self.requests
            .get_or_create(&vec![("endpoint".into(), endpoint.into()), ("status".into(), status.to_string())])
            .inc();
        self.latency.get_or_create(&vec![("endpoint".into(), endpoint.into())]).observe(seconds);
    }

    /// Records one generation.
    pub fn generation(&self, m: &str, prompt: usize, generated: usize, seconds: f64) {
        self.prompt_tokens.get_or_create(&model(m)).inc_by(prompt as u64);
        self.generated_tokens.get_or_create(&model(m)).inc_by(generated as u64);
        if generated > 0 {
            self.token_seconds.get_or_create(&model(m)).observe(seconds / generated as f64);
        }
    }

    /// The OpenMetrics text, with queue depths as they are now.
    pub fn render(&self, queues: &[(String, usize)]) -> String {
        for (m, depth) in queues {
            self.queue_depth.get_or_create(&model(m)).set(i64::try_from(*depth).unwrap_or(i64::MAX));
        }
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_what_was_recorded() {
        let m = Metrics::default();
        m.request("/v1/chat/completions", 200, 0.5);
        m.generation("smollm2", 20, 16, 0.8);
        let text = m.render(&[("smollm2".into(), 3)]);
        for want in [
            "veil_runtime_requests_total{endpoint=\"/v1/chat/completions\",status=\"200\"} 1",
            "veil_runtime_prompt_tokens_total{model=\"smollm2\"} 20",
            "veil_runtime_generated_tokens_total{model=\"smollm2\"} 16",
            "veil_runtime_queue_depth{model=\"smollm2\"} 3",
            "veil_runtime_seconds_per_generated_token_count{model=\"smollm2\"} 1",
        ] {
            assert!(text.contains(want), "{want} not in:\n{text}");
        }
    }
}
