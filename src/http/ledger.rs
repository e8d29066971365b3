//! `/v1/ledger/*`: accounts and balances, postings, transactions, manual adjustments,
//! reversals and the consistency check. Finance and admin only.

use std::collections::HashMap;

use actix_web::{get, post, web, HttpRequest, HttpResponse};
use chrono::{DateTime, NaiveDate, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{
    decode_cursor, idempotency_key, next_cursor, page, page_limit, Auth, JsonBody, Query, State,
};
use crate::auth::Role;
use crate::error::{ApiError, ErrorCode, FieldError};
use crate::ledger::{
    self, store, AccountId, AccountView, NewTransaction, Posting, PostingView, Side, TransactionId,
    TransactionView, VerifyReport,
};
use crate::money::{Amount, DecimalString, Unit};
use crate::openapi::{ReadErrors, WriteErrors};
use crate::schema::accounts;

const STAFF: &[Role] = &[Role::Finance];

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AccountListParams {
    /// Only the accounts of this customer.
    pub customer_id: Option<Uuid>,
    /// The `next_cursor` of the previous page; absent for the first page.
    pub cursor: Option<String>,
    /// Items per page, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
}

/// One page of accounts.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountPage {
    pub items: Vec<AccountView>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// List ledger accounts with their balances, in id order.
#[utoipa::path(
    tag = "ledger",
    params(AccountListParams),
    responses((status = 200, description = "A page of accounts", body = AccountPage), ReadErrors),
    security(("bearer" = ["admin", "finance"]))
)]
#[get("/v1/ledger/accounts")]
pub async fn list_accounts(
    state: State,
    auth: Auth,
    q: Query<AccountListParams>,
) -> Result<web::Json<AccountPage>, ApiError> {
    auth.require(STAFF)?;
    let (after, limit) = page("accounts", q.cursor.as_deref(), q.limit)?;
    let mut conn = state.pool.get().await?;
    let items = store::list_accounts(&mut conn, q.customer_id, after.map(AccountId), limit).await?;
    let next_cursor = next_cursor("accounts", &items, limit, |a| a.id.to_string());
    Ok(web::Json(AccountPage { items, next_cursor }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AccountParams {
    /// Compute the balance as it stood at this instant (RFC 3339, 2000-01-01 to
    /// 2100-12-31), from postings effective by then and holds open at that instant.
    #[serde(default, deserialize_with = "crate::input::opt_instant")]
    pub as_of: Option<DateTime<Utc>>,
}

/// An account with its balance, now or as of a past instant.
#[utoipa::path(
    tag = "ledger",
    params(("id" = Uuid, Path, description = "Account id"), AccountParams),
    responses((status = 200, description = "The account", body = AccountView), ReadErrors),
    security(("bearer" = ["admin", "finance"]))
)]
#[get("/v1/ledger/accounts/{id}")]
pub async fn get_account(
    state: State,
    auth: Auth,
    id: web::Path<Uuid>,
    q: Query<AccountParams>,
) -> Result<web::Json<AccountView>, ApiError> {
    auth.require(STAFF)?;
    let id = AccountId(id.into_inner());
    let mut conn = state.pool.get().await?;
    let mut account = store::get_account(&mut conn, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("account {id}")))?;
    if let Some(at) = q.as_of {
        account.balance = store::balance_as_of(&mut conn, id, at)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("account {id}")))?;
    }
    Ok(web::Json(account))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PostingListParams {
    /// The `next_cursor` of the previous page; absent for the first page.
    pub cursor: Option<String>,
    /// Items per page, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
}

/// One page of postings.
#[derive(Debug, Serialize, ToSchema)]
pub struct PostingPage {
    pub items: Vec<PostingView>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// The postings of an account, oldest first.
#[utoipa::path(
    tag = "ledger",
    params(("id" = Uuid, Path, description = "Account id"), PostingListParams),
    responses((status = 200, description = "A page of postings", body = PostingPage), ReadErrors),
    security(("bearer" = ["admin", "finance"]))
)]
#[get("/v1/ledger/accounts/{id}/postings")]
pub async fn list_account_postings(
    state: State,
    auth: Auth,
    id: web::Path<Uuid>,
    q: Query<PostingListParams>,
) -> Result<web::Json<PostingPage>, ApiError> {
    auth.require(STAFF)?;
    let limit = page_limit(q.limit)?;
    let after = q
        .cursor
        .as_deref()
        .map(|c| decode_cursor::<i64>("postings", c))
        .transpose()?;
    let id = AccountId(id.into_inner());
    let mut conn = state.pool.get().await?;
    if store::get_account(&mut conn, id).await?.is_none() {
        return Err(ApiError::not_found(format!("account {id}")));
    }
    let items = store::account_postings(&mut conn, id, after, limit).await?;
    let next_cursor = next_cursor("postings", &items, limit, |p| p.id.to_string());
    Ok(web::Json(PostingPage { items, next_cursor }))
}

/// One line of a manual adjustment; the unit is the account's.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PostingRequest {
    #[schema(value_type = String, format = Uuid)]
    pub account_id: Uuid,
    pub side: Side,
    /// A positive amount within the account unit's decimals.
    pub amount: DecimalString,
}

/// A manual adjustment: a balanced set of postings, explained.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "description": "Bank fee for October",
    "postings": [
        {"account_id": "00000000-0000-4000-8000-000000000471", "side": "debit", "amount": "12.50"},
        {"account_id": "00000000-0000-4000-8000-000000000512", "side": "credit", "amount": "12.50"}
    ]
}))]
pub struct ManualTransactionRequest {
    /// Why the adjustment is made (kept with the transaction).
    #[schema(min_length = 1, max_length = 500)]
    pub description: String,
    /// When the movement takes effect for balances as of a date (2000-01-01 to
    /// 2100-12-31); defaults to now (when it is first posted: a replay keeps the first
    /// one's).
    #[serde(default, deserialize_with = "crate::input::opt_instant")]
    pub effective_at: Option<DateTime<Utc>>,
    /// Free-form; its text follows the rules of every string (no control characters, at
    /// most 500 characters per string or name).
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
    /// Two or more postings; per unit, debits must equal credits.
    pub postings: Vec<PostingRequest>,
}

/// Turns the request into a balanced transaction, naming each offending field.
async fn build_manual(
    conn: &mut diesel_async::AsyncPgConnection,
    key: String,
    req: ManualTransactionRequest,
) -> Result<NewTransaction, ApiError> {
    let mut errors = Vec::new();
    let description = req.description.trim().to_string();
    if description.is_empty() || description.chars().count() > 500 {
        errors.push(FieldError::new("description", "1 to 500 characters"));
    }
    let ids: Vec<Uuid> = req.postings.iter().map(|p| p.account_id).collect();
    let units: HashMap<Uuid, String> = accounts::table
        .filter(accounts::id.eq_any(&ids))
        .select((accounts::id, accounts::unit))
        .load::<(Uuid, String)>(conn)
        .await?
        .into_iter()
        .collect();
    let mut postings = Vec::new();
    let mut unknown = false;
    for (i, p) in req.postings.iter().enumerate() {
        let Some(unit) = units
            .get(&p.account_id)
            .and_then(|u| u.parse::<Unit>().ok())
        else {
            unknown = true;
            errors.push(FieldError::new(
                format!("postings[{i}].account_id"),
                "no such account",
            ));
            continue;
        };
        match Amount::new(p.amount.0, unit) {
            Ok(amount) => postings.push(Posting {
                account: AccountId(p.account_id),
                side: p.side,
                amount,
            }),
            Err(e) => errors.push(FieldError::new(
                format!("postings[{i}].amount"),
                e.to_string(),
            )),
        }
    }
    if !errors.is_empty() {
        let code = if unknown {
            ErrorCode::UnknownAccount
        } else {
            ErrorCode::InvalidRequest
        };
        return Err(ApiError::fields(code, errors));
    }
    let tx = NewTransaction::new(format!("manual:{key}"), "manual_adjustment", postings)?
        .description(description)
        .metadata(req.metadata.unwrap_or_default());
    Ok(match req.effective_at {
        Some(at) => tx.effective_at(at),
        None => tx,
    })
}

/// Post a manual adjustment. Requires an `Idempotency-Key`: a retry with the same key and
/// body returns the first transaction (200, `Idempotent-Replayed: true`); the same key with
/// another body is refused (409).
#[utoipa::path(
    tag = "ledger",
    params(("Idempotency-Key" = String, Header, description = "Unique per intended adjustment, 1 to 200 characters")),
    request_body = ManualTransactionRequest,
    responses(
        (status = 201, description = "Posted", body = TransactionView),
        (status = 200, description = "Replay of an earlier request with the same key", body = TransactionView),
        WriteErrors
    ),
    security(("bearer" = ["admin", "finance"]))
)]
#[post("/v1/ledger/transactions")]
pub async fn post_transaction(
    state: State,
    auth: Auth,
    req: HttpRequest,
    body: JsonBody<ManualTransactionRequest>,
) -> Result<HttpResponse, ApiError> {
    let request = body.parse(auth.require(STAFF)?)?;
    let key = idempotency_key(&req)?;
    let mut conn = state.pool.get().await?;
    let tx = build_manual(&mut conn, key, request)
        .await?
        .posted_at(state.clock.now());
    let posted = store::post(&mut conn, &tx).await?;
    let view = store::get_transaction(&mut conn, posted.id)
        .await?
        .ok_or_else(|| {
            ApiError::internal(anyhow::anyhow!(
                "posted transaction {} not found",
                posted.id
            ))
        })?;
    Ok(super::created_or_replayed(view, posted.replayed))
}

/// A transaction with its postings.
#[utoipa::path(
    tag = "ledger",
    params(("id" = Uuid, Path, description = "Transaction id")),
    responses((status = 200, description = "The transaction", body = TransactionView), ReadErrors),
    security(("bearer" = ["admin", "finance"]))
)]
#[get("/v1/ledger/transactions/{id}")]
pub async fn get_transaction(
    state: State,
    auth: Auth,
    id: web::Path<Uuid>,
) -> Result<web::Json<TransactionView>, ApiError> {
    auth.require(STAFF)?;
    let id = TransactionId(id.into_inner());
    let mut conn = state.pool.get().await?;
    store::get_transaction(&mut conn, id)
        .await?
        .map(web::Json)
        .ok_or_else(|| ApiError::not_found(format!("transaction {id}")))
}

/// Optional body of a reversal.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReverseRequest {
    /// Why the transaction is reversed.
    #[schema(max_length = 500)]
    pub description: Option<String>,
}

/// Reverse a transaction: post its mirror image, referencing it. A transaction is reversed
/// at most once; asking again returns that reversal (200).
#[utoipa::path(
    tag = "ledger",
    params(("id" = Uuid, Path, description = "Transaction to reverse")),
    request_body(content = Option<ReverseRequest>, description = "Optional: no body, or `null`, reverses without a description"),
    responses(
        (status = 201, description = "The reversing transaction", body = TransactionView),
        (status = 200, description = "The transaction was already reversed: its reversal", body = TransactionView),
        WriteErrors
    ),
    security(("bearer" = ["admin", "finance"]))
)]
#[post("/v1/ledger/transactions/{id}/reverse")]
pub async fn reverse_transaction(
    state: State,
    auth: Auth,
    id: web::Path<Uuid>,
    body: JsonBody<ReverseRequest>,
) -> Result<HttpResponse, ApiError> {
    let request = body.parse_or_default(auth.require(STAFF)?)?;
    let id = TransactionId(id.into_inner());
    let mut conn = state.pool.get().await?;
    let posted = store::reverse(&mut conn, id, request.description, state.clock.now()).await?;
    let view = store::get_transaction(&mut conn, posted.id)
        .await?
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("reversal {} not found", posted.id)))?;
    Ok(super::created_or_replayed(view, posted.replayed))
}

/// Recompute every balance from the postings and pending holds, and every transaction's
/// balance per unit. Empty lists mean the ledger is consistent.
#[utoipa::path(
    tag = "ledger",
    responses((status = 200, description = "The report", body = VerifyReport), ReadErrors),
    security(("bearer" = ["admin", "finance"]))
)]
#[get("/v1/ledger/verify")]
pub async fn get_ledger_verify(
    state: State,
    auth: Auth,
) -> Result<web::Json<ledger::VerifyReport>, ApiError> {
    auth.require(STAFF)?;
    let mut conn = state.pool.get().await?;
    Ok(web::Json(store::verify(&mut conn).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct FecParams {
    /// The first day of the period (Paris date, YYYY-MM-DD), usually the fiscal year's.
    #[serde(deserialize_with = "crate::input::date")]
    #[param(value_type = String, format = Date, example = "2026-01-01")]
    pub from: NaiveDate,
    /// The last day of the period, included.
    #[serde(deserialize_with = "crate::input::date")]
    #[param(value_type = String, format = Date, example = "2026-12-31")]
    pub to: NaiveDate,
}

/// The Fichier des Écritures Comptables of a period: every EUR posting of the transactions
/// effective from `from` to `to` (Paris dates), one line each, with the 18 statutory
/// columns tab-separated, in ISO 8859-15. Entries are numbered from 1 without gaps in date
/// order, in the journals VE (invoices, credit notes), BQ (payments, refunds) and OD (the
/// rest); each entry balances, so the file does. A customer's 411 and 4191 carry it as
/// auxiliary account (`CompAuxNum`: its id, `CompAuxLib`: its name). Streamed from one
/// snapshot of the books.
#[utoipa::path(
    tag = "ledger",
    params(FecParams),
    responses(
        (status = 200, description = "The FEC, named `<seller SIREN>FEC<to, YYYYMMDD>.txt`",
            content_type = "text/tab-separated-values; charset=ISO-8859-15", body = String,
            headers(("Content-Disposition" = String, description = "attachment; filename=\"123456789FEC20261231.txt\"")),
            example = json!("JournalCode\tJournalLib\tEcritureNum\tEcritureDate\tCompteNum\tCompteLib\tCompAuxNum\tCompAuxLib\tPieceRef\tPieceDate\tEcritureLib\tDebit\tCredit\tEcritureLet\tDateLet\tValidDate\tMontantdevise\tIdevise\nVE\tVentes\t1\t20261120\t411\tClients\t0193e0a000007000800000000000c001\tAtelier Démo SARL\tF2026-000001\t20261120\tinvoice F2026-000001\t120,00\t0,00\t\t\t20261120\t\t\n")),
        ReadErrors
    ),
    security(("bearer" = ["admin", "finance"]))
)]
#[get("/v1/ledger/fec")]
pub async fn get_ledger_fec(
    state: State,
    auth: Auth,
    q: Query<FecParams>,
) -> Result<HttpResponse, ApiError> {
    auth.require(STAFF)?;
    if q.to < q.from {
        return Err(ApiError::field(
            ErrorCode::InvalidParameter,
            "to",
            format!("not before from ({})", q.from),
        ));
    }
    // off the pool: the export's snapshot lives as long as its reader, and goes with it
    let conn = deadpool::managed::Object::take(state.pool.get().await?);
    let export = store::fec::open(conn, q.from, q.to).await?;
    let filename = format!(
        "{}FEC{}.txt",
        crate::invoicing::legal::seller().party.siren,
        ledger::fec::date(q.to)
    );
    let body = futures_util::StreamExt::map(export.into_stream(), |chunk| {
        chunk.map(web::Bytes::from).map_err(|e| {
            tracing::error!(error = %e, "the FEC export stopped");
            e
        })
    });
    Ok(HttpResponse::Ok()
        .content_type("text/tab-separated-values; charset=ISO-8859-15")
        .insert_header((
            "Content-Disposition",
            format!("attachment; filename=\"{filename}\""),
        ))
        .streaming(body))
}
