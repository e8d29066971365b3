//! `/v1/interventions`: chargeable interventions, read one or by page; the customer's
//! dispute of an intervention sheet, and its resolution.

use actix_web::{get, post, web};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{next_cursor, page, Auth, JsonBody, Query, State};
use crate::auth::Role;
use crate::error::{ApiError, ErrorCode};
use crate::interventions::{store, InterventionError, InterventionStatus, InterventionView};
use crate::openapi::{ReadErrors, WriteErrors};

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

/// An intervention: its sheet, amount, dispute window and status.
#[utoipa::path(
    tag = "authorizations",
    params(("id" = Uuid, Path, description = "Intervention id")),
    responses((status = 200, description = "The intervention", body = InterventionView), ReadErrors),
    security(("bearer" = ["admin", "ticketing", "finance", "customer"]))
)]
#[get("/v1/interventions/{id}")]
pub async fn get_intervention(
    state: State,
    auth: Auth,
    id: web::Path<Uuid>,
) -> Result<web::Json<InterventionView>, ApiError> {
    let id = id.into_inner();
    if auth.0.role != Role::Customer {
        auth.require(DISPUTERS)?;
    }
    let mut conn = state.pool.get().await?;
    let found = store::get(&mut conn, id).await?;
    // another customer's intervention answers as an unknown one
    match found {
        Some(view) if auth.require_customer(DISPUTERS, view.customer_id).is_ok() => {
            Ok(web::Json(view))
        }
        _ => Err(InterventionError::NotFound(id).into()),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct InterventionListParams {
    /// Only this customer's interventions (a customer key always sees only its own).
    pub customer_id: Option<Uuid>,
    /// Only interventions in this status.
    pub status: Option<InterventionStatus>,
    /// The `next_cursor` of the previous page; absent for the first page.
    pub cursor: Option<String>,
    /// Items per page, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
}

/// One page of interventions.
#[derive(Debug, Serialize, ToSchema)]
pub struct InterventionPage {
    pub items: Vec<InterventionView>,
    pub next_cursor: Option<String>,
}

/// Interventions, oldest first: of one customer and in one status when asked.
#[utoipa::path(
    tag = "authorizations",
    params(InterventionListParams),
    responses((status = 200, description = "A page of interventions", body = InterventionPage), ReadErrors),
    security(("bearer" = ["admin", "ticketing", "finance", "customer"]))
)]
#[get("/v1/interventions")]
pub async fn list_interventions(
    state: State,
    auth: Auth,
    q: Query<InterventionListParams>,
) -> Result<web::Json<InterventionPage>, ApiError> {
    let customer = auth.listing_customer(DISPUTERS, q.customer_id)?;
    let (after, limit) = page("interventions", q.cursor.as_deref(), q.limit)?;
    let mut conn = state.pool.get().await?;
    let items = store::list(&mut conn, customer, q.status, after, limit).await?;
    let next_cursor = next_cursor("interventions", &items, limit, |i| i.id.to_string());
    Ok(web::Json(InterventionPage { items, next_cursor }))
}

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
    let request = body.parse(auth.require(DISPUTERS)?)?;
    let for_customer = matches!(request.outcome, DisputeOutcome::ForCustomer);
    let mut conn = state.pool.get().await?;
    Ok(web::Json(
        store::resolve(&mut conn, id.into_inner(), for_customer, state.clock.now()).await?,
    ))
}
