//! `/v1/offers`: the catalog and its dated prices. Every role reads; admin writes.

use actix_web::{get, post, web, HttpResponse};

use super::{Auth, JsonBody, State};
use crate::auth::Role;
use diesel::result::DatabaseErrorKind::UniqueViolation;
use diesel::result::Error::DatabaseError;

use crate::calendar::paris_date;
use crate::catalog::{store, CatalogRole, Offer, OfferView, PriceVersion};
use crate::error::{ApiError, ErrorCode};
use crate::openapi::{ReadErrors, WriteErrors};

const READERS: &[Role] = &[Role::Finance, Role::Ticketing, Role::Customer];

/// The catalog.
#[utoipa::path(
    tag = "catalog",
    responses((status = 200, description = "Every offer, with its price in force today", body = Vec<OfferView>), ReadErrors),
    security(("bearer" = ["admin", "finance", "ticketing", "customer"]))
)]
#[get("/v1/offers")]
pub async fn list_offers(state: State, auth: Auth) -> Result<web::Json<Vec<OfferView>>, ApiError> {
    auth.require(READERS)?;
    let mut conn = state.pool.get().await?;
    let today = paris_date(state.clock.now());
    Ok(web::Json(store::views(&mut conn, None, today).await?))
}

/// One offer.
#[utoipa::path(
    tag = "catalog",
    params(("code" = String, Path, description = "Offer code")),
    responses((status = 200, description = "The offer, with its price in force today", body = OfferView), ReadErrors),
    security(("bearer" = ["admin", "finance", "ticketing", "customer"]))
)]
#[get("/v1/offers/{code}")]
pub async fn get_offer(
    state: State,
    auth: Auth,
    code: web::Path<String>,
) -> Result<web::Json<OfferView>, ApiError> {
    auth.require(READERS)?;
    let mut conn = state.pool.get().await?;
    let today = paris_date(state.clock.now());
    store::views(&mut conn, Some(&code), today)
        .await?
        .pop()
        .map(web::Json)
        .ok_or_else(|| ApiError::not_found(format!("offer `{code}`")))
}

/// Add an offer to the catalog (then give it a price).
#[utoipa::path(
    tag = "catalog",
    request_body = Offer,
    responses((status = 201, description = "Created", body = Offer), WriteErrors),
    security(("bearer" = ["admin"]))
)]
#[post("/v1/offers")]
pub async fn post_offer(
    state: State,
    auth: Auth,
    body: JsonBody<Offer>,
) -> Result<HttpResponse, ApiError> {
    let offer = body.parse(auth.require(&[])?)?;
    offer
        .validate()
        .map_err(|errors| ApiError::fields(ErrorCode::InvalidRequest, errors))?;
    let mut conn = state.pool.get().await?;
    let errors = store::item_errors(&mut conn, &offer).await?;
    if !errors.is_empty() {
        return Err(ApiError::fields(ErrorCode::InvalidRequest, errors));
    }
    match store::insert(&mut conn, &offer).await {
        Ok(true) => Ok(HttpResponse::Created().json(offer)),
        Ok(false) => Err(ApiError::field(
            ErrorCode::AlreadyExists,
            "code",
            format!("offer `{}` exists", offer.code),
        )),
        Err(DatabaseError(UniqueViolation, info))
            if info.constraint_name() == Some("offers_one_per_role") =>
        {
            Err(ApiError::field(
                ErrorCode::AlreadyExists,
                "role",
                format!(
                    "another offer has the role `{}`",
                    offer.role.map_or("", CatalogRole::as_str)
                ),
            ))
        }
        Err(e) => Err(e.into()),
    }
}

/// The price versions of an offer, oldest first.
#[utoipa::path(
    tag = "catalog",
    params(("code" = String, Path, description = "Offer code")),
    responses((status = 200, description = "Price versions", body = Vec<PriceVersion>), ReadErrors),
    security(("bearer" = ["admin", "finance", "ticketing", "customer"]))
)]
#[get("/v1/offers/{code}/prices")]
pub async fn list_offer_prices(
    state: State,
    auth: Auth,
    code: web::Path<String>,
) -> Result<web::Json<Vec<PriceVersion>>, ApiError> {
    auth.require(READERS)?;
    let mut conn = state.pool.get().await?;
    if store::get(&mut conn, &code).await?.is_none() {
        return Err(ApiError::not_found(format!("offer `{code}`")));
    }
    Ok(web::Json(store::prices(&mut conn, &code).await?))
}

/// Add a price version, in force from its date until a later one. Charges already created
/// keep the price they were created with.
#[utoipa::path(
    tag = "catalog",
    params(("code" = String, Path, description = "Offer code")),
    request_body = PriceVersion,
    responses((status = 201, description = "Added", body = PriceVersion), WriteErrors),
    security(("bearer" = ["admin"]))
)]
#[post("/v1/offers/{code}/prices")]
pub async fn post_offer_price(
    state: State,
    auth: Auth,
    code: web::Path<String>,
    body: JsonBody<PriceVersion>,
) -> Result<HttpResponse, ApiError> {
    let version = body.parse(auth.require(&[])?)?;
    let price = version.unit_price.0;
    if price.is_sign_negative()
        || price.normalize().scale() > 4
        || !crate::money::fits_columns(price)
    {
        return Err(ApiError::field(
            ErrorCode::InvalidRequest,
            "unit_price",
            "zero or more, below 10,000,000,000, at most 4 decimals",
        ));
    }
    let mut conn = state.pool.get().await?;
    if store::get(&mut conn, &code).await?.is_none() {
        return Err(ApiError::not_found(format!("offer `{code}`")));
    }
    if !store::add_price(&mut conn, &code, &version).await? {
        return Err(ApiError::field(
            ErrorCode::AlreadyExists,
            "effective_from",
            format!(
                "offer `{code}` already has a price from {}",
                version.effective_from
            ),
        ));
    }
    Ok(HttpResponse::Created().json(version))
}
