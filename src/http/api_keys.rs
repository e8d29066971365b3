//! `/v1/api-keys`: create, list and revoke API keys (admin only). A key's secret is shown
//! once, in the answer that creates it; lists show neither it nor its digest.

use actix_web::{get, post, web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{next_cursor, page, Auth, JsonBody, Query, State};
use crate::auth::{self, KeyError, KeyView, Role};
use crate::error::{ApiError, ErrorCode};
use crate::http::customers::ListParams;
use crate::openapi::{ReadErrors, WriteErrors};

impl From<KeyError> for ApiError {
    fn from(e: KeyError) -> Self {
        let detail = e.to_string();
        match e {
            KeyError::CustomerBinding | KeyError::UnknownCustomer(_) => {
                ApiError::field(ErrorCode::InvalidRequest, "customer_id", detail)
            }
            KeyError::Label => ApiError::field(ErrorCode::InvalidRequest, "label", detail),
            KeyError::NotFound(_) => ApiError::new(ErrorCode::NotFound, detail),
            KeyError::Database(e) => e.into(),
        }
    }
}

/// A key to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"role": "customer", "customer_id": "0193e0a0-0000-7000-8000-000000000001", "label": "portal of Atelier Démo"}))]
pub struct NewApiKey {
    pub role: Role,
    /// The customer a `customer` key is bound to; only a customer key has one.
    #[schema(value_type = Option<String>, format = Uuid)]
    pub customer_id: Option<Uuid>,
    /// A note to recognise the key by, 1 to 200 characters.
    pub label: Option<String>,
}

/// A created key, with its secret: shown this once, never again.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedApiKey {
    /// The secret to send as `Authorization: Bearer <key>`.
    #[schema(example = "gl_finance_5f1c…")]
    pub key: String,
    #[serde(flatten)]
    pub view: KeyView,
}

/// Create an API key. The answer holds its secret, shown only this once.
#[utoipa::path(
    tag = "api-keys",
    request_body = NewApiKey,
    responses((status = 201, description = "Created; `key` is shown only here", body = CreatedApiKey), WriteErrors),
    security(("bearer" = ["admin"]))
)]
#[post("/v1/api-keys")]
pub async fn post_api_key(
    state: State,
    auth: Auth,
    body: JsonBody<NewApiKey>,
) -> Result<HttpResponse, ApiError> {
    let new = body.parse(auth.require(&[])?)?;
    let mut conn = state.pool.get().await?;
    let (view, key) =
        auth::create_key(&mut conn, new.role, new.customer_id, new.label.as_deref()).await?;
    Ok(HttpResponse::Created().json(CreatedApiKey { key, view }))
}

/// One page of API keys.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyPage {
    pub items: Vec<KeyView>,
    pub next_cursor: Option<String>,
}

/// API keys, oldest first, revoked ones included; never a secret.
#[utoipa::path(
    tag = "api-keys",
    params(ListParams),
    responses((status = 200, description = "A page of keys", body = ApiKeyPage), ReadErrors),
    security(("bearer" = ["admin"]))
)]
#[get("/v1/api-keys")]
pub async fn list_api_keys(
    state: State,
    auth: Auth,
    q: Query<ListParams>,
) -> Result<web::Json<ApiKeyPage>, ApiError> {
    auth.require(&[])?;
    let (after, limit) = page("api-keys", q.cursor.as_deref(), q.limit)?;
    let mut conn = state.pool.get().await?;
    let items = auth::list_keys(&mut conn, after, limit).await?;
    let next_cursor = next_cursor("api-keys", &items, limit, |k| k.id.to_string());
    Ok(web::Json(ApiKeyPage { items, next_cursor }))
}

/// Revoke an API key: it answers 401 from now on in this process, and within a second in
/// every other. Revoking a revoked key changes nothing (the same `revoked_at`).
#[utoipa::path(
    tag = "api-keys",
    params(("id" = Uuid, Path, description = "API key id")),
    responses((status = 200, description = "The revoked key", body = KeyView), WriteErrors),
    security(("bearer" = ["admin"]))
)]
#[post("/v1/api-keys/{id}/revoke")]
pub async fn revoke_api_key(
    state: State,
    auth: Auth,
    id: web::Path<Uuid>,
) -> Result<web::Json<KeyView>, ApiError> {
    auth.require(&[])?;
    let id = id.into_inner();
    let mut conn = state.pool.get().await?;
    let view = auth::revoke_key(&mut conn, id).await?;
    state.keys.forget(id);
    Ok(web::Json(view))
}
