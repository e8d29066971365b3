//! The test harness: one private PostgreSQL cluster per test run (shared by the test
//! binaries), a template database migrated once, and a fresh database per test cloned from
//! it. `TEST_DATABASE_URL` points the harness at an existing server instead.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::{Arc, OnceLock};

use actix_web::body::BoxBody;
use actix_web::dev::{Service, ServiceResponse};
use actix_web::test::{self, TestRequest};
use actix_web::web;
use chrono::Utc;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use futures_util::future::LocalBoxFuture;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use grandlivre::auth::{self, Role};
use grandlivre::clock::{FixedClock, ServiceClock};
use grandlivre::db::{self, DbPool};
use grandlivre::http::health::OpenApiJson;
use grandlivre::pg_cluster::{Cluster, Durability};

struct TestServer {
    /// Connection string as a superuser, with `{db}` where the database name goes.
    url_pattern: String,
    template: String,
}

impl TestServer {
    /// As the superuser the harness was given (creates and drops databases).
    fn url(&self, db: &str) -> String {
        self.url_pattern.replace("{db}", db)
    }

    /// As `role` (the schema owner or the service), on the same server.
    fn url_as(&self, role: &str, db: &str) -> String {
        with_user(&self.url_pattern, role).replace("{db}", db)
    }
}

/// The connection string `url` (URL or key-value form) with its user set to `user` (and
/// no password: the test server trusts local connections).
fn with_user(url: &str, user: &str) -> String {
    if !url.contains("://") {
        let kept: Vec<&str> = url
            .split_whitespace()
            .filter(|kv| !kv.starts_with("user=") && !kv.starts_with("password="))
            .collect();
        return format!("{} user={user}", kept.join(" "));
    }
    let scheme_end = url.find("://").expect("scheme") + 3;
    let rest = &url[scheme_end..];
    let host_start = rest
        .find('@')
        .filter(|at| rest.find('/').is_none_or(|slash| at < &slash))
        .map_or(0, |at| at + 1);
    format!("{}{user}@{}", &url[..scheme_end], &rest[host_start..])
}

static SERVER: OnceLock<TestServer> = OnceLock::new();

/// A digest of the migrations, so that a changed migration gets a new template.
fn migrations_digest() -> String {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("migrations");
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .expect("migrations directory")
        .flat_map(|e| fs::read_dir(e.expect("entry").path()).expect("migration directory"))
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    let mut hash = Sha256::new();
    for f in files {
        hash.update(f.to_string_lossy().as_bytes());
        hash.update(fs::read(&f).expect("migration file"));
    }
    hex::encode(&hash.finalize()[..8])
}

/// Replaces the database name of a URL or key-value connection string.
fn url_pattern(url: &str) -> String {
    if !url.contains("://") {
        let kept: Vec<&str> = url
            .split_whitespace()
            .filter(|kv| !kv.starts_with("dbname="))
            .collect();
        return format!("{} dbname={{db}}", kept.join(" "));
    }
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let scheme_end = base.find("://").expect("scheme") + 3;
    let host_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut out = format!("{}/{{db}}", &base[..host_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

fn setup() -> TestServer {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (url_pattern, lock_dir) = match std::env::var("TEST_DATABASE_URL") {
        Ok(url) => (url_pattern(&url), std::env::temp_dir()),
        Err(_) => {
            let target = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target");
            let dir = grandlivre::pg_cluster::scratch_dir(&target, "pg-test");
            let cluster =
                Cluster::locate(&dir, Durability::Throwaway).unwrap_or_else(|e| panic!("{e}"));
            cluster.ensure_running().unwrap_or_else(|e| panic!("{e}"));
            if dir != target.join("pg-test") {
                link_fallback(&target.join("pg-test"), &dir);
            }
            (
                cluster.connection_string("{db}"),
                dir.parent().expect("parent").to_path_buf(),
            )
        }
    };
    let template = format!("gl_template_{}", migrations_digest());
    let server = TestServer {
        url_pattern,
        template,
    };
    // one creator of the template at a time, across the test binaries
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(lock_dir.join("grandlivre-test-template.lock"))
        .expect("template lock file");
    lock.lock().expect("template lock");
    runtime.block_on(async {
        let mut conn = AsyncPgConnection::establish(&server.url("postgres"))
            .await
            .expect("connect to the test server");
        // the schema owner and the service role, once per run (the clones need them too)
        db::ensure_roles(&mut conn).await.expect("create the roles");
        #[derive(diesel::QueryableByName)]
        struct N {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let exists: N =
            diesel::sql_query("SELECT count(*) AS n FROM pg_database WHERE datname = $1")
                .bind::<diesel::sql_types::Text, _>(&server.template)
                .get_result(&mut conn)
                .await
                .expect("query pg_database");
        if exists.n == 0 {
            let building = format!("{}_building", server.template);
            diesel::sql_query(format!("DROP DATABASE IF EXISTS \"{building}\""))
                .execute(&mut conn)
                .await
                .expect("drop");
            db::create_database_on(&mut conn, &building, None)
                .await
                .expect("create template");
            db::run_migrations(&server.url_as(db::OWNER_ROLE, &building))
                .await
                .expect("migrate template");
            diesel::sql_query(format!(
                "ALTER DATABASE \"{building}\" RENAME TO \"{}\"",
                server.template
            ))
            .execute(&mut conn)
            .await
            .expect("rename template");
        }
    });
    drop(lock);
    server
}

/// A test cluster outside `target/` (a root checkout that the `postgres` user cannot
/// enter): `target/pg-test` becomes a link to it, so that the README's stop command
/// (`--data-dir target/pg-test db stop`) finds it, and its path is printed (past the
/// harness's output capture).
fn link_fallback(link: &Path, dir: &Path) {
    if fs::read_link(link).ok().as_deref() != Some(dir) {
        // a stale link goes; a directory of an earlier run stays (remove_file refuses it)
        let _ = fs::remove_file(link);
        let _ = std::os::unix::fs::symlink(dir, link);
    }
    let _ = writeln!(
        std::io::stderr(),
        "test cluster: {} (the postgres user cannot use {}); stop it with \
         `cargo run -q -- --data-dir {} db stop`",
        dir.display(),
        link.display(),
        dir.display()
    );
}

fn server() -> &'static TestServer {
    SERVER.get_or_init(|| {
        std::thread::spawn(setup)
            .join()
            .expect("test database setup")
    })
}

/// A database of its own for one test, dropped when the test ends.
pub struct TestDb {
    pub name: String,
    /// As the service role, like the service.
    pub url: String,
    /// As the schema owner, like the migrations.
    pub owner_url: String,
}

impl TestDb {
    pub async fn new() -> TestDb {
        let server = server();
        let name = format!("gl_test_{}", Uuid::new_v4().simple());
        let mut conn = AsyncPgConnection::establish(&server.url("postgres"))
            .await
            .expect("connect");
        db::create_database_on(&mut conn, &name, Some(&server.template))
            .await
            .expect("clone the template");
        TestDb {
            url: server.url_as(db::SERVICE_ROLE, &name),
            owner_url: server.url_as(db::OWNER_ROLE, &name),
            name,
        }
    }

    /// An empty database owned by the schema owner, no migration run (for the migration
    /// tests), dropped like the others.
    pub async fn empty() -> TestDb {
        let server = server();
        let name = format!("gl_test_{}", Uuid::new_v4().simple());
        let mut conn = AsyncPgConnection::establish(&server.url("postgres"))
            .await
            .expect("connect");
        db::create_database_on(&mut conn, &name, None)
            .await
            .expect("create an empty database");
        TestDb {
            url: server.url_as(db::SERVICE_ROLE, &name),
            owner_url: server.url_as(db::OWNER_ROLE, &name),
            name,
        }
    }

    /// Its connection string as the superuser the harness was given.
    pub fn superuser_url(&self) -> String {
        server().url(&self.name)
    }

    /// A connection as the service role.
    pub async fn conn(&self) -> AsyncPgConnection {
        AsyncPgConnection::establish(&self.url)
            .await
            .expect("connect to the test database")
    }

    /// A connection as the schema owner (what the service may not do, the owner can).
    pub async fn owner_conn(&self) -> AsyncPgConnection {
        AsyncPgConnection::establish(&self.owner_url)
            .await
            .expect("connect to the test database as its owner")
    }

    pub fn pool(&self, size: usize) -> DbPool {
        db::pool(&self.url, size).expect("pool")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let url = server().url("postgres");
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                if let Ok(mut conn) = AsyncPgConnection::establish(&url).await {
                    let _ = diesel::sql_query(format!(
                        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                    ))
                    .execute(&mut conn)
                    .await;
                }
            });
        })
        .join();
    }
}

type Call = Rc<dyn Fn(actix_http::Request) -> LocalBoxFuture<'static, ServiceResponse<BoxBody>>>;

/// The real application, served in-process against a database of its own, on a test clock
/// as `serve --test-clock` runs it.
pub struct TestApp {
    /// Shared with its [`TestApp::sibling`]s, dropped with the last of them.
    pub db: Rc<TestDb>,
    /// The app's test clock: tests set it at will (`PUT /v1/test-clock` only moves it
    /// forward).
    pub clock: Arc<FixedClock>,
    call: Call,
}

/// A response: status, headers and the parsed JSON body.
pub struct Reply {
    pub status: u16,
    pub headers: actix_web::http::header::HeaderMap,
    pub body: Value,
    pub text: String,
    /// The body as sent (a streamed one read to its end).
    pub bytes: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts a problem+json answer with this status and code, and returns its body.
    #[track_caller]
    pub fn problem(&self, status: u16, code: &str) -> &Value {
        assert_eq!(
            self.status, status,
            "unexpected status; body: {}",
            self.text
        );
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "body: {}",
            self.text
        );
        assert_eq!(self.body["code"], code, "body: {}", self.text);
        assert_eq!(self.body["status"], status);
        assert_eq!(
            self.body["type"],
            format!("urn:grandlivre:problem:{}", code.replace('_', "-"))
        );
        assert!(self.body["title"].is_string() && self.body["detail"].is_string());
        assert_eq!(
            self.body["request_id"].as_str(),
            self.header("x-request-id"),
            "problem names its request"
        );
        &self.body
    }
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::serve(Rc::new(TestDb::new().await), Utc::now()).await
    }

    /// Another instance of the application on the same database, with its own state (its
    /// own pool and key cache), as another process of the service would be.
    pub async fn sibling(&self) -> TestApp {
        Self::serve(self.db.clone(), grandlivre::clock::Clock::now(&*self.clock)).await
    }

    async fn serve(db: Rc<TestDb>, now: chrono::DateTime<Utc>) -> TestApp {
        let pool = db.pool(8);
        let service_clock = ServiceClock::new(true, Some(now));
        let clock = service_clock.test_clock().cloned().expect("a test clock");
        let state = grandlivre::startup::state(pool, service_clock);
        let doc = web::Data::new(OpenApiJson(grandlivre::openapi::document_json()));
        let service = Rc::new(test::init_service(grandlivre::startup::app(state, doc)).await);
        let call: Call = Rc::new(move |req| {
            let service = service.clone();
            Box::pin(async move {
                match service.call(req).await {
                    Ok(res) => res.map_into_boxed_body(),
                    Err(e) => panic!("service error escaped the error handlers: {e}"),
                }
            })
        });
        TestApp { db, clock, call }
    }

    pub async fn key(&self, role: Role, customer: Option<Uuid>) -> String {
        let mut conn = self.db.conn().await;
        auth::create_key(&mut conn, role, customer, Some("test"))
            .await
            .expect("create key")
            .1
    }

    pub async fn admin(&self) -> String {
        self.key(Role::Admin, None).await
    }

    pub async fn send(&self, req: TestRequest) -> Reply {
        let res = (self.call)(req.to_request()).await;
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let bytes = actix_web::body::to_bytes(res.into_body())
            .await
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            body,
            text,
            bytes: bytes.to_vec(),
        }
    }

    pub async fn get(&self, key: &str, path: &str) -> Reply {
        self.send(
            TestRequest::get()
                .uri(path)
                .insert_header(("Authorization", format!("Bearer {key}"))),
        )
        .await
    }

    pub async fn post_json(
        &self,
        key: &str,
        path: &str,
        idempotency: Option<&str>,
        body: &Value,
    ) -> Reply {
        let mut req = TestRequest::post()
            .uri(path)
            .insert_header(("Authorization", format!("Bearer {key}")))
            .insert_header(("Content-Type", "application/json"))
            .set_payload(body.to_string());
        if let Some(k) = idempotency {
            req = req.insert_header(("Idempotency-Key", k));
        }
        self.send(req).await
    }
}

impl TestApp {
    pub async fn patch_json(&self, key: &str, path: &str, body: &Value) -> Reply {
        self.send(
            TestRequest::patch()
                .uri(path)
                .insert_header(("Authorization", format!("Bearer {key}")))
                .insert_header(("Content-Type", "application/json"))
                .set_payload(body.to_string()),
        )
        .await
    }
}

pub fn d(s: &str) -> chrono::NaiveDate {
    s.parse().expect("a date")
}

/// 00:00 Paris on `date`.
pub fn paris(date: &str) -> chrono::DateTime<Utc> {
    grandlivre::calendar::paris_midnight(d(date))
}

/// An app whose database holds the demo catalog, customers and mandate.
pub async fn seeded() -> (TestApp, AsyncPgConnection) {
    let app = TestApp::spawn().await;
    let mut conn = app.db.conn().await;
    grandlivre::demo::seed(&mut conn, Utc::now())
        .await
        .expect("seed");
    (app, conn)
}

/// Subscribes `customer` to `offer` from `start` (an add-on when `parent` is given).
pub async fn subscribe(
    conn: &mut AsyncPgConnection,
    customer: Uuid,
    offer: &str,
    start: &str,
    parent: Option<Uuid>,
) -> Uuid {
    let req = grandlivre::subscriptions::NewSubscription {
        customer_id: customer,
        offer_code: offer.into(),
        start_date: Some(d(start)),
        parent_id: parent,
    };
    grandlivre::subscriptions::store::create(conn, &req, None, paris(start))
        .await
        .expect("subscribe")
        .0
}

/// A request of the ticketing system for `customer` under `reference`, occurred and declared
/// at `at`, of `kind` (`intervention`, `appointment`, `service_purchase` of `service`).
pub fn authorization_request(
    customer: Uuid,
    reference: &str,
    kind: &str,
    service: Option<&str>,
    preferred_funding: &str,
    at: chrono::DateTime<Utc>,
) -> grandlivre::authorizations::store::AuthorizationRequest {
    serde_json::from_value(serde_json::json!({
        "customer_id": customer,
        "request_ref": reference,
        "kind": kind,
        "service_code": service,
        "classification": {"type": "in_scope"},
        "priority": "high",
        "requester": {"certified": false, "learning_phase_end": null},
        "occurred_at": at,
        "declared_at": at,
        "preferred_funding": preferred_funding
    }))
    .expect("an authorization request")
}

/// What production does to consume: decides `req` at `at` (the code behind
/// `POST /v1/authorizations`) and captures in full what it holds (behind
/// `POST /v1/authorizations/{id}/capture`). A replay of the ref captures nothing more and
/// returns the first authorization; a denial returns its reason.
pub async fn authorize_and_capture(
    conn: &mut AsyncPgConnection,
    req: &grandlivre::authorizations::store::AuthorizationRequest,
    at: chrono::DateTime<Utc>,
) -> Result<
    grandlivre::authorizations::store::AuthorizationView,
    grandlivre::authorizations::decision::Reason,
> {
    use grandlivre::authorizations::{decision::Decision, store as authz};
    let (view, replayed) = authz::authorize(conn, req, at, &Default::default())
        .await
        .expect("a decision");
    if view.decision == Decision::Denied {
        return Err(view.reason);
    }
    if replayed {
        return Ok(view);
    }
    Ok(authz::capture(conn, view.id, authz::Capture::default(), at)
        .await
        .expect("a capture"))
}

/// A service sold for `credits` service credits (and 100.00 HT), created once.
pub async fn credit_service(
    conn: &mut AsyncPgConnection,
    credits: rust_decimal::Decimal,
) -> String {
    use grandlivre::catalog::{self, BillingPeriod, Offer, PriceBasis, PriceVersion};
    use grandlivre::money::DecimalString;
    let code = format!(
        "service_{}",
        (credits * rust_decimal::Decimal::ONE_HUNDRED).trunc()
    );
    let offer = Offer {
        code: code.clone(),
        name: format!("A service for {credits} credits"),
        billing_period: BillingPeriod::Once,
        price_basis: PriceBasis::Ht,
        vat_rate: DecimalString("0.20".parse().expect("a rate")),
        commitment_months: 0,
        renewal_months: 0,
        notice_days: 0,
        early_termination_rate: DecimalString(rust_decimal::Decimal::ONE),
        sepa_required: false,
        activation_on_payment: false,
        addon: false,
        entitlements: Default::default(),
        credit_price: Some(DecimalString(credits)),
        increment_minutes: None,
        role: None,
    };
    assert_eq!(offer.validate(), Ok(()));
    if catalog::store::insert(conn, &offer)
        .await
        .expect("insert the offer")
    {
        let price = PriceVersion {
            effective_from: d("2020-01-01"),
            unit_price: DecimalString("100.00".parse().expect("a price")),
        };
        catalog::store::add_price(conn, &code, &price)
            .await
            .expect("price the offer");
    }
    code
}

/// Uses `credits` service credits of `customer` at `at` under `reference`, as production
/// does: a service priced that many credits, authorized in credits, captured in full.
pub async fn use_credits(
    conn: &mut AsyncPgConnection,
    customer: Uuid,
    credits: rust_decimal::Decimal,
    reference: &str,
    at: chrono::DateTime<Utc>,
) -> Result<
    grandlivre::authorizations::store::AuthorizationView,
    grandlivre::authorizations::decision::Reason,
> {
    let service = credit_service(conn, credits).await;
    let req = authorization_request(
        customer,
        reference,
        "service_purchase",
        Some(&service),
        "credits",
        at,
    );
    authorize_and_capture(conn, &req, at).await
}

impl TestApp {
    /// Sends `n` identical POSTs with one `Idempotency-Key` at once and checks that one
    /// created (201) and every other replayed it (200, the same body,
    /// `Idempotent-Replayed: true`). The created body.
    pub async fn post_concurrently_once(
        &self,
        key: &str,
        path: &str,
        idempotency: &str,
        body: &Value,
        n: usize,
    ) -> Value {
        let replies = futures_util::future::join_all(
            (0..n).map(|_| self.post_json(key, path, Some(idempotency), body)),
        )
        .await;
        let texts: Vec<&str> = replies.iter().map(|r| r.text.as_str()).collect();
        let created: Vec<&Reply> = replies.iter().filter(|r| r.status == 201).collect();
        assert_eq!(created.len(), 1, "one creation: {texts:?}");
        for reply in replies.iter().filter(|r| r.status != 201) {
            assert_eq!(reply.status, 200, "{}", reply.text);
            assert_eq!(reply.header("idempotent-replayed"), Some("true"));
            assert_eq!(reply.body, created[0].body, "the first answer, as it was");
        }
        created[0].body.clone()
    }

    /// Runs `requests` while another session holds the rows `lock` selects `FOR UPDATE`,
    /// and lets them go once `waiting` sessions wait for a lock: concurrent requests meet
    /// on those rows for certain, not by luck of scheduling.
    pub async fn while_rows_are_held<T>(
        &self,
        lock: &str,
        waiting: i64,
        requests: impl std::future::Future<Output = T>,
    ) -> T {
        #[derive(diesel::QueryableByName)]
        struct Waiting {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let mut holder = self.db.conn().await;
        diesel::sql_query("BEGIN")
            .execute(&mut holder)
            .await
            .unwrap();
        diesel::sql_query(format!("{lock} FOR UPDATE"))
            .execute(&mut holder)
            .await
            .unwrap();
        let release = async {
            let mut watcher = self.db.conn().await;
            for _ in 0..300 {
                let w: Waiting = diesel::sql_query(
                    "SELECT count(*) AS n FROM pg_stat_activity \
                     WHERE datname = current_database() AND wait_event_type = 'Lock'",
                )
                .get_result(&mut watcher)
                .await
                .unwrap();
                if w.n >= waiting {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            diesel::sql_query("COMMIT")
                .execute(&mut holder)
                .await
                .unwrap();
        };
        let (out, ()) = futures_util::join!(requests, release);
        out
    }
}

impl TestApp {
    /// `GET /v1/ledger/verify` (with `key`) finds every balance equal to its postings and
    /// every transaction balanced.
    pub async fn assert_ledger_verifies(&self, key: &str) {
        let verify = self.get(key, "/v1/ledger/verify").await;
        assert_eq!(
            (
                &verify.body["mismatches"],
                &verify.body["unbalanced_transactions"]
            ),
            (&serde_json::json!([]), &serde_json::json!([])),
            "{}",
            verify.text
        );
    }

    /// A misdeclared incident of `customer` (chargeable, hourly) authorized with the
    /// ticketing `key` at the clock's instant and captured for `minutes`: its
    /// intervention sheet's id.
    pub async fn misdeclared_sheet(
        &self,
        key: &str,
        customer: Uuid,
        reference: &str,
        minutes: i64,
    ) -> String {
        let body = serde_json::json!({
            "customer_id": customer,
            "request_ref": reference,
            "kind": "intervention",
            "classification": {"type": "misdeclared"},
            "priority": "high",
            "requester": {"certified": false, "learning_phase_end": null},
            "occurred_at": "2026-11-20T09:00:00+01:00",
            "declared_at": "2026-11-20T10:00:00+01:00",
            "preferred_funding": "auto"
        });
        let decided = self.post_json(key, "/v1/authorizations", None, &body).await;
        assert_eq!(decided.body["hourly"], true, "{}", decided.text);
        let id = decided.body["id"].as_str().unwrap();
        let captured = self
            .post_json(
                key,
                &format!("/v1/authorizations/{id}/capture"),
                None,
                &serde_json::json!({ "minutes": minutes }),
            )
            .await;
        captured.body["intervention_id"]
            .as_str()
            .unwrap_or_else(|| panic!("no sheet: {}", captured.text))
            .to_string()
    }
}

/// The posted balance of the customer's account `code`, as the API shows it.
pub async fn balance(app: &TestApp, key: &str, customer: Uuid, code: &str) -> Decimal {
    let accounts = app
        .get(
            key,
            &format!("/v1/ledger/accounts?customer_id={customer}&limit=200"),
        )
        .await;
    assert_eq!(accounts.status, 200, "{}", accounts.text);
    accounts.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["code"] == code)
        .map_or(Decimal::ZERO, |a| {
            a["balance"]["posted"].as_str().unwrap().parse().unwrap()
        })
}

/// A new customer (Atelier Dupont SARL), created by `key` under the idempotency key `idem`.
pub async fn new_customer(app: &TestApp, key: &str, idem: &str) -> Uuid {
    let created = app
        .post_json(
            key,
            "/v1/customers",
            Some(idem),
            &json!({
                "legal_name": "Atelier Dupont SARL",
                "siren": "732829320",
                "vat_number": "FR44732829320",
                "billing_email": "compta@atelier-dupont.fr",
                "address": {"street_number": "12", "street": "Rue de la Paix", "postcode": "75002", "town": "Paris", "country": "FR"}
            }),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    created.body["id"].as_str().unwrap().parse().unwrap()
}

/// Pays what `customer` owes as finance would, through the API: runs the `invoicing` job
/// (which issues nothing new where purchases were invoiced at once), then `POST
/// /v1/payments` of what its open invoices still ask, under `reference`, with the value
/// date `value_date` (default: the app clock's Paris date). Answers the payment's body, or
/// `None` when nothing was owed.
pub async fn pay_invoice_of(
    app: &TestApp,
    customer: Uuid,
    reference: &str,
    value_date: Option<&str>,
) -> Option<Value> {
    let admin = app.admin().await;
    let now = grandlivre::clock::Clock::now(&*app.clock);
    // charges made through the store at the wall clock's time are invoiced too
    let as_of = now.max(Utc::now()) + chrono::Duration::seconds(1);
    app.run_job("invoicing", as_of).await;
    let balances = app
        .get(&admin, &format!("/v1/customers/{customer}/balances"))
        .await;
    assert_eq!(balances.status, 200, "{}", balances.text);
    let owed = balances.body["amount_owed"].as_str().expect("amount_owed");
    if owed.parse::<rust_decimal::Decimal>().expect("a decimal") <= rust_decimal::Decimal::ZERO {
        return None;
    }
    let value_date = value_date
        .map(str::to_string)
        .unwrap_or_else(|| grandlivre::calendar::paris_date(now).to_string());
    let paid = app
        .post_json(
            &admin,
            "/v1/payments",
            None,
            &serde_json::json!({
                "customer_id": customer,
                "amount": owed,
                "method": "transfer",
                "reference": reference,
                "value_date": value_date,
            }),
        )
        .await;
    assert!(
        paid.status == 201 || paid.status == 200,
        "payment: {}",
        paid.text
    );
    Some(paid.body)
}

/// Pays `amount` of `invoice` (as the API shows it) by bank transfer with value date
/// `value_date`, naming it, through `POST /v1/payments` as finance would; the reference
/// is made of the invoice's number and the amount.
pub async fn pay_invoice(app: &TestApp, invoice: &Value, amount: &str, value_date: &str) {
    let admin = app.admin().await;
    let number = invoice["number"].as_str().expect("an invoice number");
    let paid = app
        .post_json(
            &admin,
            "/v1/payments",
            None,
            &json!({
                "customer_id": invoice["customer_id"],
                "amount": amount,
                "method": "transfer",
                "reference": format!("VIR-{number}-{amount}"),
                "value_date": value_date,
                "invoice_ids": [invoice["id"]],
            }),
        )
        .await;
    assert_eq!(paid.status, 201, "{}", paid.text);
}

impl TestApp {
    /// Runs the job `job` for `as_of` through `POST /v1/jobs/{job}/run` with an admin key,
    /// and answers its report.
    pub async fn run_job(&self, job: &str, as_of: chrono::DateTime<Utc>) -> Value {
        let admin = self.admin().await;
        let ran = self
            .post_json(
                &admin,
                &format!("/v1/jobs/{job}/run"),
                None,
                &json!({ "as_of": as_of }),
            )
            .await;
        assert_eq!(ran.status, 200, "{job}: {}", ran.text);
        assert_eq!(ran.body["job"], job);
        ran.body
    }
}

/// `customer` buys `quantity` tickets through the API (201), under the idempotency key
/// `idem` when given; answers the purchase.
pub async fn buy_tickets(
    app: &TestApp,
    key: &str,
    customer: Uuid,
    quantity: u32,
    idem: Option<&str>,
) -> Value {
    let bought = app
        .post_json(
            key,
            &format!("/v1/customers/{customer}/ticket-purchases"),
            idem,
            &json!({ "quantity": quantity }),
        )
        .await;
    assert_eq!(bought.status, 201, "{}", bought.text);
    bought.body
}
