//! `/v1/customers`: create, list, get, update; and a customer's charges.

use actix_web::{get, patch, post, web, HttpRequest, HttpResponse};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{caller_idempotency_key, next_cursor, page, Auth, JsonBody, Query, State};
use crate::auth::Role;
use crate::calendar::paris_date;
use crate::charges::{self, ChargeView};
use crate::customers::store::{self, CustomerError};
use crate::customers::{CustomerPatch, CustomerView, NewCustomer};
use crate::dunning::{self, store::DunningError, DunningView, LiabilityCap};
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

/// A customer with its standing on payment: overdue amount, since when, latest formal
/// notice.
#[derive(Debug, Serialize, ToSchema)]
pub struct CustomerDetail {
    #[serde(flatten)]
    pub customer: CustomerView,
    pub dunning: DunningView,
}

/// A customer, with what its overdue invoices ask and its latest formal notice (status
/// `suspended` from a notice until nothing is overdue). A customer key sees only its own.
#[utoipa::path(
    tag = "customers",
    params(("id" = Uuid, Path, description = "Customer id")),
    responses((status = 200, description = "The customer", body = CustomerDetail), ReadErrors),
    security(("bearer" = ["admin", "finance", "customer"]))
)]
#[get("/v1/customers/{id}")]
pub async fn get_customer(
    state: State,
    auth: Auth,
    id: web::Path<Uuid>,
) -> Result<web::Json<CustomerDetail>, ApiError> {
    let id = id.into_inner();
    auth.require_customer(STAFF, id)?;
    let mut conn = state.pool.get().await?;
    let customer = store::get(&mut conn, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("customer {id}")))?;
    let dunning = dunning::store::view(&mut conn, id).await?;
    Ok(web::Json(CustomerDetail { customer, dunning }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LiabilityCapQuery {
    /// The window's last day (Paris date, YYYY-MM-DD); default today.
    #[serde(default, deserialize_with = "crate::input::opt_date")]
    #[param(value_type = Option<String>, format = Date)]
    pub on: Option<NaiveDate>,
}

/// Seed 001's liability cap: the assistance fees (tickets, chargeable interventions,
/// Assistance+ overage, assistance subscriptions and packs) the customer paid over the 12
/// months up to `on`, each payment counted for the assistance share of the invoice it paid;
/// a payment that came back by `on` (a returned SEPA collection) counts for nothing.
#[utoipa::path(
    tag = "customers",
    params(("id" = Uuid, Path, description = "Customer id"), LiabilityCapQuery),
    responses((status = 200, description = "The cap", body = LiabilityCap), ReadErrors),
    security(("bearer" = ["admin", "finance", "customer"]))
)]
#[get("/v1/customers/{id}/liability-cap")]
pub async fn get_liability_cap(
    state: State,
    auth: Auth,
    id: web::Path<Uuid>,
    query: Query<LiabilityCapQuery>,
) -> Result<web::Json<LiabilityCap>, ApiError> {
    let id = id.into_inner();
    auth.require_customer(STAFF, id)?;
    let on = query.on.unwrap_or_else(|| paris_date(state.clock.now()));
    let mut conn = state.pool.get().await?;
    store::get(&mut conn, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("customer {id}")))?;
    Ok(web::Json(
        dunning::store::liability_cap(&mut conn, id, on).await?,
    ))
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

impl From<DunningError> for ApiError {
    fn from(e: DunningError) -> Self {
        match e {
            DunningError::UnknownCustomer(id) => ApiError::not_found(format!("customer {id}")),
            DunningError::Subscription(e) => e.into(),
            DunningError::Database(e) => e.into(),
        }
    }
}
