//! `--metrics ADDR`: the mounts' counters as OpenMetrics text over HTTP.
//!
//! What is served is made at each scrape from [`Stats`] snapshots, one per
//! user: the supervisor asks each of its mount daemons for theirs (the same
//! stats xattr `--stats` reads, with a timeout, so a hung daemon reads as
//! down instead of hanging the scrape); a single foreground mount takes its
//! own. The snapshot is encoded by `prometheus-client` (the Prometheus
//! project's Rust client) through a [`Collector`], so the text follows the
//! OpenMetrics format that Prometheus, VictoriaMetrics and Grafana Agent
//! scrape. The HTTP side is `tiny_http` on one thread: a scrape every few
//! seconds needs no more, and the listener refuses anything but loopback
//! unless the admin names another address.

use std::net::SocketAddr;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::fs::metrics::LATENCY_BUCKETS;
use crate::fs::Stats;

/// One user's counters at a scrape: `None` when its daemon did not answer.
#[derive(Clone, Debug)]
pub struct Sample {
    pub user: String,
    pub stats: Option<Stats>,
}

/// Errors of starting the metrics listener.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("metrics on {0}: {1}")]
    Listen(SocketAddr, String),
}

#[derive(Debug)]
struct Scrape(Vec<Sample>);

type Labels<'a> = Vec<(&'static str, &'a str)>;

fn counter(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: &[(Labels, u64)],
) -> std::fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, v) in rows {
        m.encode_family(labels)?
            .encode_counter::<NoLabelSet, _, u64>(v, None)?;
    }
    Ok(())
}

fn gauge(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: &[(Labels, i64)],
) -> std::fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, v) in rows {
        m.encode_family(labels)?.encode_gauge(v)?;
    }
    Ok(())
}

impl Collector for Scrape {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let up: Vec<_> = self
            .0
            .iter()
            .map(|s| {
                (
                    vec![("user", s.user.as_str())],
                    i64::from(s.stats.is_some()),
                )
            })
            .collect();
        gauge(
            &mut enc,
            "markbase_up",
            "1 when the user's mount daemon answered this scrape",
            &up,
        )?;
        let live: Vec<(&str, &Stats)> = self
            .0
            .iter()
            .filter_map(|s| s.stats.as_ref().map(|st| (s.user.as_str(), st)))
            .collect();
        let per_user = |f: &dyn Fn(&Stats) -> u64| -> Vec<(Labels, u64)> {
            live.iter()
                .map(|(u, s)| (vec![("user", *u)], f(s)))
                .collect()
        };
        counter(&mut enc, "markbase_read_bytes", "bytes read through the daemon (passthrough reads go kernel to disk and are not counted)", &per_user(&|s| s.bytes_read))?;
        counter(&mut enc, "markbase_written_bytes", "bytes written through the daemon (passthrough writes go kernel to disk and are not counted)", &per_user(&|s| s.bytes_written))?;
        counter(
            &mut enc,
            "markbase_opens",
            "files opened",
            &per_user(&|s| s.opens),
        )?;
        gauge(
            &mut enc,
            "markbase_open_files",
            "files open now",
            &live
                .iter()
                .map(|(u, s)| {
                    (
                        vec![("user", *u)],
                        i64::try_from(s.open_files).unwrap_or(i64::MAX),
                    )
                })
                .collect::<Vec<_>>(),
        )?;
        counter(
            &mut enc,
            "markbase_catalog_commits",
            "catalog (SQLite) transactions committed",
            &per_user(&|s| s.catalog_commits),
        )?;
        counter(
            &mut enc,
            "markbase_catalog_changes",
            "changes those commits held",
            &per_user(&|s| s.catalog_changes),
        )?;
        counter(
            &mut enc,
            "markbase_requests_without_catalog",
            "requests answered without a catalog query (from the daemon's caches or its journal)",
            &per_user(&|s| s.requests.without_catalog),
        )?;
        let mut hits = Vec::new();
        let mut misses = Vec::new();
        for (u, s) in &live {
            for (cache, h, m) in [
                ("attr", s.attr_hits, s.attr_misses),
                ("dir", s.dir_hits, s.dir_misses),
                ("path", s.path_hits, s.path_misses),
            ] {
                hits.push((vec![("user", *u), ("cache", cache)], h));
                misses.push((vec![("user", *u), ("cache", cache)], m));
            }
        }
        counter(&mut enc, "markbase_cache_hits", "lookups the daemon's own caches answered (the kernel answers repeats itself: they never get here)", &hits)?;
        counter(
            &mut enc,
            "markbase_cache_misses",
            "lookups the daemon's own caches did not answer",
            &misses,
        )?;
        let ops: Vec<_> = live
            .iter()
            .flat_map(|(u, s)| {
                s.requests
                    .ops
                    .iter()
                    .map(move |(op, o)| (vec![("user", *u), ("op", op.as_str())], o.count))
            })
            .collect();
        counter(
            &mut enc,
            "markbase_requests",
            "requests served, by kind",
            &ops,
        )?;
        let errors: Vec<_> = live
            .iter()
            .flat_map(|(u, s)| {
                s.requests
                    .errors
                    .iter()
                    .map(move |(e, n)| (vec![("user", *u), ("errno", e.as_str())], *n))
            })
            .collect();
        counter(
            &mut enc,
            "markbase_request_errors",
            "requests that failed, by errno",
            &errors,
        )?;
        let mut m = enc.encode_descriptor(
            "markbase_request_duration_seconds",
            "time from request to reply, by kind",
            None,
            MetricType::Histogram,
        )?;
        for (u, s) in &live {
            for (op, o) in &s.requests.ops {
                let buckets: Vec<(f64, u64)> = LATENCY_BUCKETS
                    .iter()
                    .copied()
                    .chain([f64::INFINITY])
                    .zip(o.buckets.iter().copied().chain(std::iter::repeat(0)))
                    .collect();
                let labels = vec![("user", *u), ("op", op.as_str())];
                m.encode_family(&labels)?
                    .encode_histogram::<NoLabelSet>(o.seconds, o.count, &buckets, None)?;
            }
        }
        Ok(())
    }
}

/// The OpenMetrics text of `samples`.
pub fn render(samples: Vec<Sample>) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Scrape(samples)));
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &registry) {
        tracing::warn!("encoding metrics: {e}");
    }
    out
}

/// Serve one user's counters, taken from its file system core at each
/// scrape (a single mount's daemon, an NFS server).
pub fn serve_fs(
    addr: SocketAddr,
    user: &str,
    fs: Arc<crate::fs::MarkBaseFs>,
) -> Result<SocketAddr, MetricsError> {
    let user = user.to_string();
    serve(addr, move || {
        vec![Sample {
            user: user.clone(),
            stats: Some(fs.stats()),
        }]
    })
}

/// Serve `GET /metrics` on `addr` from a thread, each scrape made by
/// `sample`; returns the address bound (port 0 picks one).
pub fn serve(
    addr: SocketAddr,
    sample: impl Fn() -> Vec<Sample> + Send + Sync + 'static,
) -> Result<SocketAddr, MetricsError> {
    let server =
        tiny_http::Server::http(addr).map_err(|e| MetricsError::Listen(addr, e.to_string()))?;
    let bound = server
        .server_addr()
        .to_ip()
        .ok_or_else(|| MetricsError::Listen(addr, "not an IP listener".into()))?;
    let sample = Arc::new(sample);
    std::thread::Builder::new()
        .name("markbase-metrics".into())
        .spawn(move || {
            for req in server.incoming_requests() {
                let path = req.url().split('?').next().unwrap_or("");
                let resp = if path == "/metrics" {
                    let ct = "application/openmetrics-text; version=1.0.0; charset=utf-8";
                    let r = tiny_http::Response::from_string(render(sample()));
                    match tiny_http::Header::from_bytes("Content-Type", ct) {
                        Ok(h) => r.with_header(h),
                        Err(()) => r,
                    }
                } else {
                    tiny_http::Response::from_string("markbase: see /metrics\n")
                        .with_status_code(404)
                };
                if let Err(e) = req.respond(resp) {
                    tracing::debug!("metrics reply: {e}");
                }
            }
        })
        .map_err(|e| MetricsError::Listen(addr, e.to_string()))?;
    tracing::info!("metrics at http://{bound}/metrics");
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::metrics::{OpStats, RequestStats};

    #[test]
    fn a_scrape_has_every_family_and_ends_in_eof() {
        let mut st = Stats {
            bytes_read: 7,
            open_files: 2,
            ..Stats::default()
        };
        st.requests = RequestStats {
            total: 3,
            without_catalog: 2,
            ops: [(
                "lookup".to_string(),
                OpStats {
                    count: 3,
                    seconds: 0.001,
                    buckets: vec![1, 2],
                },
            )]
            .into(),
            errors: [("ENOENT".to_string(), 1)].into(),
        };
        let text = render(vec![
            Sample {
                user: "warren".into(),
                stats: Some(st),
            },
            Sample {
                user: "gone".into(),
                stats: None,
            },
        ]);
        for want in [
            "markbase_up{user=\"warren\"} 1",
            "markbase_up{user=\"gone\"} 0",
            "markbase_read_bytes_total{user=\"warren\"} 7",
            "markbase_open_files{user=\"warren\"} 2",
            "markbase_requests_total{user=\"warren\",op=\"lookup\"} 3",
            "markbase_request_errors_total{user=\"warren\",errno=\"ENOENT\"} 1",
            "markbase_request_duration_seconds_bucket{le=\"+Inf\",user=\"warren\",op=\"lookup\"} 3",
            "markbase_request_duration_seconds_count{user=\"warren\",op=\"lookup\"} 3",
            "markbase_cache_hits_total{user=\"warren\",cache=\"attr\"} 0",
        ] {
            assert!(text.contains(want), "{want} missing from:\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }
}
