//! The HTTP layer only translates: parse, authorize, call the domain, map errors.

pub mod api_keys;
pub mod authorizations;
pub mod credit_notes;
pub mod customers;
pub mod health;
pub mod interventions;
pub mod invoice_runs;
pub mod invoices;
pub mod jobs;
pub mod ledger;
pub mod mandates;
mod observe;
pub mod offers;
pub mod payments;
pub mod sepa;
pub mod subscriptions;
pub mod test_clock;
pub mod wallets;

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::error::PayloadError;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest};
use base64::Engine;
use serde::de::DeserializeOwned;
use utoipa::ToSchema;
use uuid::Uuid;

pub use observe::{observe, Metrics};

use crate::auth::{KeyCache, Principal, Role};
use crate::clock::ServiceClock;
use crate::db::DbPool;
use crate::error::{ApiError, ErrorCode, FieldError};
use crate::input::{self, StrictValue};

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
        .service(ledger::get_ledger_fec)
        .service(customers::post_customer)
        .service(customers::list_customers)
        .service(customers::get_customer)
        .service(customers::get_liability_cap)
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
        .service(invoices::list_invoices)
        .service(invoices::get_invoice)
        .service(invoices::get_invoice_cii)
        .service(invoices::get_invoice_pdf)
        .service(payments::post_payment)
        .service(payments::list_payments)
        .service(payments::get_payment)
        .service(payments::post_customer_refund)
        .service(mandates::post_customer_mandate)
        .service(mandates::list_customer_mandates)
        .service(mandates::get_mandate)
        .service(mandates::revoke_mandate)
        .service(mandates::post_mandate_amendment)
        .service(sepa::post_sepa_batch)
        .service(sepa::get_sepa_batch)
        .service(sepa::get_sepa_batch_pain008)
        .service(sepa::submit_sepa_batch)
        .service(sepa::settle_sepa_batch)
        .service(sepa::post_sepa_returns)
        .service(credit_notes::post_credit_note)
        .service(credit_notes::list_credit_notes)
        .service(credit_notes::get_credit_note)
        .service(credit_notes::get_credit_note_cii)
        .service(credit_notes::get_credit_note_pdf)
        .service(invoice_runs::post_invoice_run)
        .service(invoice_runs::list_invoice_runs)
        .service(invoice_runs::get_invoice_run)
        .service(jobs::run_job)
        .service(api_keys::post_api_key)
        .service(api_keys::list_api_keys)
        .service(api_keys::revoke_api_key)
        .service(test_clock::get_test_clock)
        .service(test_clock::put_test_clock);
}

/// Error handlers for actix's own extractors, so they answer problem+json too.
pub fn extractor_configs(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::PathConfig::default().error_handler(|e, _| {
        ApiError::field(ErrorCode::InvalidParameter, "path", e.to_string()).into()
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

    /// The customer a list is restricted to, `asked` by its query: a customer key sees its
    /// own customer's items whether it names it or not (another customer answers 404); the
    /// staff roles in `roles` (admin always) see the customer asked, or everyone's.
    pub fn listing_customer(
        &self,
        roles: &[Role],
        asked: Option<Uuid>,
    ) -> Result<Option<Uuid>, ApiError> {
        match (self.0.role, asked) {
            (Role::Customer, Some(c)) => Ok(Some(
                self.require_customer(roles, c)?.customer_id.unwrap_or(c),
            )),
            (Role::Customer, None) => Ok(self.0.customer_id),
            (_, c) => {
                self.require(roles)?;
                Ok(c)
            }
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

/// A JSON body, read but not yet parsed: the handler authorizes its caller first and then
/// [`parse`](JsonBody::parse)s it, so that a caller who may not call the operation gets
/// 403 whatever it sent, and learns nothing of the body's shape. Every error of the body
/// (413, 415, 400, 422) waits until then.
pub struct JsonBody<T> {
    bytes: Result<web::Bytes, ApiError>,
    json_type: bool,
    target: PhantomData<fn() -> T>,
}

impl<T> FromRequest for JsonBody<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let json_type = is_json(req);
        let body = RawBody::from_request(req, payload);
        Box::pin(async move {
            Ok(JsonBody {
                bytes: body.await.map(|b| b.0),
                json_type,
                target: PhantomData,
            })
        })
    }
}

impl<T: DeserializeOwned + ToSchema> JsonBody<T> {
    /// The request. `_caller` is what [`Auth::require`] (or `require_customer`) returned
    /// for this operation: asking for it keeps the body unread until the caller passed.
    pub fn parse(self, _caller: &Principal) -> Result<T, ApiError> {
        let bytes = self.bytes?;
        if !self.json_type {
            return Err(ApiError::new(
                ErrorCode::UnsupportedMediaType,
                "send `Content-Type: application/json`",
            ));
        }
        parse_json(&bytes)
    }

    /// [`parse`](Self::parse) for an operation whose body is optional: none, or `null`,
    /// is the default request.
    pub fn parse_or_default(self, _caller: &Principal) -> Result<T, ApiError>
    where
        T: Default,
    {
        let empty = match &self.bytes {
            Ok(bytes) => {
                let text = bytes.trim_ascii();
                text.is_empty() || (self.json_type && text == b"null")
            }
            Err(_) => false,
        };
        if empty {
            Ok(T::default())
        } else {
            self.parse(_caller)
        }
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

/// Reads `bytes` as a `T`, checked against `T`'s schema in the contract (see
/// [`crate::input`]): one 422 names every offending field by its path
/// (`postings[1].amount`); bad JSON is a 400.
pub fn parse_json<T: DeserializeOwned + ToSchema>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let value = match serde_path_to_error::deserialize::<_, StrictValue>(&mut *de) {
        Ok(v) => v.0,
        Err(e) => return Err(json_error(e)),
    };
    // one JSON value and nothing after it but white space
    de.end().map_err(|e| {
        ApiError::new(
            ErrorCode::MalformedJson,
            format!("{} after the JSON value", strip_position(&e.to_string())),
        )
    })?;
    let mut errors = input::check(&T::name(), &value);
    match serde_path_to_error::deserialize::<_, T>(value) {
        Ok(parsed) if errors.is_empty() => return Ok(parsed),
        Ok(_) => {}
        Err(e) => {
            let path = e.path().to_string();
            let path = if path == "." {
                "body".to_string()
            } else {
                path
            };
            let message = strip_position(&e.into_inner().to_string());
            // the walk's own finding on that field, within it or around it, says it better
            if !errors
                .iter()
                .any(|f| nested(&f.field, &path) || nested(&path, &f.field))
            {
                errors.push(FieldError::new(path, message));
            }
        }
    }
    Err(ApiError::fields(ErrorCode::InvalidRequest, errors))
}

/// Whether the field at `inner` is `outer` or lies within it (`body` holds every field).
fn nested(outer: &str, inner: &str) -> bool {
    outer == "body"
        || inner
            .strip_prefix(outer)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
}

fn json_error(e: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let path = e.path().to_string();
    let inner = e.into_inner();
    let message = strip_position(&inner.to_string());
    match inner.classify() {
        serde_json::error::Category::Data => {
            let field = if path == "." { "body".into() } else { path };
            ApiError::field(ErrorCode::InvalidRequest, field, message)
        }
        _ => ApiError::new(ErrorCode::MalformedJson, message),
    }
}

fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

/// Query parameters, deserialized strictly, naming the offending parameter (`as_of`) on
/// error (400).
pub struct Query<T>(pub T);

impl<T> std::ops::Deref for Query<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: DeserializeOwned> FromRequest for Query<T> {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let pairs = form_urlencoded::parse(req.query_string().as_bytes());
        let de = serde_urlencoded::Deserializer::new(pairs);
        std::future::ready(
            serde_path_to_error::deserialize(de)
                .map(Query)
                .map_err(|e| {
                    let path = e.path().to_string();
                    let field = if path == "." { "query".into() } else { path };
                    ApiError::field(
                        ErrorCode::InvalidParameter,
                        field,
                        e.into_inner().to_string(),
                    )
                }),
        )
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
    if key.is_empty() || key.len() > 200 || key.chars().any(char::is_control) {
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

/// The page a list asks for: after the id its cursor names (a cursor of list `kind`), and
/// how many items (see [`page_limit`]).
pub fn page(
    kind: &str,
    cursor: Option<&str>,
    limit: Option<i64>,
) -> Result<(Option<Uuid>, i64), ApiError> {
    let limit = page_limit(limit)?;
    let after = cursor.map(|c| decode_cursor::<Uuid>(kind, c)).transpose()?;
    Ok((after, limit))
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
