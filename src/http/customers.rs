//! `/v1/customers`: create, list, get, update; and a customer's charges.

use actix_web::{get, patch, post, web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{caller_idempotency_key, next_cursor, page, Auth, JsonBody, Query, State};
use crate::auth::Role;
use crate::charges::{self, ChargeView};
use crate::customers::store::{self, CustomerError};
use crate::customers::{CustomerPatch, CustomerView, NewCustomer};
use crate::error::{ApiError, ErrorCode};
use crate::openapi::{ReadErrors, WriteErrors};

const STAFF: &[Role] = &[Role::Finance];

impl From<CustomerError> for ApiError {
    fn from(e: CustomerError) -> Self {
        match e {
            CustomerError::IdempotencyConflict => {
                ApiError::new(ErrorCode::IdempotencyConflict, e.to_string())
            }
            CustomerError::NotFound(id) => ApiError::not_found(format!("customer {id}")),
            CustomerError::Invalid(errors) => ApiError::fields(ErrorCode::InvalidRequest, errors),
            CustomerError::Closed(_) => ApiError::new(ErrorCode::CustomerClosed, e.to_string()),
            CustomerError::ReopenNotAllowed => ApiError::new(ErrorCode::Forbidden, e.to_string()),
            CustomerError::Database(e) => e.into(),
        }
    }
}

/// Create a customer. SIREN and SIRET are Luhn-checked, a French VAT number's key is
/// checked against the SIREN. With an `Idempotency-Key`, a retry returns the first customer.
#[utoipa::path(
    tag = "customers",
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retry return the first result")),
    request_body = NewCustomer,
    responses(
        (status = 201, description = "Created", body = CustomerView),
        (status = 200, description = "Replay of an earlier request with the same key", body = CustomerView),
        WriteErrors
    ),
    security(("bearer" = ["admin", "finance"]))
)]
#[post("/v1/customers")]
pub async fn post_customer(
    state: State,
    auth: Auth,
    req: HttpRequest,
    body: JsonBody<NewCustomer>,
) -> Result<HttpResponse, ApiError> {
    let caller = auth.require(STAFF)?;
    let key = caller_idempotency_key(&req, caller)?;
    let fields = body
        .parse(caller)?
        .validate()
        .map_err(|errors| ApiError::fields(ErrorCode::InvalidRequest, errors))?;
    let mut conn = state.pool.get().await?;
    let (view, replayed) = store::create(
        &mut conn,
        uuid::Uuid::now_v7(),
        &fields,
        key.as_ref(),
        state.clock.now(),
    )
    .await?;
    Ok(super::created_or_replayed(view, replayed))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// The `next_cursor` of the previous page; absent for the first page.
    pub cursor: Option<String>,
    /// Items per page, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
}

/// One page of customers.
#[derive(Debug, Serialize, ToSchema)]
pub struct CustomerPage {
    pub items: Vec<CustomerView>,
    pub next_cursor: Option<String>,
}

/// List customers in id order.
#[utoipa::path(
    tag = "customers",
    params(ListParams),
    responses((status = 200, description = "A page of customers", body = CustomerPage), ReadErrors),
    security(("bearer" = ["admin", "finance"]))
)]
#[get("/v1/customers")]
pub async fn list_customers(
    state: State,
    auth: Auth,
    q: Query<ListParams>,
) -> Result<web::Json<CustomerPage>, ApiError> {
    auth.require(STAFF)?;
    let (after, limit) = page("customers", q.cursor.as_deref(), q.limit)?;
    let mut conn = state.pool.get().await?;
    let items = store::list(&mut conn, after, limit).await?;
    let next_cursor = next_cursor("customers", &items, limit, |c| c.id.to_string());
    Ok(web::Json(CustomerPage { items, next_cursor }))
}

/// A customer. A customer key sees only its own.
#[utoipa::path(
    tag = "customers",
    params(("id" = Uuid, Path, description = "Customer id")),
    responses((status = 200, description = "The customer", body = CustomerView), ReadErrors),
    security(("bearer" = ["admin", "finance", "customer"]))
)]
#[get("/v1/customers/{id}")]
pub async fn get_customer(
    state: State,
    auth: Auth,
    id: web::Path<Uuid>,
) -> Result<web::Json<CustomerView>, ApiError> {
    let id = id.into_inner();
    auth.require_customer(STAFF, id)?;
    let mut conn = state.pool.get().await?;
    store::get(&mut conn, id)
        .await?
        .map(web::Json)
        .ok_or_else(|| ApiError::not_found(format!("customer {id}")))
}

/// Update a customer; every identifier is checked again. A closed customer is read-only:
/// only a patch that reopens it (`status` active or suspended) is taken, from an admin key
/// (409 `customer_closed` otherwise; 403 for another key that tries to reopen).
#[utoipa::path(
    tag = "customers",
    params(("id" = Uuid, Path, description = "Customer id")),
    request_body = CustomerPatch,
    responses((status = 200, description = "The updated customer", body = CustomerView), WriteErrors),
    security(("bearer" = ["admin", "finance"]))
)]
#[patch("/v1/customers/{id}")]
pub async fn patch_customer(
    state: State,
    auth: Auth,
    id: web::Path<Uuid>,
    body: JsonBody<CustomerPatch>,
) -> Result<web::Json<CustomerView>, ApiError> {
    let patch = body.parse(auth.require(STAFF)?)?;
    let id = id.into_inner();
    let mut conn = state.pool.get().await?;
    Ok(web::Json(
        store::patch(
            &mut conn,
            id,
            &patch,
            auth.0.role == Role::Admin,
            state.clock.now(),
        )
        .await?,
    ))
}

/// One page of charges.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChargePage {
    pub items: Vec<ChargeView>,
    pub next_cursor: Option<String>,
}

/// A customer's charges (billable items, invoiced or not), oldest first.
#[utoipa::path(
    tag = "customers",
    params(("id" = Uuid, Path, description = "Customer id"), ListParams),
    responses((status = 200, description = "A page of charges", body = ChargePage), ReadErrors),
    security(("bearer" = ["admin", "finance", "customer"]))
)]
#[get("/v1/customers/{id}/charges")]
pub async fn list_customer_charges(
    state: State,
    auth: Auth,
    id: web::Path<Uuid>,
    q: Query<ListParams>,
) -> Result<web::Json<ChargePage>, ApiError> {
    let id = id.into_inner();
    auth.require_customer(STAFF, id)?;
    let (after, limit) = page("charges", q.cursor.as_deref(), q.limit)?;
    let mut conn = state.pool.get().await?;
    if store::get(&mut conn, id).await?.is_none() {
        return Err(ApiError::not_found(format!("customer {id}")));
    }
    let items = charges::for_customer(&mut conn, id, after, limit).await?;
    let next_cursor = next_cursor("charges", &items, limit, |c| c.id.to_string());
    Ok(web::Json(ChargePage { items, next_cursor }))
}
