//! `/v1/sepa/batches`: SEPA direct debit collection batches, their pain.008 file, their
//! submission and settlement (admin, finance).

use actix_web::{get, post, web, HttpRequest, HttpResponse};
use uuid::Uuid;

use super::{caller_idempotency_key, created_or_replayed, Auth, JsonBody, RawBody, State};
use crate::auth::Role;
use crate::error::{ApiError, ErrorCode};
use crate::openapi::{ReadErrors, WriteErrors};
use crate::sepa::collection::{BatchView, NewBatch, SettleBatch};
use crate::sepa::returns::ReturnReport;
use crate::sepa::store_batches as store;
use crate::sepa::SepaError;

const FINANCE: &[Role] = &[Role::Finance];

/// Make a collection batch for a collection date: every open invoice due by then, issued
/// at least 14 days before it (the invoice is the debtor's pre-notification; fewer when the
/// creditor is so configured), of a customer
/// with an active mandate, and in no other batch not yet settled. One collection per
/// invoice, with an end-to-end id naming it; one group per scheme and sequence type. The
/// date must be a TARGET2 business day at least one TARGET2 business day ahead (422 on
/// `collection_date` otherwise, or when nothing is to be collected). With an
/// `Idempotency-Key`, a retry answers the first batch (200).
#[utoipa::path(
    tag = "sepa",
    request_body = NewBatch,
    responses(
        (status = 201, description = "Made", body = BatchView),
        (status = 200, description = "The first answer to this idempotency key (a replay)", body = BatchView),
        WriteErrors
    ),
    security(("bearer" = ["admin", "finance"]))
)]
#[post("/v1/sepa/batches")]
pub async fn post_sepa_batch(
    state: State,
    auth: Auth,
    req: HttpRequest,
    body: JsonBody<NewBatch>,
) -> Result<HttpResponse, ApiError> {
    let caller = auth.require(FINANCE)?;
    let key = caller_idempotency_key(&req, caller)?;
    let batch = body.parse(caller)?;
    let mut conn = state.pool.get().await?;
    let (view, replayed) =
        store::create(&mut conn, &batch, key.as_ref(), state.clock.now()).await?;
    Ok(created_or_replayed(view, replayed))
}

/// A collection batch: its groups and collections.
#[utoipa::path(
    tag = "sepa",
    params(("id" = Uuid, Path, description = "Batch id")),
    responses((status = 200, description = "The batch", body = BatchView), ReadErrors),
    security(("bearer" = ["admin", "finance"]))
)]
#[get("/v1/sepa/batches/{id}")]
pub async fn get_sepa_batch(
    state: State,
    auth: Auth,
    id: web::Path<Uuid>,
) -> Result<web::Json<BatchView>, ApiError> {
    auth.require(FINANCE)?;
    let id = id.into_inner();
    let mut conn = state.pool.get().await?;
    let view = store::get(&mut conn, id)
        .await?
        .ok_or(SepaError::NotFound(id))?;
    Ok(web::Json(view))
}

/// The batch's pain.008.001.08 file, to send to the bank: the same bytes every time (under
/// the same creditor configuration).
#[utoipa::path(
    tag = "sepa",
    params(("id" = Uuid, Path, description = "Batch id")),
    responses(
        (status = 200, description = "The pain.008.001.08 document", body = String, content_type = "application/xml"),
        ReadErrors
    ),
    security(("bearer" = ["admin", "finance"]))
)]
#[get("/v1/sepa/batches/{id}/pain008")]
pub async fn get_sepa_batch_pain008(
    state: State,
    auth: Auth,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    auth.require(FINANCE)?;
    let id = id.into_inner();
    let mut conn = state.pool.get().await?;
    let file = store::pain008(&mut conn, id)
        .await?
        .ok_or(SepaError::NotFound(id))?;
    Ok(HttpResponse::Ok()
        .content_type("application/xml")
        .body(file))
}

/// Record that the batch's file went to the bank: per customer, receivable 411 → direct
/// debits in transit 5112; its invoices become `collection_pending` (no other payment takes
/// them); its mandates' last collection is the batch's date. Submitting it again changes
/// nothing; an invoice paid or credited since the batch was made is a 409.
#[utoipa::path(
    tag = "sepa",
    params(("id" = Uuid, Path, description = "Batch id")),
    responses((status = 200, description = "Submitted", body = BatchView), WriteErrors),
    security(("bearer" = ["admin", "finance"]))
)]
#[post("/v1/sepa/batches/{id}/submit")]
pub async fn submit_sepa_batch(
    state: State,
    auth: Auth,
    id: web::Path<Uuid>,
) -> Result<web::Json<BatchView>, ApiError> {
    auth.require(FINANCE)?;
    let mut conn = state.pool.get().await?;
    let view = store::submit(&mut conn, id.into_inner(), state.clock.now()).await?;
    Ok(web::Json(view))
}

/// Record the bank's credit of a submitted batch: each collection is a `direct_debit`
/// payment of its invoice at the value date, recorded as `POST /v1/payments` records one
/// (the invoice paid releases what waited on it), against direct debits in transit 5112 →
/// bank 512. Settling it again on the same date changes nothing.
#[utoipa::path(
    tag = "sepa",
    params(("id" = Uuid, Path, description = "Batch id")),
    request_body = SettleBatch,
    responses((status = 200, description = "Settled", body = BatchView), WriteErrors),
    security(("bearer" = ["admin", "finance"]))
)]
#[post("/v1/sepa/batches/{id}/settle")]
pub async fn settle_sepa_batch(
    state: State,
    auth: Auth,
    id: web::Path<Uuid>,
    body: JsonBody<SettleBatch>,
) -> Result<web::Json<BatchView>, ApiError> {
    let caller = auth.require(FINANCE)?;
    let req = body.parse(caller)?;
    let mut conn = state.pool.get().await?;
    let view = store::settle(&mut conn, id.into_inner(), &req, state.clock.now()).await?;
    Ok(web::Json(view))
}

/// Import a bank's report of collections that came back: a pain.002 status report (rejects,
/// before settlement) or a camt.054 debit notification (returns, after), as its XML
/// (`Content-Type: application/xml`). Each rejected or returned collection, matched by its
/// end-to-end id, reverses its ledger movement (5112 or bank 512 → receivable 411), reopens
/// its invoice and records its reason code: MD01, AC04, AC06 and MD07 revoke the mandate;
/// AM04 and MS03 present the invoice once more in the next batch (a new end-to-end id);
/// anything else, or a second failure, leaves the invoice to the dunning job. A report
/// with a part that cannot be applied (an unknown end-to-end id, a collection not submitted
/// or already back, a malformed file) changes nothing: the 422 names every such part. The
/// same report again (its message id) answers the first import (200) and changes nothing.
#[utoipa::path(
    tag = "sepa",
    request_body(content = String, content_type = "application/xml", description = "A pain.002 or camt.054 document"),
    responses(
        (status = 201, description = "Applied", body = ReturnReport),
        (status = 200, description = "This report was imported before: its first import", body = ReturnReport),
        WriteErrors
    ),
    security(("bearer" = ["admin", "finance"]))
)]
#[post("/v1/sepa/returns")]
pub async fn post_sepa_returns(
    state: State,
    auth: Auth,
    req: HttpRequest,
    body: RawBody,
) -> Result<HttpResponse, ApiError> {
    auth.require(FINANCE)?;
    let xml_type = req
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase())
        .is_some_and(|m| m == "application/xml" || m == "text/xml");
    if !xml_type {
        return Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "send the report as `Content-Type: application/xml`",
        ));
    }
    let xml = std::str::from_utf8(&body.0).map_err(|_| {
        ApiError::field(ErrorCode::InvalidRequest, "body", "the report is not UTF-8")
    })?;
    let mut conn = state.pool.get().await?;
    let (report, replayed) =
        crate::sepa::store_returns::import(&mut conn, xml, state.clock.now()).await?;
    Ok(created_or_replayed(report, replayed))
}
