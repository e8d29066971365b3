//! Credit notes: issued on an invoice by finance, read one or by page; a customer key sees
//! its own only.

use actix_web::{get, post, web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{idempotency_key, next_cursor, page, Auth, JsonBody, Query, State};
use crate::auth::Role;
use crate::error::{ApiError, ErrorCode, FieldError};
use crate::idempotency::IdempotencyKey;
use crate::invoicing::store_credit_notes::{self as store, AskSpec, NewCreditNote};
use crate::invoicing::{CreditNoteError, CreditNoteView};
use crate::money::DecimalString;
use crate::openapi::{ReadErrors, WriteErrors};

impl From<CreditNoteError> for ApiError {
    fn from(e: CreditNoteError) -> Self {
        let detail = e.to_string();
        match e {
            CreditNoteError::NotFound(_) => ApiError::new(ErrorCode::NotFound, detail),
            CreditNoteError::Refused(p) => {
                ApiError::field(ErrorCode::InvalidRequest, p.field, p.message)
            }
            CreditNoteError::AlreadyUsed(_) => ApiError::new(ErrorCode::AlreadyUsed, detail),
            CreditNoteError::BeingCollected(_) => ApiError::new(ErrorCode::InvalidState, detail),
            CreditNoteError::IdempotencyConflict => {
                ApiError::new(ErrorCode::IdempotencyConflict, detail)
            }
            CreditNoteError::Invoicing(e) => e.into(),
            CreditNoteError::Ledger(e) => e.into(),
            CreditNoteError::Database(e) => e.into(),
        }
    }
}

const ISSUERS: &[Role] = &[Role::Finance];
const READERS: &[Role] = &[Role::Finance];
/// Lines a request may name.
const MAX_LINES: usize = 200;

/// One line to credit, by the invoice line's charge: part of its quantity, an amount excl.
/// VAT, or (neither) all that remains of it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreditNoteLineRequest {
    #[schema(value_type = String, format = Uuid)]
    pub charge_id: Uuid,
    /// Of the line's quantity, at most what earlier notes left (tickets whole; bought
    /// credits only all of them).
    #[schema(example = "1")]
    pub quantity: Option<DecimalString>,
    /// Excl. VAT, to the cent, at most what earlier notes left of the line's net (not for
    /// tickets and credits bought).
    #[schema(example = "20.00")]
    pub amount: Option<DecimalString>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "reason": "One ticket bought by mistake",
    "lines": [{"charge_id": "0193e0a0-0000-7000-8000-00000000c001", "quantity": "1"}]
}))]
pub struct CreditNoteRequest {
    /// Why the invoice is corrected, printed on the note.
    #[schema(min_length = 1, max_length = 500)]
    pub reason: String,
    /// The lines to credit; absent, all that remains creditable on the invoice.
    #[schema(min_items = 1, max_items = 200)]
    pub lines: Option<Vec<CreditNoteLineRequest>>,
}

fn new_credit_note(body: CreditNoteRequest) -> Result<NewCreditNote, ApiError> {
    let mut errors = Vec::new();
    if body.reason.trim().is_empty() {
        errors.push(FieldError::new(
            "reason",
            "say why the invoice is corrected",
        ));
    }
    let lines = body.lines.map(|lines| {
        if lines.is_empty() || lines.len() > MAX_LINES {
            errors.push(FieldError::new(
                "lines",
                format!("1 to {MAX_LINES} lines, or leave `lines` out to credit everything"),
            ));
        }
        lines
            .into_iter()
            .enumerate()
            .map(|(i, l)| {
                let ask = match (l.quantity, l.amount) {
                    (None, None) => AskSpec::Rest,
                    (Some(q), None) => AskSpec::Quantity(q.0),
                    (None, Some(a)) => AskSpec::Amount(a.0),
                    (Some(_), Some(_)) => {
                        errors.push(FieldError::new(
                            format!("lines[{i}]"),
                            "a quantity or an amount, not both",
                        ));
                        AskSpec::Rest
                    }
                };
                (l.charge_id, ask)
            })
            .collect()
    });
    if !errors.is_empty() {
        return Err(ApiError::fields(ErrorCode::InvalidRequest, errors));
    }
    Ok(NewCreditNote {
        reason: body.reason,
        lines,
    })
}

/// Issue a credit note on an invoice (`A2026-000001`, its own gapless series): chosen lines,
/// by quantity or amount, or all that remains creditable. On what the invoice still asks it
/// reduces the amount due; beyond it (the invoice was paid) it goes to the customer's credit
/// balance (4191). Tickets and credits bought on the invoice are taken back, refused once
/// used. Requires an `Idempotency-Key`.
#[utoipa::path(
    tag = "invoices",
    params(
        ("id" = Uuid, Path, description = "Invoice id"),
        ("Idempotency-Key" = String, Header, description = "Required: a retry with the same key returns the first note")
    ),
    request_body = CreditNoteRequest,
    responses(
        (status = 201, description = "The credit note", body = CreditNoteView),
        (status = 200, description = "Replay of an earlier request with the same key", body = CreditNoteView),
        WriteErrors
    ),
    security(("bearer" = ["admin", "finance"]))
)]
#[post("/v1/invoices/{id}/credit-notes")]
pub async fn post_credit_note(
    state: State,
    auth: Auth,
    req: HttpRequest,
    id: web::Path<Uuid>,
    body: JsonBody<CreditNoteRequest>,
) -> Result<HttpResponse, ApiError> {
    let caller = auth.require(ISSUERS)?;
    let request = new_credit_note(body.parse(caller)?)?;
    let key = IdempotencyKey::new(caller, idempotency_key(&req)?);
    let mut conn = state.pool.get().await?;
    let (view, replayed) = store::create(
        &mut conn,
        id.into_inner(),
        &request,
        &key,
        state.clock.now(),
    )
    .await?;
    Ok(super::created_or_replayed(view, replayed))
}

/// A credit note: its number, invoice, reason, lines, VAT per rate, totals and how it was
/// applied.
#[utoipa::path(
    tag = "invoices",
    params(("id" = Uuid, Path, description = "Credit note id")),
    responses((status = 200, description = "The credit note", body = CreditNoteView), ReadErrors),
    security(("bearer" = ["admin", "finance", "customer"]))
)]
#[get("/v1/credit-notes/{id}")]
pub async fn get_credit_note(
    state: State,
    auth: Auth,
    id: web::Path<Uuid>,
) -> Result<web::Json<CreditNoteView>, ApiError> {
    Ok(web::Json(visible(&state, &auth, id.into_inner()).await?))
}

/// Credit note `id`, for a staff key or the key of its own customer; another customer's
/// note answers as an unknown one.
async fn visible(state: &State, auth: &Auth, id: Uuid) -> Result<CreditNoteView, ApiError> {
    if auth.0.role != Role::Customer {
        auth.require(READERS)?;
    }
    let mut conn = state.pool.get().await?;
    match store::get(&mut conn, id).await? {
        Some(view) if auth.require_customer(READERS, view.customer_id).is_ok() => Ok(view),
        _ => Err(CreditNoteError::NotFound(format!("credit note {id}")).into()),
    }
}

/// The credit note as a Factur-X PDF (A4, PDF/A-3b, French), referring to its invoice,
/// with its EN 16931 CII (type 381) embedded as `factur-x.xml`.
#[utoipa::path(
    tag = "invoices",
    params(("id" = Uuid, Path, description = "Credit note id")),
    responses(
        (status = 200, description = "The PDF", content_type = "application/pdf", body = Vec<u8>,
            headers(("Content-Disposition" = String, description = "inline; filename=\"A2026-000001.pdf\""))),
        ReadErrors
    ),
    security(("bearer" = ["admin", "finance", "customer"]))
)]
#[get("/v1/credit-notes/{id}/pdf")]
pub async fn get_credit_note_pdf(
    state: State,
    auth: Auth,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let note = visible(&state, &auth, id.into_inner()).await?;
    let invoice = super::invoices::visible(&state, &auth, note.invoice_id).await?;
    super::invoices::pdf_response(note.number.clone(), move || {
        crate::invoicing::pdf::credit_note(&note, &invoice)
    })
    .await
}

/// The credit note as an EN 16931 document in UN/CEFACT CII (type 381), referring to its
/// invoice (BG-3), with the invoice's seller, buyer and terms. Checked against the EN 16931
/// rules before it is sent.
#[utoipa::path(
    tag = "invoices",
    params(("id" = Uuid, Path, description = "Credit note id")),
    responses(
        (status = 200, description = "The CII document", content_type = "application/xml", body = String,
            example = json!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><rsm:CrossIndustryInvoice …>…</rsm:CrossIndustryInvoice>")),
        ReadErrors
    ),
    security(("bearer" = ["admin", "finance", "customer"]))
)]
#[get("/v1/credit-notes/{id}/cii")]
pub async fn get_credit_note_cii(
    state: State,
    auth: Auth,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let note = visible(&state, &auth, id.into_inner()).await?;
    let invoice = super::invoices::visible(&state, &auth, note.invoice_id).await?;
    Ok(HttpResponse::Ok()
        .content_type("application/xml")
        .body(crate::invoicing::cii::credit_note(&note, &invoice)?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct CreditNoteListParams {
    /// Only this customer's notes (a customer key always sees only its own).
    pub customer_id: Option<Uuid>,
    /// Only the notes of this invoice.
    pub invoice_id: Option<Uuid>,
    /// The `next_cursor` of the previous page; absent for the first page.
    pub cursor: Option<String>,
    /// Items per page, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
}

/// One page of credit notes.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreditNotePage {
    pub items: Vec<CreditNoteView>,
    pub next_cursor: Option<String>,
}

/// Credit notes, oldest first: of one customer and of one invoice when asked.
#[utoipa::path(
    tag = "invoices",
    params(CreditNoteListParams),
    responses((status = 200, description = "A page of credit notes", body = CreditNotePage), ReadErrors),
    security(("bearer" = ["admin", "finance", "customer"]))
)]
#[get("/v1/credit-notes")]
pub async fn list_credit_notes(
    state: State,
    auth: Auth,
    q: Query<CreditNoteListParams>,
) -> Result<web::Json<CreditNotePage>, ApiError> {
    let customer = auth.listing_customer(READERS, q.customer_id)?;
    let (after, limit) = page("credit-notes", q.cursor.as_deref(), q.limit)?;
    let mut conn = state.pool.get().await?;
    let items = store::list(&mut conn, customer, q.invoice_id, after, limit).await?;
    let next_cursor = next_cursor("credit-notes", &items, limit, |i| i.id.to_string());
    Ok(web::Json(CreditNotePage { items, next_cursor }))
}
