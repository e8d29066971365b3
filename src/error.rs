//! Every error the API returns is RFC 9457 `application/problem+json`, with a stable `type`
//! taken from one table of codes.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

use crate::ledger::LedgerError;

tokio::task_local! {
    /// The id of the request being served, for the problem documents it produces.
    pub static REQUEST_ID: String;
}

/// The stable error codes: each maps to one `type` URI, title and HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    MalformedJson,
    UnsupportedMediaType,
    PayloadTooLarge,
    InvalidRequest,
    InvalidParameter,
    InvalidCursor,
    MissingIdempotencyKey,
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    IdempotencyConflict,
    AlreadyReversed,
    HoldNotPending,
    UnbalancedTransaction,
    UnknownAccount,
    InsufficientFunds,
    BeyondCreditBalance,
    SepaMandateRequired,
    ServicePlusRequired,
    AssistanceIncluded,
    InvalidState,
    CustomerClosed,
    AlreadyUsed,
    AlreadyExists,
    ServiceUnavailable,
    Internal,
}

impl ErrorCode {
    /// The one table: status and title of every code.
    pub fn describe(self) -> (StatusCode, &'static str) {
        use ErrorCode::*;
        match self {
            MalformedJson => (StatusCode::BAD_REQUEST, "The body is not valid JSON"),
            UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "The body must be application/json",
            ),
            PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "The body is too large"),
            InvalidRequest => (StatusCode::UNPROCESSABLE_ENTITY, "The request is invalid"),
            InvalidParameter => (
                StatusCode::BAD_REQUEST,
                "A path or query parameter is invalid",
            ),
            InvalidCursor => (StatusCode::BAD_REQUEST, "The pagination cursor is invalid"),
            MissingIdempotencyKey => (
                StatusCode::BAD_REQUEST,
                "An Idempotency-Key header is required",
            ),
            Unauthorized => (StatusCode::UNAUTHORIZED, "A valid API key is required"),
            Forbidden => (StatusCode::FORBIDDEN, "This API key's role may not do this"),
            NotFound => (StatusCode::NOT_FOUND, "Not found"),
            MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "Method not allowed"),
            IdempotencyConflict => (
                StatusCode::CONFLICT,
                "The idempotency key was used for a different request",
            ),
            AlreadyReversed => (
                StatusCode::CONFLICT,
                "The transaction has already been reversed",
            ),
            HoldNotPending => (StatusCode::CONFLICT, "The hold is no longer pending"),
            UnbalancedTransaction => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "The transaction does not balance",
            ),
            UnknownAccount => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "An account does not exist or does not fit the posting",
            ),
            InsufficientFunds => (StatusCode::UNPROCESSABLE_ENTITY, "Insufficient funds"),
            BeyondCreditBalance => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "More than the customer's credit balance",
            ),
            SepaMandateRequired => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "An active SEPA mandate is required",
            ),
            ServicePlusRequired => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "An active Service+ pack is required",
            ),
            AssistanceIncluded => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "Assistance is already included",
            ),
            InvalidState => (
                StatusCode::CONFLICT,
                "The resource's state does not allow this",
            ),
            CustomerClosed => (
                StatusCode::CONFLICT,
                "The customer is closed: its account is read-only",
            ),
            AlreadyUsed => (
                StatusCode::CONFLICT,
                "The tickets or credits to take back were used",
            ),
            AlreadyExists => (StatusCode::CONFLICT, "It already exists"),
            ServiceUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "The service is temporarily unavailable",
            ),
            Internal => (StatusCode::INTERNAL_SERVER_ERROR, "Internal error"),
        }
    }

    pub fn type_uri(self) -> String {
        let slug = serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(|s| s.replace('_', "-")))
            .unwrap_or_default();
        format!("urn:grandlivre:problem:{slug}")
    }
}

/// One offending field of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    /// Where in the request: a JSON path such as `postings[1].amount`, a query parameter,
    /// a path parameter or a header name.
    #[schema(example = "postings[0].amount")]
    pub field: String,
    #[schema(example = "EUR allows at most 2 decimal(s)")]
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// An RFC 9457 problem document.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({
    "type": "urn:grandlivre:problem:invalid-request",
    "title": "The request is invalid",
    "status": 422,
    "detail": "1 field is invalid",
    "code": "invalid_request",
    "errors": [{"field": "postings[0].amount", "message": "EUR allows at most 2 decimal(s)"}],
    "request_id": "01936b1e-8a53-7c4e-9d1e-5b0f0c7e2a11"
}))]
pub struct Problem {
    #[serde(rename = "type")]
    #[schema(example = "urn:grandlivre:problem:insufficient-funds")]
    pub type_uri: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    pub code: ErrorCode,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("{code:?}: {detail}")]
pub struct ApiError {
    pub code: ErrorCode,
    pub detail: String,
    pub errors: Vec<FieldError>,
    /// The cause of an internal error, logged once, never shown.
    #[source]
    pub cause: Option<anyhow::Error>,
}

impl ApiError {
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        ApiError {
            code,
            detail: detail.into(),
            errors: Vec::new(),
            cause: None,
        }
    }

    pub fn fields(code: ErrorCode, errors: Vec<FieldError>) -> Self {
        let detail = match errors.as_slice() {
            [one] => format!("{}: {}", one.field, one.message),
            many => format!("{} fields are invalid", many.len()),
        };
        ApiError {
            code,
            detail,
            errors,
            cause: None,
        }
    }

    pub fn field(code: ErrorCode, field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::fields(code, vec![FieldError::new(field, message)])
    }

    pub fn internal(cause: impl Into<anyhow::Error>) -> Self {
        ApiError {
            code: ErrorCode::Internal,
            detail: "An unexpected error occurred; it has been logged with this request's id."
                .into(),
            errors: Vec::new(),
            cause: Some(cause.into()),
        }
    }

    pub fn not_found(what: impl std::fmt::Display) -> Self {
        ApiError::new(ErrorCode::NotFound, format!("{what} does not exist"))
    }

    pub fn problem(&self) -> Problem {
        let (status, title) = self.code.describe();
        Problem {
            type_uri: self.code.type_uri(),
            title: title.into(),
            status: status.as_u16(),
            detail: self.detail.clone(),
            code: self.code,
            errors: self.errors.clone(),
            request_id: REQUEST_ID.try_with(Clone::clone).ok(),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.code.describe().0
    }

    fn error_response(&self) -> HttpResponse {
        if let Some(cause) = &self.cause {
            tracing::error!(error = format!("{cause:#}"), "internal error");
        }
        let mut res = HttpResponse::build(self.status_code());
        res.insert_header((header::CONTENT_TYPE, "application/problem+json"));
        if self.code == ErrorCode::ServiceUnavailable {
            res.insert_header((header::RETRY_AFTER, "1"));
        }
        if self.code == ErrorCode::Unauthorized {
            res.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        res.body(serde_json::to_string(&self.problem()).unwrap_or_default())
    }
}

impl From<diesel::result::Error> for ApiError {
    fn from(e: diesel::result::Error) -> Self {
        ApiError::internal(e)
    }
}

impl From<diesel_async::pooled_connection::deadpool::PoolError> for ApiError {
    fn from(e: diesel_async::pooled_connection::deadpool::PoolError) -> Self {
        tracing::warn!(error = %e, "no database connection available");
        ApiError::new(
            ErrorCode::ServiceUnavailable,
            "No database connection is available right now; retry shortly.",
        )
    }
}

impl From<LedgerError> for ApiError {
    fn from(e: LedgerError) -> Self {
        use LedgerError as L;
        let detail = e.to_string();
        match e {
            L::TooFewPostings | L::TooManyPostings => {
                ApiError::field(ErrorCode::UnbalancedTransaction, "postings", detail)
            }
            L::Unbalanced(..) => {
                ApiError::field(ErrorCode::UnbalancedTransaction, "postings", detail)
            }
            L::Invalid { field, reason } => {
                ApiError::field(ErrorCode::InvalidRequest, field, reason)
            }
            L::UnknownAccount(_) | L::PostingInvalid => {
                ApiError::new(ErrorCode::UnknownAccount, detail)
            }
            L::UnknownTransaction(_) | L::UnknownHold(_) => {
                ApiError::new(ErrorCode::NotFound, detail)
            }
            L::InsufficientFunds => ApiError::new(ErrorCode::InsufficientFunds, detail),
            L::IdempotencyConflict => ApiError::new(ErrorCode::IdempotencyConflict, detail),
            L::AlreadyReversed(_) => ApiError::new(ErrorCode::AlreadyReversed, detail),
            L::HoldNotPending(..) => ApiError::new(ErrorCode::HoldNotPending, detail),
            L::CaptureExceedsHold { .. } => {
                ApiError::field(ErrorCode::InvalidRequest, "amount", detail)
            }
            L::Database(e) if crate::db::is_retryable(&e) => ApiError::new(
                ErrorCode::ServiceUnavailable,
                "The database is busy; retry shortly.",
            ),
            L::Database(e) => ApiError::internal(e),
        }
    }
}

impl From<crate::subscriptions::SubscriptionError> for ApiError {
    fn from(e: crate::subscriptions::SubscriptionError) -> Self {
        use crate::subscriptions::SubscriptionError as S;
        let detail = e.to_string();
        match e {
            S::UnknownCustomer(_) | S::CustomerNotActive(_) => {
                ApiError::field(ErrorCode::InvalidRequest, "customer_id", detail)
            }
            S::UnknownOffer(_) | S::NotRecurring(_) | S::NoPrice(..) => {
                ApiError::field(ErrorCode::InvalidRequest, "offer_code", detail)
            }
            S::ParentRequired(_)
            | S::ParentNotAllowed(_)
            | S::BadParent(_)
            | S::AddonDoesNotFit(_) => {
                ApiError::field(ErrorCode::InvalidRequest, "parent_id", detail)
            }
            S::CustomerClosed(_) => ApiError::new(ErrorCode::CustomerClosed, detail),
            S::ReceivedOn(_) => ApiError::field(ErrorCode::InvalidRequest, "received_on", detail),
            S::SepaMandateRequired(_) => ApiError::new(ErrorCode::SepaMandateRequired, detail),
            S::NotFound(_) => ApiError::new(ErrorCode::NotFound, detail),
            S::WrongState(..) => ApiError::new(ErrorCode::InvalidState, detail),
            S::IdempotencyConflict => ApiError::new(ErrorCode::IdempotencyConflict, detail),
            S::Database(e) if crate::db::is_retryable(&e) => ApiError::new(
                ErrorCode::ServiceUnavailable,
                "The database is busy; retry shortly.",
            ),
            S::Database(e) => ApiError::internal(e),
        }
    }
}
