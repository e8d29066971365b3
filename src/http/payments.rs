//! `/v1/payments` and `/v1/customers/{id}/refunds`: money received and paid back. Finance
//! reports payments and refunds; a customer key reads its own payments only.

use actix_web::{get, post, web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{created_or_replayed, next_cursor, page, Auth, JsonBody, Query, State};
use crate::auth::Role;
use crate::error::{ApiError, ErrorCode};
use crate::openapi::{ReadErrors, WriteErrors};
use crate::payments::{store, NewPayment, PaymentError, PaymentView, RefundRequest, RefundView};

impl From<PaymentError> for ApiError {
    fn from(e: PaymentError) -> Self {
        let detail = e.to_string();
        match e {
            PaymentError::UnknownCustomer(_) => {
                ApiError::field(ErrorCode::InvalidRequest, "customer_id", detail)
            }
            PaymentError::Invalid { field, message } => {
                ApiError::field(ErrorCode::InvalidRequest, field, message)
            }
            PaymentError::InvoiceNotOpen(_) => {
                ApiError::field(ErrorCode::InvalidRequest, "invoice_ids", detail)
            }
            PaymentError::BeyondCreditBalance { .. } => {
                ApiError::field(ErrorCode::BeyondCreditBalance, "amount", detail)
            }
            PaymentError::IdempotencyConflict => {
                ApiError::field(ErrorCode::IdempotencyConflict, "reference", detail)
            }
            PaymentError::NotFound(_) => ApiError::new(ErrorCode::NotFound, detail),
            PaymentError::Invoicing(e) => e.into(),
            PaymentError::Wallet(e) => e.into(),
            PaymentError::Subscription(e) => e.into(),
            PaymentError::Ledger(e) => e.into(),
            PaymentError::Database(e) if crate::db::is_retryable(&e) => ApiError::new(
                ErrorCode::ServiceUnavailable,
                "The database is busy; retry shortly.",
            ),
            PaymentError::Database(e) => e.into(),
        }
    }
}

const FINANCE: &[Role] = &[Role::Finance];

/// Record a payment received (a bank transfer, or a card settlement reported by the
/// processor). It pays the invoices named, in that order, or else the customer's oldest
/// open invoices; a partial payment leaves an invoice open with less due; what is left goes
/// to the customer's credit balance, which pays the next invoices. An invoice paid in full
/// releases what waited on it, in the same transaction: its ticket purchases become
/// usable, a subscription waiting for its first payment starts on the value date, and a
/// suspended customer with nothing overdue any more is reinstated. The ledger records bank
/// 512 / receivable 411 (and credit balance 4191) at the value date. The reference is the
/// idempotency key: the same reference and body again answers the first payment (200), the
/// same reference with another body is a 409.
#[utoipa::path(
    tag = "payments",
    request_body = NewPayment,
    responses(
        (status = 201, description = "Received and allocated", body = PaymentView),
        (status = 200, description = "The first payment with this reference (a replay)", body = PaymentView),
        WriteErrors
    ),
    security(("bearer" = ["admin", "finance"]))
)]
#[post("/v1/payments")]
pub async fn post_payment(
    state: State,
    auth: Auth,
    body: JsonBody<NewPayment>,
) -> Result<HttpResponse, ApiError> {
    let caller = auth.require(FINANCE)?;
    let req = body.parse(caller)?;
    let mut conn = state.pool.get().await?;
    let (view, replayed) = store::receive(&mut conn, &req, state.clock.now()).await?;
    Ok(created_or_replayed(view, replayed))
}

/// A payment and the invoices it paid.
#[utoipa::path(
    tag = "payments",
    params(("id" = Uuid, Path, description = "Payment id")),
    responses((status = 200, description = "The payment", body = PaymentView), ReadErrors),
    security(("bearer" = ["admin", "finance", "customer"]))
)]
#[get("/v1/payments/{id}")]
pub async fn get_payment(
    state: State,
    auth: Auth,
    id: web::Path<Uuid>,
) -> Result<web::Json<PaymentView>, ApiError> {
    let id = id.into_inner();
    if auth.0.role != Role::Customer {
        auth.require(FINANCE)?;
    }
    let mut conn = state.pool.get().await?;
    // another customer's payment answers as an unknown one
    match store::get(&mut conn, id).await? {
        Some(view) if auth.require_customer(FINANCE, view.customer_id).is_ok() => {
            Ok(web::Json(view))
        }
        _ => Err(PaymentError::NotFound(id).into()),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PaymentListParams {
    /// Only this customer's payments (a customer key always sees only its own).
    pub customer_id: Option<Uuid>,
    /// The `next_cursor` of the previous page; absent for the first page.
    pub cursor: Option<String>,
    /// Items per page, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
}

/// One page of payments.
#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentPage {
    pub items: Vec<PaymentView>,
    pub next_cursor: Option<String>,
}

/// Payments in the order received: of one customer when asked.
#[utoipa::path(
    tag = "payments",
    params(PaymentListParams),
    responses((status = 200, description = "A page of payments", body = PaymentPage), ReadErrors),
    security(("bearer" = ["admin", "finance", "customer"]))
)]
#[get("/v1/payments")]
pub async fn list_payments(
    state: State,
    auth: Auth,
    q: Query<PaymentListParams>,
) -> Result<web::Json<PaymentPage>, ApiError> {
    let customer = auth.listing_customer(FINANCE, q.customer_id)?;
    let (after, limit) = page("payments", q.cursor.as_deref(), q.limit)?;
    let mut conn = state.pool.get().await?;
    let items = store::list(&mut conn, customer, after, limit).await?;
    let next_cursor = next_cursor("payments", &items, limit, |p| p.id.to_string());
    Ok(web::Json(PaymentPage { items, next_cursor }))
}

/// Pay back (part of) the customer's credit balance by bank transfer: credit balance 4191 /
/// bank 512 at the value date, never more than the balance (422 `beyond_credit_balance`
/// on `amount`). The reference is the idempotency key, as a payment's.
#[utoipa::path(
    tag = "payments",
    params(("id" = Uuid, Path, description = "Customer id")),
    request_body = RefundRequest,
    responses(
        (status = 201, description = "Refunded", body = RefundView),
        (status = 200, description = "The first refund with this reference (a replay)", body = RefundView),
        WriteErrors
    ),
    security(("bearer" = ["admin", "finance"]))
)]
#[post("/v1/customers/{id}/refunds")]
pub async fn post_customer_refund(
    state: State,
    auth: Auth,
    id: web::Path<Uuid>,
    body: JsonBody<RefundRequest>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let caller = auth.require(FINANCE)?;
    let req = body.parse(caller)?;
    let mut conn = state.pool.get().await?;
    let (view, replayed) = store::refund(&mut conn, id, &req, state.clock.now())
        .await
        .map_err(|e| match e {
            // the customer is the path's
            PaymentError::UnknownCustomer(_) => ApiError::not_found(format!("customer {id}")),
            e => e.into(),
        })?;
    Ok(created_or_replayed(view, replayed))
}
