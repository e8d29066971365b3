//! `/v1/customers/{id}/mandates` and `/v1/mandates/{id}`: SEPA direct debit mandates.
//! Finance records, amends and revokes them; a customer key reads its own only (another
//! customer's answers 404).

use actix_web::{get, post, web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{
    caller_idempotency_key, created_or_replayed, next_cursor, page, Auth, JsonBody, Query, State,
};
use crate::auth::Role;
use crate::error::{ApiError, ErrorCode};
use crate::openapi::{ReadErrors, WriteErrors};
use crate::sepa::{
    store, MandateAmendmentRequest, MandateView, NewMandate, RevokeMandate, SepaError,
};

impl From<SepaError> for ApiError {
    fn from(e: SepaError) -> Self {
        let detail = e.to_string();
        match e {
            SepaError::UnknownCustomer(_) | SepaError::NotFound(_) => {
                ApiError::new(ErrorCode::NotFound, detail)
            }
            SepaError::CustomerClosed(_) => ApiError::new(ErrorCode::CustomerClosed, detail),
            SepaError::Invalid(errors) => ApiError::fields(ErrorCode::InvalidRequest, errors),
            SepaError::NotApplied(errors) => ApiError {
                detail,
                ..ApiError::fields(ErrorCode::InvalidRequest, errors)
            },
            SepaError::DuplicateReference(_) => {
                ApiError::field(ErrorCode::AlreadyExists, "reference", detail)
            }
            SepaError::WrongState(..) | SepaError::BatchConflict => {
                ApiError::new(ErrorCode::InvalidState, detail)
            }
            SepaError::File(_) => ApiError::internal(e),
            SepaError::Payment(e) => e.into(),
            SepaError::Ledger(e) => e.into(),
            SepaError::IdempotencyConflict => {
                ApiError::field(ErrorCode::IdempotencyConflict, "Idempotency-Key", detail)
            }
            SepaError::Database(e) if crate::db::is_retryable(&e) => ApiError::new(
                ErrorCode::ServiceUnavailable,
                "The database is busy; retry shortly.",
            ),
            SepaError::Database(e) => e.into(),
        }
    }
}

const FINANCE: &[Role] = &[Role::Finance];

/// Record a SEPA direct debit mandate the customer signed: its unique reference (UMR), the
/// signature date (not in the future), the debtor's name and IBAN (check digits, the
/// country's length and structure, a SEPA country), an optional BIC, and the scheme (`CORE`
/// or `B2B`). It is active at once: subscriptions to offers collected by direct debit need
/// one. With an `Idempotency-Key`, a retry answers the first mandate (200); a reference
/// already recorded is a 409 `already_exists`.
#[utoipa::path(
    tag = "sepa",
    params(("id" = Uuid, Path, description = "Customer id")),
    request_body = NewMandate,
    responses(
        (status = 201, description = "Recorded, active", body = MandateView),
        (status = 200, description = "The first answer to this idempotency key (a replay)", body = MandateView),
        WriteErrors
    ),
    security(("bearer" = ["admin", "finance"]))
)]
#[post("/v1/customers/{id}/mandates")]
pub async fn post_customer_mandate(
    state: State,
    auth: Auth,
    req: HttpRequest,
    id: web::Path<Uuid>,
    body: JsonBody<NewMandate>,
) -> Result<HttpResponse, ApiError> {
    let caller = auth.require(FINANCE)?;
    let key = caller_idempotency_key(&req, caller)?;
    let mandate = body.parse(caller)?;
    let mut conn = state.pool.get().await?;
    let (view, replayed) = store::create(
        &mut conn,
        id.into_inner(),
        &mandate,
        key.as_ref(),
        state.clock.now(),
    )
    .await?;
    Ok(created_or_replayed(view, replayed))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct MandateListParams {
    /// The `next_cursor` of the previous page; absent for the first page.
    pub cursor: Option<String>,
    /// Items per page, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
}

/// One page of mandates.
#[derive(Debug, Serialize, ToSchema)]
pub struct MandatePage {
    pub items: Vec<MandateView>,
    pub next_cursor: Option<String>,
}

/// The customer's mandates, in the order recorded, whatever their status.
#[utoipa::path(
    tag = "sepa",
    params(("id" = Uuid, Path, description = "Customer id"), MandateListParams),
    responses((status = 200, description = "A page of mandates", body = MandatePage), ReadErrors),
    security(("bearer" = ["admin", "finance", "customer"]))
)]
#[get("/v1/customers/{id}/mandates")]
pub async fn list_customer_mandates(
    state: State,
    auth: Auth,
    id: web::Path<Uuid>,
    q: Query<MandateListParams>,
) -> Result<web::Json<MandatePage>, ApiError> {
    let customer = id.into_inner();
    auth.require_customer(FINANCE, customer)?;
    let (after, limit) = page("mandates", q.cursor.as_deref(), q.limit)?;
    let mut conn = state.pool.get().await?;
    if crate::customers::store::get(&mut conn, customer)
        .await?
        .is_none()
    {
        return Err(ApiError::not_found(format!("customer {customer}")));
    }
    let items = store::list(&mut conn, customer, after, limit).await?;
    let next_cursor = next_cursor("mandates", &items, limit, |m| m.id.to_string());
    Ok(web::Json(MandatePage { items, next_cursor }))
}

/// The mandate of `id` as `auth` may see it: another customer's answers as an unknown one.
async fn visible(state: &State, auth: &Auth, id: Uuid) -> Result<MandateView, ApiError> {
    if auth.0.role != Role::Customer {
        auth.require(FINANCE)?;
    }
    let mut conn = state.pool.get().await?;
    match store::get(&mut conn, id).await? {
        Some(view) if auth.require_customer(FINANCE, view.customer_id).is_ok() => Ok(view),
        _ => Err(SepaError::NotFound(id).into()),
    }
}

/// A mandate, with the amendments it went through.
#[utoipa::path(
    tag = "sepa",
    params(("id" = Uuid, Path, description = "Mandate id")),
    responses((status = 200, description = "The mandate", body = MandateView), ReadErrors),
    security(("bearer" = ["admin", "finance", "customer"]))
)]
#[get("/v1/mandates/{id}")]
pub async fn get_mandate(
    state: State,
    auth: Auth,
    id: web::Path<Uuid>,
) -> Result<web::Json<MandateView>, ApiError> {
    Ok(web::Json(visible(&state, &auth, id.into_inner()).await?))
}

/// Revoke a mandate: nothing more is collected under it, and subscriptions to offers
/// collected by direct debit need another. Revoking it again changes nothing; a lapsed
/// mandate answers 409 `invalid_state`. With `after_final_collection`, a recurrent mandate
/// ends after one last collection (FNAL) instead: the batch that presents it revokes it.
#[utoipa::path(
    tag = "sepa",
    params(("id" = Uuid, Path, description = "Mandate id")),
    request_body(content = Option<RevokeMandate>, description = "Optional: no body, or `null`, revokes without a reason"),
    responses((status = 200, description = "Revoked", body = MandateView), WriteErrors),
    security(("bearer" = ["admin", "finance"]))
)]
#[post("/v1/mandates/{id}/revoke")]
pub async fn revoke_mandate(
    state: State,
    auth: Auth,
    id: web::Path<Uuid>,
    body: JsonBody<RevokeMandate>,
) -> Result<web::Json<MandateView>, ApiError> {
    let caller = auth.require(FINANCE)?;
    let req = body.parse_or_default(caller)?;
    let reason = match req.reason.as_deref().map(str::trim) {
        Some("") => {
            return Err(ApiError::field(
                ErrorCode::InvalidRequest,
                "reason",
                "may not be blank",
            ))
        }
        other => other,
    };
    let mut conn = state.pool.get().await?;
    let (id, now) = (id.into_inner(), state.clock.now());
    let view = match req.after_final_collection {
        true => store::end_after_next_collection(&mut conn, id, reason, now).await?,
        false => store::revoke(&mut conn, id, reason, now).await?,
    };
    Ok(web::Json(view))
}

/// Amend an active mandate: a new IBAN (the BIC given with it, or none), a corrected BIC,
/// or the account holder's new name. The mandate keeps its reference; what the amendment
/// replaced is kept and reported to the debtor's bank with the next collection under it
/// (`amendments[].reported_in`). With an `Idempotency-Key`, a retry answers the first
/// amendment (200).
#[utoipa::path(
    tag = "sepa",
    params(("id" = Uuid, Path, description = "Mandate id")),
    request_body = MandateAmendmentRequest,
    responses(
        (status = 201, description = "Amended", body = MandateView),
        (status = 200, description = "The first answer to this idempotency key (a replay)", body = MandateView),
        WriteErrors
    ),
    security(("bearer" = ["admin", "finance"]))
)]
#[post("/v1/mandates/{id}/amendments")]
pub async fn post_mandate_amendment(
    state: State,
    auth: Auth,
    req: HttpRequest,
    id: web::Path<Uuid>,
    body: JsonBody<MandateAmendmentRequest>,
) -> Result<HttpResponse, ApiError> {
    let caller = auth.require(FINANCE)?;
    let key = caller_idempotency_key(&req, caller)?;
    let amendment = body.parse(caller)?;
    let mut conn = state.pool.get().await?;
    let (view, replayed) = store::amend(
        &mut conn,
        id.into_inner(),
        &amendment,
        key.as_ref(),
        state.clock.now(),
    )
    .await?;
    Ok(created_or_replayed(view, replayed))
}
