//! `/v1/test-clock`: the test clock of a service started with `--test-clock` (admin), and
//! the `Test-Clock` header that such a service puts on every response.

use std::sync::Arc;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::{get, put, web, Error, FromRequest, HttpRequest, HttpResponse, ResponseError};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Auth, JsonBody, State};
use crate::clock::{Clock, FixedClock};
use crate::error::{ApiError, ErrorCode};
use crate::openapi::{ReadErrors, WriteErrors};

/// The response header that carries the test clock's time.
pub const TEST_CLOCK_HEADER: &str = "test-clock";

/// The test clock's time.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"now": "2027-01-31T09:00:00Z"}))]
pub struct TestClockView {
    pub now: DateTime<Utc>,
}

/// Where to move the test clock.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"now": "2027-01-31T09:00:00+01:00"}))]
pub struct TestClockMove {
    /// The new time (RFC 3339, 2000-01-01 to 2100-12-31): the clock's time or later,
    /// never earlier.
    #[serde(deserialize_with = "crate::input::instant")]
    pub now: DateTime<Utc>,
}

/// The test clock, or the 404 of a path that does not exist: without `--test-clock` these
/// endpoints answer as any unknown path does, before any key is looked at.
fn test_clock<'a>(state: &'a State, req: &HttpRequest) -> Result<&'a Arc<FixedClock>, ApiError> {
    state.clock.test_clock().ok_or_else(|| {
        ApiError::new(
            ErrorCode::NotFound,
            format!("no resource at {} {}", req.method(), req.path()),
        )
    })
}

/// Read the test clock. Exists only on a service started with `--test-clock`
/// (`GRANDLIVRE_TEST_CLOCK`): without it, this path answers 404 like any unknown path and
/// the service runs on the system clock. With it, every "now" of the service (decisions,
/// holds and their expiry, captures, disputes, purchases, cancellations, lot grants and
/// expiries, the jobs' default instant) is this clock's, and every response carries a
/// `Test-Clock` header with its time.
#[utoipa::path(
    tag = "operations",
    responses((status = 200, description = "The test clock's time", body = TestClockView), ReadErrors),
    security(("bearer" = ["admin"]))
)]
#[get("/v1/test-clock")]
pub async fn get_test_clock(
    state: State,
    req: HttpRequest,
) -> Result<web::Json<TestClockView>, ApiError> {
    let clock = test_clock(&state, &req)?;
    Auth::extract(&req).await?.require(&[])?;
    Ok(web::Json(TestClockView { now: clock.now() }))
}

/// Move the test clock forward (as Stripe's test clocks: never back, so that nothing
/// already recorded lies in the clock's future); moving it to its own time changes
/// nothing, an earlier time is refused (422). Nothing runs by itself when time passes: run
/// the jobs (`POST /v1/jobs/{name}/run`, whose `as_of` defaults to the clock's time).
/// Exists only on a service started with `--test-clock` (`GRANDLIVRE_TEST_CLOCK`):
/// without it, this path answers 404 like any unknown path.
#[utoipa::path(
    tag = "operations",
    request_body = TestClockMove,
    responses((status = 200, description = "The test clock's new time", body = TestClockView), WriteErrors),
    security(("bearer" = ["admin"]))
)]
#[put("/v1/test-clock")]
pub async fn put_test_clock(
    state: State,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<web::Json<TestClockView>, ApiError> {
    let clock = test_clock(&state, &req)?;
    let auth = Auth::extract(&req).await?;
    let body = JsonBody::<TestClockMove>::from_request(&req, &mut payload.into_inner()).await?;
    let to = body.parse(auth.require(&[])?)?.now;
    let from = clock.now();
    clock.move_forward_to(to).map_err(|at| {
        ApiError::field(
            ErrorCode::InvalidRequest,
            "now",
            format!(
                "the test clock moves forward only: it is at {}",
                stamp_value(at)
            ),
        )
    })?;
    tracing::info!(%from, %to, "test clock moved");
    Ok(web::Json(TestClockView { now: clock.now() }))
}

fn stamp_value(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// With a test clock, adds `Test-Clock: <its time after the request>` to every response,
/// errors and unknown paths included.
pub async fn stamp(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let clock = req
        .app_data::<State>()
        .and_then(|s| s.clock.test_clock().cloned());
    let Some(clock) = clock else {
        return next.call(req).await.map(|r| r.map_into_boxed_body());
    };
    let answered = next.call(req).await;
    let Ok(value) = HeaderValue::from_str(&stamp_value(clock.now())) else {
        return answered.map(|r| r.map_into_boxed_body());
    };
    match answered {
        Ok(mut res) => {
            res.headers_mut()
                .insert(HeaderName::from_static(TEST_CLOCK_HEADER), value);
            Ok(res.map_into_boxed_body())
        }
        Err(e) => Err(Stamped(e, value).into()),
    }
}

/// An error that the server answers itself (a panicked handler), with the header too.
#[derive(Debug)]
struct Stamped(Error, HeaderValue);

impl std::fmt::Display for Stamped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl ResponseError for Stamped {
    fn status_code(&self) -> StatusCode {
        self.0.as_response_error().status_code()
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = self.0.error_response();
        res.headers_mut()
            .insert(HeaderName::from_static(TEST_CLOCK_HEADER), self.1.clone());
        res
    }
}
