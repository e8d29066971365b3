//! The HTTP layer only translates: parse, authorize, call the domain, map errors.

pub mod authorizations;
pub mod customers;
pub mod health;
pub mod interventions;
pub mod jobs;
pub mod ledger;
mod observe;
pub mod offers;
pub mod subscriptions;
pub mod test_clock;
pub mod wallets;

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::error::PayloadError;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest};
use base64::Engine;
use serde::de::DeserializeOwned;
use uuid::Uuid;

pub use observe::{observe, Metrics};

use crate::auth::{KeyCache, Principal, Role};
use crate::clock::ServiceClock;
use crate::db::DbPool;
use crate::error::{ApiError, ErrorCode, FieldError};

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// What every handler may use.
pub struct AppState {
    pub pool: DbPool,
    /// Every "now" of a request: the system's, or the test clock's (`--test-clock`).
    pub clock: ServiceClock,
    pub keys: KeyCache,
    pub metrics: Metrics,
}

pub type State = web::Data<AppState>;

/// Registers every documented route; the OpenAPI contract is collected from these.
pub fn register(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(health::get_healthz)
        .service(health::get_readyz)
        .service(health::get_metrics)
        .service(health::get_openapi)
        .service(ledger::list_accounts)
        .service(ledger::get_account)
        .service(ledger::list_account_postings)
        .service(ledger::post_transaction)
        .service(ledger::get_transaction)
        .service(ledger::reverse_transaction)
        .service(ledger::get_ledger_verify)
        .service(customers::post_customer)
        .service(customers::list_customers)
        .service(customers::get_customer)
        .service(customers::patch_customer)
        .service(customers::list_customer_charges)
        .service(offers::list_offers)
        .service(offers::get_offer)
        .service(offers::post_offer)
        .service(offers::list_offer_prices)
        .service(offers::post_offer_price)
        .service(subscriptions::post_subscription)
        .service(subscriptions::list_subscriptions)
        .service(subscriptions::get_subscription)
        .service(subscriptions::cancel_subscription)
        .service(subscriptions::terminate_subscription)
        .service(wallets::get_customer_balances)
        .service(wallets::list_customer_credit_lots)
        .service(wallets::post_ticket_purchase)
        .service(wallets::post_credit_purchase)
        .service(authorizations::post_authorization)
        .service(authorizations::get_authorization)
        .service(authorizations::capture_authorization)
        .service(authorizations::void_authorization)
        .service(interventions::list_interventions)
        .service(interventions::get_intervention)
        .service(interventions::dispute_intervention)
        .service(interventions::resolve_intervention)
        .service(jobs::run_job)
        .service(test_clock::get_test_clock)
        .service(test_clock::put_test_clock);
}

/// Error handlers for actix's own extractors, so they answer problem+json too.
pub fn extractor_configs(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::PathConfig::default().error_handler(|e, _| {
        ApiError::field(ErrorCode::InvalidParameter, "path", e.to_string()).into()
    }))
    .app_data(web::QueryConfig::default().error_handler(|e, _| {
        let message = e.to_string();
        let field = message
            .split('`')
            .nth(1)
            .filter(|_| message.contains("field"))
            .unwrap_or("query")
            .to_string();
        ApiError::field(ErrorCode::InvalidParameter, field, message).into()
    }))
    .app_data(web::PayloadConfig::new(MAX_BODY_BYTES));
}

/// The answer to a path that no route matches.
pub async fn no_route(req: HttpRequest) -> Result<actix_web::HttpResponse, ApiError> {
    let allowed = allowed_methods(req.path());
    if allowed.is_empty() {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            format!("no resource at {} {}", req.method(), req.path()),
        ));
    }
    // a known path asked with a method it does not take (RFC 9110, 15.5.6)
    let allow = allowed.join(", ");
    let mut answer = actix_web::ResponseError::error_response(&ApiError::new(
        ErrorCode::MethodNotAllowed,
        format!("{} takes {allow}, not {}", req.path(), req.method()),
    ));
    if let Ok(value) = header::HeaderValue::from_str(&allow) {
        answer.headers_mut().insert(header::ALLOW, value);
    }
    Ok(answer)
}

/// The methods the contract documents at `path` (empty: no such path). Path parameters
/// (`{id}`) match any one non-empty segment.
fn allowed_methods(path: &str) -> Vec<&'static str> {
    type Route = (Vec<String>, Vec<&'static str>);
    static ROUTES: std::sync::OnceLock<Vec<Route>> = std::sync::OnceLock::new();
    let routes = ROUTES.get_or_init(|| {
        crate::openapi::document()
            .paths
            .paths
            .iter()
            .map(|(template, item)| {
                let methods = [
                    ("GET", item.get.is_some()),
                    ("POST", item.post.is_some()),
                    ("PUT", item.put.is_some()),
                    ("PATCH", item.patch.is_some()),
                    ("DELETE", item.delete.is_some()),
                ];
                (
                    template.split('/').map(str::to_string).collect(),
                    methods.iter().filter(|m| m.1).map(|m| m.0).collect(),
                )
            })
            .collect()
    });
    let segments: Vec<&str> = path.split('/').collect();
    let mut allowed: Vec<&'static str> = routes
        .iter()
        .filter(|(template, _)| {
            template.len() == segments.len()
                && template.iter().zip(&segments).all(|(t, s)| {
                    t == s || (t.starts_with('{') && t.ends_with('}') && !s.is_empty())
                })
        })
        .flat_map(|(_, methods)| methods.iter().copied())
        .collect();
    allowed.sort_unstable();
    allowed.dedup();
    allowed
}

/// The caller, authenticated by its bearer API key.
pub struct Auth(pub Principal);

impl Auth {
    /// Refuses (403) a principal whose role is not among `roles`; admin may do everything.
    pub fn require(&self, roles: &[Role]) -> Result<&Principal, ApiError> {
        if self.0.role == Role::Admin || roles.contains(&self.0.role) {
            Ok(&self.0)
        } else {
            Err(ApiError::new(
                ErrorCode::Forbidden,
                format!("a {} key may not do this", self.0.role.as_str()),
            ))
        }
    }
}

impl Auth {
    /// For a resource of `customer`: the staff roles in `roles` pass (admin always), a
    /// customer key passes for its own customer only. Another customer's resource answers
    /// 404, as if it did not exist, so that keys cannot probe for other customers.
    pub fn require_customer(&self, roles: &[Role], customer: Uuid) -> Result<&Principal, ApiError> {
        match self.0.role {
            Role::Customer if self.0.customer_id == Some(customer) => Ok(&self.0),
            Role::Customer => Err(ApiError::not_found(format!("customer {customer}"))),
            _ => self.require(roles),
        }
    }
}

impl FromRequest for Auth {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = req.app_data::<State>().cloned();
        let token = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_token)
            .map(str::to_string);
        Box::pin(async move {
            let state = state
                .ok_or_else(|| ApiError::internal(anyhow::anyhow!("application state missing")))?;
            let token = token.filter(|t| !t.is_empty()).ok_or_else(|| {
                ApiError::new(
                    ErrorCode::Unauthorized,
                    "send an API key as `Authorization: Bearer <key>`",
                )
            })?;
            if let Some(p) = state.keys.cached(&token) {
                return Ok(Auth(p));
            }
            let mut conn = state.pool.get().await?;
            match state.keys.resolve(&mut conn, &token).await? {
                Some(p) => Ok(Auth(p)),
                None => Err(ApiError::new(
                    ErrorCode::Unauthorized,
                    "the API key is unknown or revoked",
                )),
            }
        })
    }
}

/// The token of an `Authorization: Bearer <token>` value; the scheme is
/// case-insensitive (RFC 9110, 11.1).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// The raw body, at most [`MAX_BODY_BYTES`].
pub struct RawBody(pub web::Bytes);

impl FromRequest for RawBody {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let bytes = web::Bytes::from_request(req, payload);
        Box::pin(async move {
            bytes
                .await
                .map(RawBody)
                .map_err(|e| match e.as_error::<PayloadError>() {
                    Some(PayloadError::Overflow) => ApiError::new(
                        ErrorCode::PayloadTooLarge,
                        format!("bodies are limited to {MAX_BODY_BYTES} bytes"),
                    ),
                    _ => ApiError::new(
                        ErrorCode::MalformedJson,
                        format!("the body could not be read: {e}"),
                    ),
                })
        })
    }
}

/// A JSON body deserialized strictly, with the path of the offending field on error.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for JsonBody<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let json_type = is_json(req);
        let body = RawBody::from_request(req, payload);
        Box::pin(async move {
            let RawBody(bytes) = body.await?;
            if !json_type {
                return Err(ApiError::new(
                    ErrorCode::UnsupportedMediaType,
                    "send `Content-Type: application/json`",
                ));
            }
            parse_json(&bytes).map(JsonBody)
        })
    }
}

fn is_json(req: &HttpRequest) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase())
        .is_some_and(|m| m == "application/json" || m.ends_with("+json"))
}

/// Deserializes `bytes`, naming the offending field (`postings[1].amount`) on error.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if has_nul_escape(bytes) {
        // PostgreSQL text cannot hold NUL: refuse it here rather than fail at the database
        return Err(ApiError::field(
            ErrorCode::InvalidRequest,
            "body",
            "text may not contain the NUL character (\\u0000)",
        ));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut *de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = strip_position(&inner.to_string());
        match inner.classify() {
            serde_json::error::Category::Data => {
                let field = if path == "." {
                    "body".to_string()
                } else {
                    path
                };
                ApiError::field(ErrorCode::InvalidRequest, field, message)
            }
            _ => ApiError::new(ErrorCode::MalformedJson, message),
        }
    })?;
    // one JSON value and nothing after it but white space
    de.end().map_err(|e| {
        ApiError::new(
            ErrorCode::MalformedJson,
            format!("{} after the JSON value", strip_position(&e.to_string())),
        )
    })?;
    Ok(value)
}

/// Whether the JSON text holds a `\u0000` escape (not an escaped backslash before `u0000`).
fn has_nul_escape(bytes: &[u8]) -> bool {
    bytes.windows(6).enumerate().any(|(i, w)| {
        w[0] == b'\\'
            && w[1] == b'u'
            && &w[2..] == b"0000"
            && bytes[..i].iter().rev().take_while(|&&b| b == b'\\').count() % 2 == 0
    })
}

fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

/// The `Idempotency-Key` header, required on ledger writes.
pub fn idempotency_key(req: &HttpRequest) -> Result<String, ApiError> {
    optional_idempotency_key(req)?.ok_or_else(|| {
        ApiError::new(
            ErrorCode::MissingIdempotencyKey,
            "send an `Idempotency-Key` header (any unique string, up to 200 characters) so that a retried request is not applied twice",
        )
    })
}

/// The `Idempotency-Key` header where it is optional: with it, a retry returns the first
/// result.
pub fn optional_idempotency_key(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    let Some(value) = req.headers().get("idempotency-key") else {
        return Ok(None);
    };
    let key = value.to_str().map(str::trim).unwrap_or_default();
    if key.is_empty() || key.len() > 200 {
        return Err(ApiError::field(
            ErrorCode::InvalidParameter,
            "Idempotency-Key",
            "1 to 200 visible ASCII characters",
        ));
    }
    Ok(Some(key.to_string()))
}

/// The `Idempotency-Key` header where it is optional, in the scope of the caller (see
/// [`crate::idempotency`]): with it, a retry returns the first result.
pub fn caller_idempotency_key(
    req: &HttpRequest,
    caller: &crate::auth::Principal,
) -> Result<Option<crate::idempotency::IdempotencyKey>, ApiError> {
    Ok(optional_idempotency_key(req)?
        .map(|key| crate::idempotency::IdempotencyKey::new(caller, key)))
}

/// 201 with the created resource, or 200 with the first result of an idempotent replay
/// (marked `Idempotent-Replayed: true`).
pub fn created_or_replayed(body: impl serde::Serialize, replayed: bool) -> actix_web::HttpResponse {
    if replayed {
        actix_web::HttpResponse::Ok()
            .insert_header(("Idempotent-Replayed", "true"))
            .json(body)
    } else {
        actix_web::HttpResponse::Created().json(body)
    }
}

/// Items per page: 1 to 200, 50 when not given.
pub fn page_limit(limit: Option<i64>) -> Result<i64, ApiError> {
    match limit {
        None => Ok(50),
        Some(n @ 1..=200) => Ok(n),
        Some(_) => Err(ApiError::field(
            ErrorCode::InvalidParameter,
            "limit",
            "must be between 1 and 200",
        )),
    }
}

/// The cursor of the page after `items`, when the page is full.
pub fn next_cursor<T>(
    kind: &str,
    items: &[T],
    limit: i64,
    position: impl Fn(&T) -> String,
) -> Option<String> {
    (items.len() as i64 == limit)
        .then(|| items.last().map(|i| encode_cursor(kind, &position(i))))
        .flatten()
}

/// Years accepted in dates and instants: PostgreSQL's range ends where chrono's does not,
/// and no billing date lies outside these.
const YEARS: std::ops::RangeInclusive<i32> = 1900..=9999;

/// Refuses a date outside [`YEARS`], naming the field (`code`: 422 for bodies, 400 for
/// query parameters).
pub fn check_date(
    code: ErrorCode,
    field: &str,
    date: chrono::NaiveDate,
) -> Result<chrono::NaiveDate, ApiError> {
    use chrono::Datelike;
    if YEARS.contains(&date.year()) {
        Ok(date)
    } else {
        Err(ApiError::field(code, field, "years from 1900 to 9999 only"))
    }
}

pub fn check_instant(
    code: ErrorCode,
    field: &str,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<chrono::DateTime<chrono::Utc>, ApiError> {
    check_date(code, field, at.date_naive()).map(|_| at)
}

/// Opaque cursors: `kind` guards against a cursor of one list being used on another.
pub fn encode_cursor(kind: &str, position: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{kind}:{position}"))
}

pub fn decode_cursor<T: std::str::FromStr>(kind: &str, cursor: &str) -> Result<T, ApiError> {
    let invalid = || {
        ApiError::fields(
            ErrorCode::InvalidCursor,
            vec![FieldError::new(
                "cursor",
                "not a cursor returned by this list; start again without one",
            )],
        )
    };
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| invalid())?;
    let text = String::from_utf8(raw).map_err(|_| invalid())?;
    let position = text
        .strip_prefix(kind)
        .and_then(|r| r.strip_prefix(':'))
        .ok_or_else(invalid)?;
    position.parse().map_err(|_| invalid())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for value in ["Bearer k1", "bearer k1", "BEARER  k1 ", "BeArEr k1"] {
            assert_eq!(bearer_token(value), Some("k1"), "{value:?}");
        }
        for value in ["Basic k1", "Bearerk1", "k1", ""] {
            assert_eq!(bearer_token(value), None, "{value:?}");
        }
    }

    fn auth(role: Role, customer: Option<Uuid>) -> Auth {
        Auth(Principal {
            key_id: Uuid::nil(),
            role,
            customer_id: customer,
        })
    }

    #[test]
    fn nul_escapes_are_found_but_not_escaped_backslashes() {
        assert!(has_nul_escape(br#"{"a":"x\u0000"}"#));
        assert!(has_nul_escape(br#"{"a":"\\\u0000"}"#));
        assert!(!has_nul_escape(br#"{"a":"\\u0000"}"#));
        assert!(!has_nul_escape(br#"{"a":"\u0001"}"#));
    }

    #[test]
    fn customer_keys_see_only_their_own_customer() {
        let (mine, theirs) = (Uuid::now_v7(), Uuid::now_v7());
        let customer = auth(Role::Customer, Some(mine));
        assert!(customer.require_customer(&[Role::Finance], mine).is_ok());
        let err = customer
            .require_customer(&[Role::Finance], theirs)
            .err()
            .map(|e| e.code);
        assert_eq!(err, Some(ErrorCode::NotFound));
        let err = auth(Role::Ticketing, None)
            .require_customer(&[Role::Finance], mine)
            .err()
            .map(|e| e.code);
        assert_eq!(err, Some(ErrorCode::Forbidden));
        assert!(auth(Role::Finance, None)
            .require_customer(&[Role::Finance], theirs)
            .is_ok());
        assert!(auth(Role::Admin, None)
            .require_customer(&[], theirs)
            .is_ok());
        // a customer key never passes a staff-only check, even for its own customer
        assert_eq!(
            customer.require(&[Role::Finance]).err().map(|e| e.code),
            Some(ErrorCode::Forbidden)
        );
    }
}
