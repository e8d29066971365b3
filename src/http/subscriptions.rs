//! `/v1/subscriptions`: create, list, get (with the schedule as of now), cancel, terminate.

use actix_web::{get, post, web, HttpRequest, HttpResponse};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{caller_idempotency_key, next_cursor, page, Auth, JsonBody, Query, State};
use crate::auth::Role;
use crate::error::{ApiError, ErrorCode};
use crate::openapi::{ReadErrors, WriteErrors};
use crate::subscriptions::{store, NewSubscription, SubscriptionView};

const STAFF: &[Role] = &[Role::Finance];

async fn view(state: &State, id: Uuid) -> Result<SubscriptionView, ApiError> {
    let mut conn = state.pool.get().await?;
    store::view(&mut conn, id, state.clock.now())
        .await?
        .ok_or_else(|| ApiError::not_found(format!("subscription {id}")))
}

/// Subscribe a customer to an offer. Offers collected by SEPA direct debit need an active
/// mandate; offers activated on payment wait for it (`pending_payment`) and their first
/// period is charged at once; add-on packs need `parent_id`.
#[utoipa::path(
    tag = "subscriptions",
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retry return the first result")),
    request_body = NewSubscription,
    responses(
        (status = 201, description = "Created", body = SubscriptionView),
        (status = 200, description = "Replay of an earlier request with the same key", body = SubscriptionView),
        WriteErrors
    ),
    security(("bearer" = ["admin", "finance"]))
)]
#[post("/v1/subscriptions")]
pub async fn post_subscription(
    state: State,
    auth: Auth,
    req: HttpRequest,
    body: JsonBody<NewSubscription>,
) -> Result<HttpResponse, ApiError> {
    let caller = auth.require(STAFF)?;
    let request = body.parse(caller)?;
    let key = caller_idempotency_key(&req, caller)?;
    if let Some(d) = request.start_date {
        // every period from the start is billed: a start decades away is a typing error
        let today = crate::calendar::paris_date(state.clock.now());
        if (d - today).abs() > crate::jobs::MAX_HORIZON {
            return Err(ApiError::field(
                ErrorCode::InvalidRequest,
                "start_date",
                "within 10 years of today",
            ));
        }
    }
    let mut conn = state.pool.get().await?;
    let (id, replayed) =
        store::create(&mut conn, &request, key.as_ref(), state.clock.now()).await?;
    drop(conn);
    let view = view(&state, id).await?;
    Ok(super::created_or_replayed(view, replayed))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionListParams {
    /// Only this customer's subscriptions (a customer key always sees only its own).
    pub customer_id: Option<Uuid>,
    /// The `next_cursor` of the previous page; absent for the first page.
    pub cursor: Option<String>,
    /// Items per page, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
}

/// One page of subscriptions.
#[derive(Debug, Serialize, ToSchema)]
pub struct SubscriptionPage {
    pub items: Vec<SubscriptionView>,
    pub next_cursor: Option<String>,
}

/// List subscriptions, optionally of one customer.
#[utoipa::path(
    tag = "subscriptions",
    params(SubscriptionListParams),
    responses((status = 200, description = "A page of subscriptions", body = SubscriptionPage), ReadErrors),
    security(("bearer" = ["admin", "finance", "customer"]))
)]
#[get("/v1/subscriptions")]
pub async fn list_subscriptions(
    state: State,
    auth: Auth,
    q: Query<SubscriptionListParams>,
) -> Result<web::Json<SubscriptionPage>, ApiError> {
    let customer = auth.listing_customer(STAFF, q.customer_id)?;
    let (after, limit) = page("subscriptions", q.cursor.as_deref(), q.limit)?;
    let mut conn = state.pool.get().await?;
    let items = store::list(&mut conn, customer, after, limit, state.clock.now()).await?;
    let next_cursor = next_cursor("subscriptions", &items, limit, |s| s.id.to_string());
    Ok(web::Json(SubscriptionPage { items, next_cursor }))
}

/// A subscription with its current term, notice deadline, next renewal and the
/// early-termination fee that would apply now, and its history.
#[utoipa::path(
    tag = "subscriptions",
    params(("id" = Uuid, Path, description = "Subscription id")),
    responses((status = 200, description = "The subscription", body = SubscriptionView), ReadErrors),
    security(("bearer" = ["admin", "finance", "customer"]))
)]
#[get("/v1/subscriptions/{id}")]
pub async fn get_subscription(
    state: State,
    auth: Auth,
    id: web::Path<Uuid>,
) -> Result<web::Json<SubscriptionView>, ApiError> {
    let id = id.into_inner();
    if auth.0.role != Role::Customer {
        auth.require(STAFF)?;
    }
    let view = view(&state, id).await?;
    auth.require_customer(STAFF, view.customer_id)
        .map_err(|_| ApiError::not_found(format!("subscription {id}")))?;
    Ok(web::Json(view))
}

/// A customer's notice of cancellation or termination. The body may be left out.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"received_on": "2028-12-28"}))]
pub struct NoticeRequest {
    /// The day (Europe/Paris) the customer's notice was received: not after today, not
    /// before the subscription's start date; defaults to today.
    #[serde(default, deserialize_with = "crate::input::opt_date")]
    pub received_on: Option<NaiveDate>,
}

/// Record a cancellation, its notice received on `received_on` (default: today): it stops
/// the tacit renewal when that day is on or before the notice deadline of the term holding
/// it (the subscription ends at that term's end), else the subscription renews once more.
/// A `received_on` in the future, before the start date, or whose notice would have ended
/// the subscription already is refused (422). Asking again changes nothing.
#[utoipa::path(
    tag = "subscriptions",
    params(("id" = Uuid, Path, description = "Subscription id")),
    request_body = Option<NoticeRequest>,
    responses((status = 200, description = "The subscription, with its end", body = SubscriptionView), WriteErrors),
    security(("bearer" = ["admin", "finance"]))
)]
#[post("/v1/subscriptions/{id}/cancel")]
pub async fn cancel_subscription(
    state: State,
    auth: Auth,
    id: web::Path<Uuid>,
    body: JsonBody<NoticeRequest>,
) -> Result<web::Json<SubscriptionView>, ApiError> {
    let received_on = body.parse_or_default(auth.require(STAFF)?)?.received_on;
    let id = id.into_inner();
    let mut conn = state.pool.get().await?;
    store::cancel(&mut conn, id, received_on, state.clock.now()).await?;
    drop(conn);
    Ok(web::Json(view(&state, id).await?))
}

/// End a subscription now, before its term's end: the early-termination fee (the offer's
/// rate × the remaining periods of the current term) is charged. Add-ons end with it.
/// Records the day the customer's notice was received, `received_on` (default: today; not
/// in the future, not before the start date: 422).
#[utoipa::path(
    tag = "subscriptions",
    params(("id" = Uuid, Path, description = "Subscription id")),
    request_body = Option<NoticeRequest>,
    responses((status = 200, description = "The ended subscription", body = SubscriptionView), WriteErrors),
    security(("bearer" = ["admin", "finance"]))
)]
#[post("/v1/subscriptions/{id}/terminate")]
pub async fn terminate_subscription(
    state: State,
    auth: Auth,
    id: web::Path<Uuid>,
    body: JsonBody<NoticeRequest>,
) -> Result<web::Json<SubscriptionView>, ApiError> {
    let received_on = body.parse_or_default(auth.require(STAFF)?)?.received_on;
    let id = id.into_inner();
    let mut conn = state.pool.get().await?;
    store::terminate(&mut conn, id, received_on, state.clock.now()).await?;
    drop(conn);
    Ok(web::Json(view(&state, id).await?))
}
