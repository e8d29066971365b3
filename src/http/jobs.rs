//! `/v1/jobs/{name}/run`: run a job for an instant (admin).

use actix_web::{post, web};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa::ToSchema;

use super::{Auth, JsonBody, State};
use crate::error::{ApiError, ErrorCode};
use crate::jobs::{self, Job, JobRun};
use crate::openapi::WriteErrors;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"as_of": "2026-12-01T00:00:00+01:00"}))]
pub struct JobRequest {
    /// The instant to run the job for (RFC 3339, 2000-01-01 to 2100-12-31), at most 10
    /// years after now; defaults to now (the test clock's time on a service started with
    /// `--test-clock`).
    #[serde(default, deserialize_with = "crate::input::opt_instant")]
    pub as_of: Option<DateTime<Utc>>,
}

/// Run a job for an instant (default: now). Idempotent: running it again for the same or
/// an earlier instant changes nothing.
#[utoipa::path(
    tag = "operations",
    params(("name" = Job, Path, description = "The job")),
    request_body = JobRequest,
    responses((status = 200, description = "What the run did", body = JobRun), WriteErrors),
    security(("bearer" = ["admin"]))
)]
#[post("/v1/jobs/{name}/run")]
pub async fn run_job(
    state: State,
    auth: Auth,
    name: web::Path<String>,
    body: JsonBody<JobRequest>,
) -> Result<web::Json<JobRun>, ApiError> {
    let caller = auth.require(&[])?;
    let job = Job::parse(&name).ok_or_else(|| {
        let known: Vec<_> = Job::ALL.iter().map(|j| j.name()).collect();
        ApiError::new(
            ErrorCode::NotFound,
            format!("no job `{name}`; jobs: {}", known.join(", ")),
        )
    })?;
    let now = state.clock.now();
    let as_of = body.parse(caller)?.as_of.unwrap_or(now);
    jobs::check_horizon(as_of, now)
        .map_err(|reason| ApiError::field(ErrorCode::InvalidRequest, "as_of", reason))?;
    let run = jobs::run_on(&state.pool, job, as_of, &state.clock, &|_| {}).await?;
    Ok(web::Json(run))
}
