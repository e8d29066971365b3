//! `/v1/interventions`: the customer's dispute of an intervention sheet, and its resolution.

use actix_web::{post, web};
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{Auth, JsonBody, State};
use crate::auth::Role;
use crate::error::{ApiError, ErrorCode};
use crate::interventions::{store, InterventionError, InterventionView};
use crate::openapi::WriteErrors;

impl From<InterventionError> for ApiError {
    fn from(e: InterventionError) -> Self {
        let detail = e.to_string();
        match e {
            InterventionError::NotFound(_) => ApiError::new(ErrorCode::NotFound, detail),
            InterventionError::WrongState(..) => ApiError::new(ErrorCode::InvalidState, detail),
            InterventionError::UnknownOffer(_) => ApiError::internal(anyhow::anyhow!(detail)),
            InterventionError::Database(e) => e.into(),
        }
    }
}

const DISPUTERS: &[Role] = &[Role::Ticketing, Role::Finance];

/// The customer disputes an intervention sheet (within 5 days of its date).
#[utoipa::path(
    tag = "authorizations",
    params(("id" = Uuid, Path, description = "Intervention id")),
    responses((status = 200, description = "Disputed", body = InterventionView), WriteErrors),
    security(("bearer" = ["admin", "ticketing", "finance"]))
)]
#[post("/v1/interventions/{id}/dispute")]
pub async fn dispute_intervention(
    state: State,
    auth: Auth,
    id: web::Path<Uuid>,
) -> Result<web::Json<InterventionView>, ApiError> {
    auth.require(DISPUTERS)?;
    let mut conn = state.pool.get().await?;
    Ok(web::Json(
        store::dispute(&mut conn, id.into_inner(), state.clock.now()).await?,
    ))
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DisputeOutcome {
    /// The intervention is voided, never billed.
    ForCustomer,
    /// The intervention is billed by the next intervention-release run.
    AgainstCustomer,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveRequest {
    pub outcome: DisputeOutcome,
}

/// Resolve a dispute for or against the customer.
#[utoipa::path(
    tag = "authorizations",
    params(("id" = Uuid, Path, description = "Intervention id")),
    request_body = ResolveRequest,
    responses((status = 200, description = "Resolved", body = InterventionView), WriteErrors),
    security(("bearer" = ["admin", "ticketing", "finance"]))
)]
#[post("/v1/interventions/{id}/resolve")]
pub async fn resolve_intervention(
    state: State,
    auth: Auth,
    id: web::Path<Uuid>,
    body: JsonBody<ResolveRequest>,
) -> Result<web::Json<InterventionView>, ApiError> {
    auth.require(DISPUTERS)?;
    let for_customer = matches!(body.0.outcome, DisputeOutcome::ForCustomer);
    let mut conn = state.pool.get().await?;
    Ok(web::Json(
        store::resolve(&mut conn, id.into_inner(), for_customer, state.clock.now()).await?,
    ))
}
