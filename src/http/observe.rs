//! One span per request with a request id (echoed as `X-Request-Id`), and Prometheus
//! metrics: request counts and latency per route, pool usage. A handler that panics is
//! answered with a 500 problem (the panic is logged), never a dropped connection.

use std::panic::AssertUnwindSafe;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, ResponseError};
use futures_util::FutureExt;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};
use tracing::Instrument;

use crate::db::DbPool;
use crate::error::{ApiError, REQUEST_ID};

const REQUEST_ID_HEADER: &str = "x-request-id";

/// `path` or `query` when that part of `uri` encodes a control character (`%00` to
/// `%1F`, `%7F`).
fn control_in_uri(uri: &actix_web::http::Uri) -> Option<&'static str> {
    let encodes_control = |text: &str| {
        let bytes = text.as_bytes();
        bytes.windows(3).any(|w| {
            w[0] == b'%'
                && matches!(
                    (w[1].to_ascii_uppercase(), w[2].to_ascii_uppercase()),
                    (b'0' | b'1', b'0'..=b'9' | b'A'..=b'F') | (b'7', b'F')
                )
        })
    };
    if encodes_control(uri.path()) {
        Some("path")
    } else if uri.query().is_some_and(encodes_control) {
        Some("query")
    } else {
        None
    }
}

/// A handler panicked while answering the request with this id: a 500 problem.
#[derive(Debug)]
struct Panicked(String);

impl std::fmt::Display for Panicked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the handler of request {} panicked", self.0)
    }
}

impl ResponseError for Panicked {
    fn status_code(&self) -> actix_web::http::StatusCode {
        actix_web::http::StatusCode::INTERNAL_SERVER_ERROR
    }

    fn error_response(&self) -> actix_web::HttpResponse {
        let error = ApiError::internal(anyhow::anyhow!("{self}"));
        let mut answer = REQUEST_ID.sync_scope(self.0.clone(), || error.error_response());
        if let Ok(v) = HeaderValue::from_str(&self.0) {
            answer
                .headers_mut()
                .insert(HeaderName::from_static(REQUEST_ID_HEADER), v);
        }
        answer
    }
}

#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    pool_size: IntGauge,
    pool_available: IntGauge,
    pool_waiting: IntGauge,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests by method, route and status",
            ),
            &["method", "route", "status"],
        )
        .expect("valid metric");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "HTTP request latency by method and route",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["method", "route"],
        )
        .expect("valid metric");
        let pool_size = IntGauge::new("db_pool_connections", "Open database connections")
            .expect("valid metric");
        let pool_available = IntGauge::new("db_pool_idle_connections", "Idle database connections")
            .expect("valid metric");
        let pool_waiting = IntGauge::new(
            "db_pool_waiting_requests",
            "Requests waiting for a connection",
        )
        .expect("valid metric");
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(latency.clone()),
            Box::new(pool_size.clone()),
            Box::new(pool_available.clone()),
            Box::new(pool_waiting.clone()),
        ] {
            registry.register(c).expect("metric registered once");
        }
        Metrics {
            registry,
            requests,
            latency,
            pool_size,
            pool_available,
            pool_waiting,
        }
    }

    /// The Prometheus text exposition, with pool gauges read now.
    pub fn render(&self, pool: &DbPool) -> String {
        let status = pool.status();
        self.pool_size.set(status.size as i64);
        self.pool_available.set(status.available as i64);
        self.pool_waiting.set(status.waiting as i64);
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn request_id(req: &ServiceRequest) -> String {
    req.headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string())
}

pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let id = request_id(&req);
    let method = req.method().to_string();
    let metrics = req.app_data::<super::State>().map(|s| s.metrics.clone());
    let span = tracing::info_span!("request", request_id = %id, %method, path = %req.path(), route = tracing::field::Empty, status = tracing::field::Empty);
    let start = Instant::now();
    if let Some(part) = control_in_uri(req.uri()) {
        // PostgreSQL text cannot hold NUL, and no path or query of ours holds a control
        let error = ApiError::field(
            crate::error::ErrorCode::InvalidParameter,
            part,
            "control characters (such as %00) are not allowed",
        );
        let answer = REQUEST_ID.sync_scope(id.clone(), || error.error_response());
        let mut res = req.into_response(answer).map_into_boxed_body();
        if let Ok(v) = HeaderValue::from_str(&id) {
            res.headers_mut()
                .insert(HeaderName::from_static(REQUEST_ID_HEADER), v);
        }
        return Ok(res);
    }
    let result = REQUEST_ID
        .scope(
            id.clone(),
            AssertUnwindSafe(next.call(req).instrument(span.clone())).catch_unwind(),
        )
        .await;
    let elapsed = start.elapsed();
    let Ok(answered) = result else {
        // the panic hook has logged where and why; the server answers the error below
        span.in_scope(|| tracing::error!("the request's handler panicked"));
        return Err(Panicked(id).into());
    };
    let mut res = answered?.map_into_boxed_body();
    let route = res
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".into());
    let status = res.status();
    span.record("route", route.as_str());
    span.record("status", status.as_u16());
    span.in_scope(|| {
        tracing::info!(
            latency_ms = elapsed.as_secs_f64() * 1000.0,
            "{method} {route} {}",
            status.as_u16()
        );
    });
    if let Some(m) = metrics {
        m.requests
            .with_label_values(&[method.as_str(), route.as_str(), status.as_str()])
            .inc();
        m.latency
            .with_label_values(&[method.as_str(), route.as_str()])
            .observe(elapsed.as_secs_f64());
    }
    if let Ok(v) = HeaderValue::from_str(&id) {
        res.headers_mut()
            .insert(HeaderName::from_static(REQUEST_ID_HEADER), v);
    }
    Ok(res)
}
