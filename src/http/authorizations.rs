//! The ticketing hot path: `/v1/authorizations`.

use actix_web::{get, post, web, HttpResponse};
use uuid::Uuid;

use super::{Auth, JsonBody, State};
use crate::auth::Role;
use crate::authorizations::store::{
    self, AuthorizationError, AuthorizationRequest, AuthorizationView, Capture,
};
use crate::calendar::BusinessHours;
use crate::error::{ApiError, ErrorCode};
use crate::openapi::{ReadErrors, WriteErrors};

impl From<AuthorizationError> for ApiError {
    fn from(e: AuthorizationError) -> Self {
        let detail = e.to_string();
        match e {
            AuthorizationError::UnknownCustomer(_) => ApiError::new(ErrorCode::NotFound, detail),
            AuthorizationError::Conflict(_) => {
                ApiError::new(ErrorCode::IdempotencyConflict, detail)
            }
            AuthorizationError::NotFound(_) => ApiError::new(ErrorCode::NotFound, detail),
            AuthorizationError::WrongState(..) => ApiError::new(ErrorCode::InvalidState, detail),
            AuthorizationError::Invalid(_) => ApiError::new(ErrorCode::InvalidRequest, detail),
            AuthorizationError::Wallet(e) => e.into(),
            AuthorizationError::Ledger(e) => e.into(),
            AuthorizationError::Database(e) => e.into(),
        }
    }
}

const TICKETING: &[Role] = &[Role::Ticketing];
const DISPUTERS: &[Role] = &[Role::Ticketing, Role::Finance];

/// Is this request covered, and by what? Decides in DOMAIN.md's rule order and holds what
/// the work will consume. `request_ref` is the idempotency key: a replay returns the first
/// decision (200); the same ref with another body is a 409.
#[utoipa::path(
    tag = "authorizations",
    request_body = AuthorizationRequest,
    responses(
        (status = 201, description = "Decided (approved or denied)", body = AuthorizationView),
        (status = 200, description = "Replay: the first decision", body = AuthorizationView),
        WriteErrors
    ),
    security(("bearer" = ["admin", "ticketing"]))
)]
#[post("/v1/authorizations")]
pub async fn post_authorization(
    state: State,
    auth: Auth,
    body: JsonBody<AuthorizationRequest>,
) -> Result<HttpResponse, ApiError> {
    let req = body.parse(auth.require(TICKETING)?)?;
    if req.request_ref.trim().is_empty() {
        return Err(ApiError::field(
            ErrorCode::InvalidRequest,
            "request_ref",
            "1 to 200 characters, not only spaces",
        ));
    }
    if req.declared_at < req.occurred_at {
        return Err(ApiError::field(
            ErrorCode::InvalidRequest,
            "declared_at",
            "cannot be before occurred_at",
        ));
    }
    let mut conn = state.pool.get().await?;
    let (view, replayed) = store::authorize(
        &mut conn,
        &req,
        state.clock.now(),
        &BusinessHours::default(),
    )
    .await?;
    Ok(super::created_or_replayed(view, replayed))
}

/// An authorization.
#[utoipa::path(
    tag = "authorizations",
    params(("id" = Uuid, Path, description = "Authorization id")),
    responses((status = 200, description = "The authorization", body = AuthorizationView), ReadErrors),
    security(("bearer" = ["admin", "ticketing", "finance"]))
)]
#[get("/v1/authorizations/{id}")]
pub async fn get_authorization(
    state: State,
    auth: Auth,
    id: web::Path<Uuid>,
) -> Result<web::Json<AuthorizationView>, ApiError> {
    auth.require(DISPUTERS)?;
    let mut conn = state.pool.get().await?;
    Ok(web::Json(store::view(&mut conn, id.into_inner()).await?))
}

/// Capture what was done: `minutes` for work billed by the hour, `units` otherwise (at
/// most what was held; the rest is released). A chargeable capture creates an intervention
/// that can be disputed for 5 days. Capturing twice, or a voided one, is a 409.
#[utoipa::path(
    tag = "authorizations",
    params(("id" = Uuid, Path, description = "Authorization id")),
    request_body(content = Option<Capture>, description = "Optional: no body, or `null`, captures everything held"),
    responses((status = 200, description = "Captured", body = AuthorizationView), WriteErrors),
    security(("bearer" = ["admin", "ticketing"]))
)]
#[post("/v1/authorizations/{id}/capture")]
pub async fn capture_authorization(
    state: State,
    auth: Auth,
    id: web::Path<Uuid>,
    body: JsonBody<Capture>,
) -> Result<web::Json<AuthorizationView>, ApiError> {
    let what = body.parse_or_default(auth.require(TICKETING)?)?;
    let mut conn = state.pool.get().await?;
    Ok(web::Json(
        store::capture(&mut conn, id.into_inner(), what, state.clock.now()).await?,
    ))
}

/// Void an open authorization: what it held is released. Voiding a captured one is a 409.
#[utoipa::path(
    tag = "authorizations",
    params(("id" = Uuid, Path, description = "Authorization id")),
    responses((status = 200, description = "Voided", body = AuthorizationView), WriteErrors),
    security(("bearer" = ["admin", "ticketing"]))
)]
#[post("/v1/authorizations/{id}/void")]
pub async fn void_authorization(
    state: State,
    auth: Auth,
    id: web::Path<Uuid>,
) -> Result<web::Json<AuthorizationView>, ApiError> {
    auth.require(TICKETING)?;
    let mut conn = state.pool.get().await?;
    Ok(web::Json(
        store::void(&mut conn, id.into_inner(), state.clock.now()).await?,
    ))
}
