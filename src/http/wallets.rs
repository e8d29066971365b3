//! A customer's wallets: balances, credit lots, ticket and credit purchases.

use actix_web::{get, post, web, HttpRequest, HttpResponse};
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{caller_idempotency_key, Auth, JsonBody, State};
use crate::auth::Role;
use crate::error::{ApiError, ErrorCode};
use crate::money::{Amount, DecimalString, Unit};
use crate::openapi::{ReadErrors, WriteErrors};
use crate::wallets::store::{self, Balances, TicketPurchaseView};
use crate::wallets::{CreditLotView, WalletError};

impl From<WalletError> for ApiError {
    fn from(e: WalletError) -> Self {
        let detail = e.to_string();
        match e {
            WalletError::UnknownCustomer(_) | WalletError::NotFound(_) => {
                ApiError::new(ErrorCode::NotFound, detail)
            }
            WalletError::CustomerClosed(_) => ApiError::new(ErrorCode::CustomerClosed, detail),
            WalletError::ServicePlusRequired => {
                ApiError::new(ErrorCode::ServicePlusRequired, detail)
            }
            WalletError::AssistanceIncluded => ApiError::new(ErrorCode::AssistanceIncluded, detail),
            WalletError::Insufficient(_) => ApiError::new(ErrorCode::InsufficientFunds, detail),
            WalletError::NoPrice(..) | WalletError::Invalid(_) => {
                ApiError::new(ErrorCode::InvalidRequest, detail)
            }
            WalletError::IdempotencyConflict | WalletError::AlreadyGranted => {
                ApiError::new(ErrorCode::IdempotencyConflict, detail)
            }
            WalletError::Invoicing(e) => e.into(),
            WalletError::Ledger(e) => e.into(),
            WalletError::Database(e) => e.into(),
        }
    }
}

const READERS: &[Role] = &[Role::Finance, Role::Ticketing];
const BUYERS: &[Role] = &[Role::Finance];

async fn known_customer(state: &State, id: Uuid) -> Result<(), ApiError> {
    let mut conn = state.pool.get().await?;
    crate::customers::store::get(&mut conn, id)
        .await?
        .map(|_| ())
        .ok_or_else(|| ApiError::not_found(format!("customer {id}")))
}

/// What a customer holds: credits (total, per lot, next expiry), tickets (available,
/// pending payment), Assistance+ appointments (quota, used, overage, period end) and the
/// amount owed. Every figure is read from the ledger.
#[utoipa::path(
    tag = "wallets",
    params(("id" = Uuid, Path, description = "Customer id")),
    responses((status = 200, description = "The balances", body = Balances), ReadErrors),
    security(("bearer" = ["admin", "finance", "ticketing", "customer"]))
)]
#[get("/v1/customers/{id}/balances")]
pub async fn get_customer_balances(
    state: State,
    auth: Auth,
    id: web::Path<Uuid>,
) -> Result<web::Json<Balances>, ApiError> {
    let id = id.into_inner();
    auth.require_customer(READERS, id)?;
    known_customer(&state, id).await?;
    let mut conn = state.pool.get().await?;
    Ok(web::Json(
        store::balances(&mut conn, id, state.clock.now()).await?,
    ))
}

/// Every credit lot of a customer, earliest expiry first: origin, granted, consumed,
/// expired, remaining, unit price, expiry.
#[utoipa::path(
    tag = "wallets",
    params(("id" = Uuid, Path, description = "Customer id")),
    responses((status = 200, description = "The lots", body = Vec<CreditLotView>), ReadErrors),
    security(("bearer" = ["admin", "finance", "ticketing", "customer"]))
)]
#[get("/v1/customers/{id}/credit-lots")]
pub async fn list_customer_credit_lots(
    state: State,
    auth: Auth,
    id: web::Path<Uuid>,
) -> Result<web::Json<Vec<CreditLotView>>, ApiError> {
    let id = id.into_inner();
    auth.require_customer(READERS, id)?;
    known_customer(&state, id).await?;
    let mut conn = state.pool.get().await?;
    Ok(web::Json(store::lots(&mut conn, id).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"quantity": 3}))]
pub struct TicketPurchaseRequest {
    /// 1 to 1000 tickets.
    #[schema(minimum = 1, maximum = 1000)]
    pub quantity: i32,
}

/// Buy tickets: their invoice is issued at once (the ticket price, incl. VAT, each) and
/// named in the answer (`invoice_id`, `invoice_number`); the tickets are usable once that
/// invoice is paid. A replay answers the same purchase and invoice and issues nothing.
/// Refused while a subscription includes assistance.
#[utoipa::path(
    tag = "wallets",
    params(
        ("id" = Uuid, Path, description = "Customer id"),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes a retry return the first result")
    ),
    request_body = TicketPurchaseRequest,
    responses(
        (status = 201, description = "Bought, pending payment", body = TicketPurchaseView),
        (status = 200, description = "Replay of an earlier request with the same key", body = TicketPurchaseView),
        WriteErrors
    ),
    security(("bearer" = ["admin", "finance", "customer"]))
)]
#[post("/v1/customers/{id}/ticket-purchases")]
pub async fn post_ticket_purchase(
    state: State,
    auth: Auth,
    req: HttpRequest,
    id: web::Path<Uuid>,
    body: JsonBody<TicketPurchaseRequest>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let caller = auth.require_customer(BUYERS, id)?;
    let body = body.parse(caller)?;
    if !(1..=1000).contains(&body.quantity) {
        return Err(ApiError::field(
            ErrorCode::InvalidRequest,
            "quantity",
            "1 to 1000",
        ));
    }
    let key = caller_idempotency_key(&req, caller)?;
    let mut conn = state.pool.get().await?;
    let (view, replayed) = store::buy_tickets(
        &mut conn,
        id,
        body.quantity,
        key.as_ref(),
        state.clock.now(),
    )
    .await?;
    Ok(super::created_or_replayed(view, replayed))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"credits": "5"}))]
pub struct CreditPurchaseRequest {
    /// Credits to buy, at most 2 decimals.
    pub credits: DecimalString,
}

/// Buy unit service credits (only while holding an active Service+ pack): a lot expiring
/// 12 months on, and its invoice at the unit-credit price excl. VAT, issued at once and named
/// in the answer (`invoice_id`, `invoice_number`). A replay answers the same lot and invoice
/// and issues nothing.
#[utoipa::path(
    tag = "wallets",
    params(
        ("id" = Uuid, Path, description = "Customer id"),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes a retry return the first result")
    ),
    request_body = CreditPurchaseRequest,
    responses(
        (status = 201, description = "The new lot", body = CreditLotView),
        (status = 200, description = "Replay of an earlier request with the same key", body = CreditLotView),
        WriteErrors
    ),
    security(("bearer" = ["admin", "finance", "customer"]))
)]
#[post("/v1/customers/{id}/credit-purchases")]
pub async fn post_credit_purchase(
    state: State,
    auth: Auth,
    req: HttpRequest,
    id: web::Path<Uuid>,
    body: JsonBody<CreditPurchaseRequest>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let caller = auth.require_customer(BUYERS, id)?;
    let credits = Amount::new(body.parse(caller)?.credits.0, Unit::Credit)
        .map_err(|e| e.to_string())
        .and_then(|c| {
            crate::money::fits_columns(c.value())
                .then_some(c)
                .ok_or_else(|| "below 10,000,000,000".to_string())
        })
        .map_err(|e| ApiError::field(ErrorCode::InvalidRequest, "credits", e))?;
    let key = caller_idempotency_key(&req, caller)?;
    let mut conn = state.pool.get().await?;
    let (lot, replayed) =
        store::buy_credits(&mut conn, id, credits, key.as_ref(), state.clock.now()).await?;
    Ok(super::created_or_replayed(lot, replayed))
}
