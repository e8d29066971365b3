//! Liveness, readiness, metrics and the contract itself. No key needed.

use actix_web::{get, web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use super::State;
use crate::error::{ApiError, ErrorCode};

/// The process answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    pub status: String,
}

/// Readiness: the database answers and has run every migration of this build.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    #[schema(example = "ready")]
    pub status: String,
    /// The newest migration this build knows.
    pub migration: String,
}

/// Liveness: the process is up.
#[utoipa::path(tag = "operations", responses((status = 200, description = "The process is up", body = Health)))]
#[get("/healthz")]
pub async fn get_healthz() -> web::Json<Health> {
    web::Json(Health {
        status: "ok".into(),
    })
}

/// Readiness: the database is reachable and its migrations are current.
#[utoipa::path(
    tag = "operations",
    responses(
        (status = 200, description = "Ready to serve", body = Readiness),
        (status = 503, description = "Not ready", body = crate::error::Problem, content_type = "application/problem+json")
    )
)]
#[get("/readyz")]
pub async fn get_readyz(state: State) -> Result<web::Json<Readiness>, ApiError> {
    let unavailable = |detail: String| ApiError::new(ErrorCode::ServiceUnavailable, detail);
    let mut conn = state
        .pool
        .get()
        .await
        .map_err(|e| unavailable(format!("database unreachable: {e}")))?;
    let current = crate::db::migrations_current(&mut conn)
        .await
        .map_err(|e| unavailable(format!("cannot read the migration state: {e}")))?;
    if !current {
        return Err(unavailable(
            "the database has not run every migration of this build".into(),
        ));
    }
    Ok(web::Json(Readiness {
        status: "ready".into(),
        migration: crate::db::latest_migration(),
    }))
}

/// Prometheus metrics: request counts and latency histograms per route, pool usage.
#[utoipa::path(
    tag = "operations",
    responses((status = 200, description = "Prometheus text exposition format", body = String, content_type = "text/plain"))
)]
#[get("/metrics")]
pub async fn get_metrics(state: State) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render(&state.pool))
}

/// The served OpenAPI document.
#[derive(Debug, Clone)]
pub struct OpenApiJson(pub String);

/// This contract (OpenAPI 3.1).
#[utoipa::path(
    tag = "operations",
    responses((status = 200, description = "The OpenAPI document", body = Object, content_type = "application/json"))
)]
#[get("/openapi.json")]
pub async fn get_openapi(doc: web::Data<OpenApiJson>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(doc.0.clone())
}
