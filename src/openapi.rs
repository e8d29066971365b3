//! The contract, generated from the handlers registered in `http::register`.

use std::collections::BTreeMap;

use actix_web::App;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};
use utoipa_actix_web::AppExt;

use crate::error::{ErrorCode, FieldError, Problem};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "grandlivre",
        description = "Billing and credits ledger. Every movement is a balanced double-entry \
            transaction. Amounts are decimal strings. Errors are RFC 9457 problem documents \
            (`application/problem+json`) with a stable `type`; a 422 names every offending \
            field by its JSON path. Dates are `YYYY-MM-DD` and instants RFC 3339 \
            (`2026-11-20T09:30:00+01:00`), from 2000-01-01 to 2100-12-31. Text holds no \
            control character and at most its `maxLength` (500 where none is given), in \
            characters. Authenticate with \
            `Authorization: Bearer <API key>`; the roles allowed on each operation are listed \
            in its security requirement.",
        license(name = "Apache-2.0")
    ),
    components(schemas(Problem, FieldError, ErrorCode, crate::jobs::Job)),
    modifiers(&BearerAuth),
    tags(
        (name = "ledger", description = "Accounts, balances, transactions, holds"),
        (name = "customers", description = "Customers and their charges"),
        (name = "catalog", description = "Offers, entitlements and dated prices"),
        (name = "subscriptions", description = "Commitments, renewals, cancellation, early termination"),
        (name = "authorizations", description = "The ticketing hot path: decisions, holds, capture, interventions"),
        (name = "invoices", description = "Invoices issued from charges and their credit notes, each series with gapless numbers"),
        (name = "payments", description = "Payments received and allocated to invoices, credit balances refunded"),
        (name = "sepa", description = "SEPA direct debit: mandates and their amendments, collection batches and their pain.008 files"),
        (name = "wallets", description = "Tickets, service-credit lots, Assistance+ appointments, balances"),
        (name = "api-keys", description = "API keys: create (the secret shown once), list, revoke"),
        (name = "operations", description = "Health, readiness, metrics, contract")
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut scheme = Http::new(HttpAuthScheme::Bearer);
        scheme.description =
            Some("An API key created with `grandlivre apikey create --role ROLE` or `POST /v1/api-keys`.".into());
        components.add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

/// The contract of this build, generated once per process: the served document, the
/// request checks of `input` and the `Allow` header of `http` all read this one.
pub fn document() -> &'static utoipa::openapi::OpenApi {
    static DOCUMENT: std::sync::OnceLock<utoipa::openapi::OpenApi> = std::sync::OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let (_, doc) = App::new()
            .into_utoipa_app()
            .openapi(ApiDoc::openapi())
            .configure(crate::http::register)
            .split_for_parts();
        doc
    })
}

/// The contract as the pretty JSON that is checked in at `openapi/openapi.json`.
pub fn document_json() -> String {
    let mut json = document().to_pretty_json().unwrap_or_default();
    json.push('\n');
    json
}

fn problems(codes: &[u16]) -> BTreeMap<String, RefOr<utoipa::openapi::response::Response>> {
    codes
        .iter()
        .map(|&code| {
            let description = match code {
                400 => "Malformed request: bad JSON, parameter, cursor or missing Idempotency-Key",
                401 => "Missing, unknown or revoked API key",
                403 => "The key's role may not do this",
                404 => "Not found (or not visible to this key)",
                409 => {
                    "Conflict: idempotency key reused with another body, state already changed, or the customer is closed"
                }
                413 => "Body too large",
                415 => "Body is not JSON",
                422 => "Valid JSON that breaks a rule: field errors, imbalance, insufficient funds",
                503 => "Temporarily unavailable; retry after the Retry-After delay",
                _ => "Internal error, logged with the request id",
            };
            let content = ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build();
            let response = ResponseBuilder::new()
                .description(description)
                .content("application/problem+json", content)
                .build();
            (code.to_string(), RefOr::T(response))
        })
        .collect()
}

/// The errors any authenticated read may answer.
pub struct ReadErrors;

impl utoipa::IntoResponses for ReadErrors {
    fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::response::Response>> {
        problems(&[400, 401, 403, 404, 500, 503])
    }
}

/// The errors any authenticated write may answer.
pub struct WriteErrors;

impl utoipa::IntoResponses for WriteErrors {
    fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::response::Response>> {
        problems(&[400, 401, 403, 404, 409, 413, 415, 422, 500, 503])
    }
}
