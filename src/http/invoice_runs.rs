//! `/v1/invoice-runs`: start an invoice run (it goes on in the background), follow it, list
//! runs (admin, finance).

use actix_web::{get, post, web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{next_cursor, page, Auth, JsonBody, Query, State};
use crate::auth::Role;
use crate::error::{ApiError, ErrorCode};
use crate::invoicing::runs::InvoiceRunView;
use crate::invoicing::store_runs::{self, RunFailure};
use crate::openapi::{ReadErrors, WriteErrors};

const STAFF: &[Role] = &[Role::Finance];

impl From<RunFailure> for ApiError {
    fn from(e: RunFailure) -> Self {
        match e {
            RunFailure::Database(e) => e.into(),
            RunFailure::Invoicing(e) => e.into(),
            RunFailure::Pool(reason) => ApiError::new(
                ErrorCode::ServiceUnavailable,
                format!("no database connection: {reason}"),
            ),
        }
    }
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"as_of": "2026-12-01T00:00:00+01:00"}))]
pub struct InvoiceRunRequest {
    /// Invoice the charges created up to this instant (RFC 3339, 2000-01-01 to 2100-12-31,
    /// at most 10 years after now); defaults to now.
    #[serde(default, deserialize_with = "crate::input::opt_instant")]
    pub as_of: Option<DateTime<Utc>>,
}

/// Start an invoice run: one invoice per customer with charges created up to `as_of` and
/// not yet invoiced. Answers at once with the run, which goes on in the background: follow
/// it at its `Location`. One customer's failure is recorded in the run and does not stop
/// it; a later run picks that customer up. Running again for the same `as_of` issues
/// nothing new, so a retried request does no harm.
#[utoipa::path(
    tag = "invoices",
    request_body(content = Option<InvoiceRunRequest>, description = "Optional: no body, or `null`, runs for now"),
    responses(
        (status = 202, description = "The run, started", body = InvoiceRunView,
            headers(("Location" = String, description = "The run: /v1/invoice-runs/{id}"))),
        WriteErrors
    ),
    security(("bearer" = ["admin", "finance"]))
)]
#[post("/v1/invoice-runs")]
pub async fn post_invoice_run(
    state: State,
    auth: Auth,
    body: JsonBody<InvoiceRunRequest>,
) -> Result<HttpResponse, ApiError> {
    let caller = auth.require(STAFF)?;
    let now = state.clock.now();
    let as_of = body.parse_or_default(caller)?.as_of.unwrap_or(now);
    crate::jobs::check_horizon(as_of, now)
        .map_err(|reason| ApiError::field(ErrorCode::InvalidRequest, "as_of", reason))?;
    let started = store_runs::start(&state.pool, as_of, now).await?;
    let run = started.run.clone();
    let (pool, clock) = (state.pool.clone(), state.clock.clone());
    actix_web::rt::spawn(async move {
        // the outcome is in the run (`interrupted`) and in the log
        let _ = store_runs::execute(&pool, started, &clock, &|_| {}).await;
    });
    Ok(HttpResponse::Accepted()
        .insert_header(("Location", format!("/v1/invoice-runs/{}", run.id)))
        .json(run))
}

/// An invoice run: progress (customers done of those to do), invoices issued, their totals,
/// the customers that failed and why.
#[utoipa::path(
    tag = "invoices",
    params(("id" = Uuid, Path, description = "Invoice run id")),
    responses((status = 200, description = "The run", body = InvoiceRunView), ReadErrors),
    security(("bearer" = ["admin", "finance"]))
)]
#[get("/v1/invoice-runs/{id}")]
pub async fn get_invoice_run(
    state: State,
    auth: Auth,
    id: web::Path<Uuid>,
) -> Result<web::Json<InvoiceRunView>, ApiError> {
    auth.require(STAFF)?;
    let id = id.into_inner();
    let mut conn = state.pool.get().await?;
    store_runs::get(&mut conn, id, state.clock.now())
        .await?
        .map(web::Json)
        .ok_or_else(|| ApiError::not_found(format!("invoice run {id}")))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct InvoiceRunListParams {
    /// The `next_cursor` of the previous page; absent for the first page.
    pub cursor: Option<String>,
    /// Items per page, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
}

/// One page of invoice runs.
#[derive(Debug, Serialize, ToSchema)]
pub struct InvoiceRunPage {
    pub items: Vec<InvoiceRunView>,
    pub next_cursor: Option<String>,
}

/// Invoice runs, oldest first.
#[utoipa::path(
    tag = "invoices",
    params(InvoiceRunListParams),
    responses((status = 200, description = "A page of invoice runs", body = InvoiceRunPage), ReadErrors),
    security(("bearer" = ["admin", "finance"]))
)]
#[get("/v1/invoice-runs")]
pub async fn list_invoice_runs(
    state: State,
    auth: Auth,
    q: Query<InvoiceRunListParams>,
) -> Result<web::Json<InvoiceRunPage>, ApiError> {
    auth.require(STAFF)?;
    let (after, limit) = page("invoice-runs", q.cursor.as_deref(), q.limit)?;
    let mut conn = state.pool.get().await?;
    let items = store_runs::list(&mut conn, after, limit, state.clock.now()).await?;
    let next_cursor = next_cursor("invoice-runs", &items, limit, |r| r.id.to_string());
    Ok(web::Json(InvoiceRunPage { items, next_cursor }))
}
