//! Builds the application and the server.

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{Server, ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};
use anyhow::Context;
use utoipa_actix_web::AppExt;

use crate::auth::KeyCache;
use crate::clock::ServiceClock;
use crate::db::DbPool;
use crate::http::health::OpenApiJson;
use crate::http::{self, AppState, Metrics};

/// How long a resolved API key is trusted before it is read again: a revoked key stops
/// working within this delay in every worker and process.
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(1);

pub fn state(pool: DbPool, clock: ServiceClock) -> web::Data<AppState> {
    web::Data::new(AppState {
        pool,
        clock,
        keys: KeyCache::new(KEY_CACHE_TTL),
        metrics: Metrics::new(),
    })
}

/// The whole application: routes, extractor error handlers, observation middleware.
pub fn app(
    state: web::Data<AppState>,
    doc: web::Data<OpenApiJson>,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let (app, _) = App::new()
        .into_utoipa_app()
        .configure(http::register)
        .split_for_parts();
    app.app_data(state)
        .app_data(doc)
        .configure(http::extractor_configs)
        .default_service(web::to(http::no_route))
        .wrap(from_fn(http::observe))
        .wrap(from_fn(http::test_clock::stamp))
}

/// Binds `listen` and returns the server (not yet awaited) and the address it got.
pub fn build(
    state: web::Data<AppState>,
    listen: &str,
    workers: Option<usize>,
) -> anyhow::Result<(Server, SocketAddr)> {
    let listener = TcpListener::bind(listen).with_context(|| format!("binding {listen}"))?;
    let addr = listener.local_addr()?;
    let doc = web::Data::new(OpenApiJson(crate::openapi::document_json()));
    let mut server = HttpServer::new(move || app(state.clone(), doc.clone()))
        .listen(listener)?
        .shutdown_timeout(30);
    if let Some(n) = workers {
        server = server.workers(n);
    }
    Ok((server.run(), addr))
}
