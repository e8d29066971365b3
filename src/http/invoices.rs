//! `/v1/invoices`: issued invoices, read one or by page; a customer key sees its own only.

use actix_web::{get, web, HttpResponse};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{next_cursor, page, Auth, Query, State};
use crate::auth::Role;
use crate::error::{ApiError, ErrorCode};
use crate::invoicing::cii::{self, CiiError};
use crate::invoicing::pdf::{self, PdfError};
use crate::invoicing::{store, InvoiceStatus, InvoiceView, InvoicingError};
use crate::openapi::ReadErrors;

impl From<InvoicingError> for ApiError {
    fn from(e: InvoicingError) -> Self {
        let detail = e.to_string();
        match e {
            InvoicingError::NotFound(_) | InvoicingError::UnknownCustomer(_) => {
                ApiError::new(ErrorCode::NotFound, detail)
            }
            InvoicingError::BeyondDue { .. } => {
                ApiError::field(ErrorCode::InvalidRequest, "amount", detail)
            }
            InvoicingError::CreditBalance(e) => (*e).into(),
            InvoicingError::Database(e) => e.into(),
            InvoicingError::Ledger(e) => e.into(),
            InvoicingError::Amounts(_) | InvoicingError::Number(_) | InvoicingError::Invalid(_) => {
                ApiError::internal(anyhow::anyhow!(detail))
            }
        }
    }
}

const READERS: &[Role] = &[Role::Finance];

/// An invoice: its number, dates, lines, VAT per rate, totals, amount due, and its legal
/// mentions as issued (seller, buyer, terms).
#[utoipa::path(
    tag = "invoices",
    params(("id" = Uuid, Path, description = "Invoice id")),
    responses((status = 200, description = "The invoice", body = InvoiceView), ReadErrors),
    security(("bearer" = ["admin", "finance", "customer"]))
)]
#[get("/v1/invoices/{id}")]
pub async fn get_invoice(
    state: State,
    auth: Auth,
    id: web::Path<Uuid>,
) -> Result<web::Json<InvoiceView>, ApiError> {
    Ok(web::Json(visible(&state, &auth, id.into_inner()).await?))
}

/// Invoice `id`, for a staff key or the key of its own customer; another customer's
/// invoice answers as an unknown one.
pub(super) async fn visible(state: &State, auth: &Auth, id: Uuid) -> Result<InvoiceView, ApiError> {
    if auth.0.role != Role::Customer {
        auth.require(READERS)?;
    }
    let mut conn = state.pool.get().await?;
    match store::get(&mut conn, id).await? {
        Some(view) if auth.require_customer(READERS, view.customer_id).is_ok() => Ok(view),
        _ => Err(InvoicingError::NotFound(id).into()),
    }
}

impl From<PdfError> for ApiError {
    fn from(e: PdfError) -> Self {
        match e {
            PdfError::Cii(e) => e.into(),
            PdfError::Render(_) | PdfError::Embed(_) => ApiError::internal(anyhow::Error::new(e)),
        }
    }
}

/// Renders a document off the HTTP workers (typst's layout is CPU work) and answers it as
/// a PDF named after its number.
pub(super) async fn pdf_response(
    number: String,
    render: impl FnOnce() -> Result<Vec<u8>, PdfError> + Send + 'static,
) -> Result<HttpResponse, ApiError> {
    let pdf = web::block(render)
        .await
        .map_err(|e| ApiError::internal(anyhow::anyhow!("the PDF renderer stopped: {e}")))??;
    Ok(HttpResponse::Ok()
        .content_type("application/pdf")
        .insert_header((
            "Content-Disposition",
            format!("inline; filename=\"{number}.pdf\""),
        ))
        .body(pdf))
}

/// The invoice as a Factur-X PDF: an A4 PDF/A-3b in French (seller and buyer, lines with
/// their service periods, VAT per rate, totals, amount due, due date and the legal
/// mentions), carrying its EN 16931 CII (the same as `/cii`) as the associated file
/// `factur-x.xml`, declared in its XMP metadata (Factur-X, EN 16931 profile).
#[utoipa::path(
    tag = "invoices",
    params(("id" = Uuid, Path, description = "Invoice id")),
    responses(
        (status = 200, description = "The PDF", content_type = "application/pdf", body = Vec<u8>,
            headers(("Content-Disposition" = String, description = "inline; filename=\"F2026-000001.pdf\""))),
        ReadErrors
    ),
    security(("bearer" = ["admin", "finance", "customer"]))
)]
#[get("/v1/invoices/{id}/pdf")]
pub async fn get_invoice_pdf(
    state: State,
    auth: Auth,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let view = visible(&state, &auth, id.into_inner()).await?;
    pdf_response(view.number.clone(), move || pdf::invoice(&view)).await
}

impl From<CiiError> for ApiError {
    fn from(e: CiiError) -> Self {
        match e {
            CiiError::NoMentions(_) => ApiError::new(ErrorCode::InvalidState, e.to_string()),
            CiiError::Value(_) | CiiError::Rules { .. } => {
                ApiError::internal(anyhow::Error::new(e))
            }
        }
    }
}

/// The invoice as an EN 16931 document in UN/CEFACT CII (the `factur-x.xml` of its
/// Factur-X PDF): seller and buyer with their SIREN (scheme 0002) and VAT numbers, lines
/// with their service periods, VAT per rate, totals, due date, the French mandatory
/// mentions as notes (PMD, PMT, AAB) and the operation category (BT-23 `S1`, services).
/// Checked against the EN 16931 rules before it is sent. 409 `invalid_state` for an
/// invoice issued before invoices froze their legal mentions.
#[utoipa::path(
    tag = "invoices",
    params(("id" = Uuid, Path, description = "Invoice id")),
    responses(
        (status = 200, description = "The CII document", content_type = "application/xml", body = String,
            example = json!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><rsm:CrossIndustryInvoice …>…</rsm:CrossIndustryInvoice>")),
        ReadErrors
    ),
    security(("bearer" = ["admin", "finance", "customer"]))
)]
#[get("/v1/invoices/{id}/cii")]
pub async fn get_invoice_cii(
    state: State,
    auth: Auth,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let view = visible(&state, &auth, id.into_inner()).await?;
    Ok(HttpResponse::Ok()
        .content_type("application/xml")
        .body(cii::invoice(&view)?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct InvoiceListParams {
    /// Only this customer's invoices (a customer key always sees only its own).
    pub customer_id: Option<Uuid>,
    /// Only invoices in this status.
    pub status: Option<InvoiceStatus>,
    /// Only invoices issued on or after this date (Europe/Paris, `YYYY-MM-DD`).
    #[param(value_type = Option<String>, format = Date)]
    #[serde(default, deserialize_with = "crate::input::opt_date")]
    pub issued_from: Option<NaiveDate>,
    /// Only invoices issued on or before this date (Europe/Paris, `YYYY-MM-DD`), not
    /// before `issued_from`.
    #[param(value_type = Option<String>, format = Date)]
    #[serde(default, deserialize_with = "crate::input::opt_date")]
    pub issued_to: Option<NaiveDate>,
    /// The `next_cursor` of the previous page; absent for the first page.
    pub cursor: Option<String>,
    /// Items per page, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
}

/// One page of invoices.
#[derive(Debug, Serialize, ToSchema)]
pub struct InvoicePage {
    pub items: Vec<InvoiceView>,
    pub next_cursor: Option<String>,
}

/// Invoices, oldest first: of one customer, in one status, issued within a period (Paris
/// dates, both ends included) when asked.
#[utoipa::path(
    tag = "invoices",
    params(InvoiceListParams),
    responses((status = 200, description = "A page of invoices", body = InvoicePage), ReadErrors),
    security(("bearer" = ["admin", "finance", "customer"]))
)]
#[get("/v1/invoices")]
pub async fn list_invoices(
    state: State,
    auth: Auth,
    q: Query<InvoiceListParams>,
) -> Result<web::Json<InvoicePage>, ApiError> {
    let customer = auth.listing_customer(READERS, q.customer_id)?;
    if let (Some(from), Some(to)) = (q.issued_from, q.issued_to) {
        if to < from {
            return Err(ApiError::field(
                ErrorCode::InvalidParameter,
                "issued_to",
                format!("not before issued_from ({from})"),
            ));
        }
    }
    let (after, limit) = page("invoices", q.cursor.as_deref(), q.limit)?;
    let mut conn = state.pool.get().await?;
    let filter = store::InvoiceFilter {
        customer,
        status: q.status,
        issued_from: q.issued_from,
        issued_to: q.issued_to,
    };
    let items = store::list(&mut conn, filter, after, limit).await?;
    let next_cursor = next_cursor("invoices", &items, limit, |i| i.id.to_string());
    Ok(web::Json(InvoicePage { items, next_cursor }))
}
