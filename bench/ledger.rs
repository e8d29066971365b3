//! Ledger `post` throughput against pgbench's TPC-B-like script, in one run, on one
//! private cluster (PostgreSQL defaults: every commit flushed), at the same client count.
//!
//!     cargo bench --bench ledger            # 20 s per measurement
//!     BENCH_SECONDS=60 BENCH_CLIENTS=8 cargo bench --bench ledger
//!     BENCH_ONLY=authz cargo bench --bench ledger   # pgbench and one measurement
//!     BENCH_ONLY=invoicing cargo bench --bench ledger   # pgbench and the invoice run
//!     BENCH_ONLY=invoicing,documents cargo bench --bench ledger   # and the PDFs
//!
//! (d) an invoice run over 10,000 customers with three charges each (set up with SQL),
//!     through the production run engine (`invoicing::store_runs::run_to_end`, what
//!     `POST /v1/invoice-runs` and `jobs run invoicing` run): invoices per second, the
//!     run's wall time, the process's peak RSS growth during the run (sampled every 2 ms)
//!     and its VmHWM; then numbers are checked to be F<year>-000001..N, no gap, N the
//!     invoices issued. Target: at least 500 invoices per second.
//! (e) after (d): the Factur-X PDFs of 200 of its invoices (`invoicing::pdf::invoice`, what
//!     `GET /v1/invoices/{id}/pdf` answers: typst layout, PDF/A-3b, CII embedded), on one
//!     thread per core for BENCH_SECONDS: PDFs per second. Target: at least 50.
//!
//! (c) the authorization of a ticketing request (decision + hold) followed by its capture,
//!     through the Rust API, over 1,000 customers with mixed entitlements; then over HTTP
//!     against the service running in this process (2 workers) on the same database: the
//!     authorization alone (`POST /v1/authorizations`), then authorization + capture pairs.
//!
//! Everything runs as the service's role (`grandlivre_service`, which may only EXECUTE
//! the ledger functions); the databases are migrated by the schema owner. For each
//! measurement the server time per operation is read from `pg_stat_statements` (total
//! execution time of each statement ÷ operations), reset after the warm-up.
//!
//! (a) pgbench -b tpcb-like at scale = clients (pgbench's advice: scale ≥ clients).
//! (b) grandlivre's `ledger::store::post` of a two-posting transaction with a fresh
//!     idempotency key each time, through a pool of `clients` connections, between two of
//!     1,000 pre-funded no-overdraft wallets chosen at random (customer-scoped accounts:
//!     the ledger's design keeps hot paths off shared rows).

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use grandlivre::db;
use grandlivre::ledger::store::{self, NewAccount};
use grandlivre::ledger::{NewTransaction, Posting, Side};
use grandlivre::money::{Amount, Unit};
use grandlivre::pg_cluster::{scratch_dir, Cluster, Durability};
use rand::Rng;
use rust_decimal::Decimal;

const WALLETS: usize = 1000;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Run {
    tps: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// Server time per operation by statement: (ms, calls, statement).
    statements: Vec<(f64, f64, String)>,
}

impl Run {
    fn skipped() -> Run {
        Run {
            tps: f64::NAN,
            p50_ms: f64::NAN,
            p99_ms: f64::NAN,
            statements: Vec::new(),
        }
    }
}

/// `BENCH_ONLY=authz` (or `ledger`) runs that measurement only, beside pgbench.
fn wanted(name: &str) -> bool {
    std::env::var("BENCH_ONLY").map_or(true, |only| only.split(',').any(|o| o == name))
}

fn pgbench(cluster: &Cluster, clients: u64, seconds: u64) -> Run {
    let tool = cluster.bin_dir().join("pgbench");
    let socket = cluster.data_dir().to_string_lossy().to_string();
    let common = |cmd: &mut Command| {
        cmd.args(["-h", &socket, "-U", "postgres"]);
    };
    let mut init = Command::new(&tool);
    common(&mut init);
    init.args(["-i", "-q", "-s", &clients.to_string(), "bench_pgbench"]);
    let out = init.output().expect("run pgbench -i");
    assert!(
        out.status.success(),
        "pgbench -i failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut run = Command::new(&tool);
    common(&mut run);
    run.args([
        "-b",
        "tpcb-like",
        "-n",
        "-r",
        "-c",
        &clients.to_string(),
        "-j",
        &clients.min(2).to_string(),
        "-T",
        &seconds.to_string(),
        "--log",
        "--log-prefix",
        &std::env::temp_dir()
            .join("grandlivre-pgbench")
            .to_string_lossy(),
        "bench_pgbench",
    ]);
    let out = run.output().expect("run pgbench");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "pgbench failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tps = text
        .lines()
        .find(|l| l.starts_with("tps = "))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|v| v.parse().ok())
        .expect("pgbench printed its tps");
    // per-transaction latencies from the logs (column 3, microseconds)
    let mut latencies: Vec<f64> = Vec::new();
    for entry in std::fs::read_dir(std::env::temp_dir())
        .expect("temp dir")
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with("grandlivre-pgbench.") {
            let log = std::fs::read_to_string(entry.path()).unwrap_or_default();
            latencies.extend(
                log.lines()
                    .filter_map(|l| l.split_whitespace().nth(2)?.parse::<f64>().ok())
                    .map(|us| us / 1000.0),
            );
            let _ = std::fs::remove_file(entry.path());
        }
    }
    let (p50_ms, p99_ms) = percentiles(&mut latencies);
    Run {
        tps,
        p50_ms,
        p99_ms,
        statements: Vec::new(),
    }
}

fn percentiles(ms: &mut [f64]) -> (f64, f64) {
    if ms.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() as f64 - 1.0) * q).round() as usize];
    (at(0.50), at(0.99))
}

async fn ledger(urls: &Urls, clients: u64, seconds: u64) -> Run {
    db::run_migrations(&urls.owner).await.expect("migrate");
    let url = &urls.service;
    let mut conn = AsyncPgConnection::establish(url).await.expect("connect");
    let mut wallets = Vec::with_capacity(WALLETS);
    for i in 0..WALLETS {
        let customer = uuid::Uuid::now_v7();
        let account = |code: &str, side, no_overdraft| NewAccount {
            code: code.into(),
            name: format!("bench {code} {i}"),
            unit: Unit::Eur,
            customer_id: Some(customer),
            normal_side: side,
            no_overdraft,
        };
        let wallet = store::ensure_account(&conn, &account("WALLET", Side::Credit, true))
            .await
            .expect("wallet")
            .id;
        let funding = store::ensure_account(&conn, &account("FUNDING", Side::Debit, false))
            .await
            .expect("funding")
            .id;
        let amount = Amount::new(Decimal::new(1_000_000_000, 0), Unit::Eur).expect("amount");
        let grant = NewTransaction::new(
            format!("fund-{i}"),
            "bench.fund",
            vec![
                Posting::debit(funding, amount),
                Posting::credit(wallet, amount),
            ],
        )
        .expect("balanced");
        store::post(&mut conn, &grant).await.expect("fund");
        wallets.push(wallet);
    }
    urls.vacuum().await;
    drive(urls, clients, seconds, Transfers(Arc::new(wallets))).await
}

/// Runs `sql` on a connection of its own to `url`.
async fn execute(url: &str, sql: &str) {
    let mut conn = AsyncPgConnection::establish(url).await.expect("connect");
    diesel::sql_query(sql)
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// One database of the bench, as the schema owner and as the service.
struct Urls {
    owner: String,
    service: String,
    /// As the superuser, for pg_stat_statements.
    superuser: String,
}

impl Urls {
    fn of(cluster: &Cluster, db: &str) -> Urls {
        Urls {
            owner: cluster.connection_string_as(db::OWNER_ROLE, db),
            service: cluster.connection_string_as(db::SERVICE_ROLE, db),
            superuser: cluster.connection_string(db),
        }
    }

    /// `VACUUM ANALYZE` as the owner (the service owns no table).
    async fn vacuum(&self) {
        execute(&self.owner, "VACUUM ANALYZE").await;
    }

    /// Clears pg_stat_statements.
    async fn reset_statements(&self) {
        execute(&self.superuser, "SELECT pg_stat_statements_reset()").await;
    }

    /// The statements of this database by total execution time since the reset: (ms per
    /// operation, calls per operation, the statement).
    async fn statements(&self, operations: usize) -> Vec<(f64, f64, String)> {
        #[derive(diesel::QueryableByName)]
        struct Row {
            #[diesel(sql_type = diesel::sql_types::Double)]
            total_ms: f64,
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            calls: i64,
            #[diesel(sql_type = diesel::sql_types::Text)]
            query: String,
        }
        let mut conn = AsyncPgConnection::establish(&self.superuser)
            .await
            .expect("connect");
        let rows: Vec<Row> = diesel::sql_query(
            "SELECT total_exec_time AS total_ms, calls, query FROM pg_stat_statements
              WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
                AND query NOT LIKE '%pg_stat_statements%'
              ORDER BY total_exec_time DESC LIMIT 8",
        )
        .load(&mut conn)
        .await
        .expect("read pg_stat_statements");
        let n = operations.max(1) as f64;
        rows.into_iter()
            .map(|r| {
                let query: String = r.query.split_whitespace().collect::<Vec<_>>().join(" ");
                let shown: String = query.chars().take(90).collect();
                (r.total_ms / n, r.calls as f64 / n, shown)
            })
            .collect()
    }
}

/// One operation of a load: does it under `key` (unique per operation) and returns the
/// milliseconds that count.
trait Workload: Clone + Send + Sync + 'static {
    fn step(
        &self,
        conn: &mut AsyncPgConnection,
        key: String,
    ) -> impl std::future::Future<Output = f64> + Send;
}

/// `clients` clients looping on `load` through a pool: 3 s of warm-up, then `seconds`
/// measured.
async fn drive<W: Workload>(urls: &Urls, clients: u64, seconds: u64, load: W) -> Run {
    let pool = db::pool(&urls.service, clients as usize).expect("pool");
    let run_for = |duration: Duration, label: &'static str| {
        let stop = Arc::new(AtomicBool::new(false));
        let tasks: Vec<_> = (0..clients)
            .map(|c| {
                let (pool, load, stop) = (pool.clone(), load.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut conn = pool.get().await.expect("connection");
                    let mut latencies = Vec::new();
                    let mut n = 0u64;
                    while !AtomicBool::load(&stop, Ordering::Relaxed) {
                        latencies.push(load.step(&mut conn, format!("{label}-{c}-{n}")).await);
                        n += 1;
                    }
                    latencies
                })
            })
            .collect();
        async move {
            tokio::time::sleep(duration).await;
            stop.store(true, Ordering::Relaxed);
            let mut all = Vec::new();
            for t in tasks {
                all.extend(t.await.expect("task"));
            }
            all
        }
    };
    run_for(Duration::from_secs(3), "warmup").await;
    // steady state: the tables the warm-up filled have the statistics autovacuum would
    // give them (it analyzes a table once 10% of it changed, checking every minute)
    execute(&urls.owner, "ANALYZE").await;
    urls.reset_statements().await;
    let start = Instant::now();
    let mut latencies = run_for(Duration::from_secs(seconds), "run").await;
    let tps = latencies.len() as f64 / start.elapsed().as_secs_f64();
    let statements = urls.statements(latencies.len()).await;
    let (p50_ms, p99_ms) = percentiles(&mut latencies);
    Run {
        tps,
        p50_ms,
        p99_ms,
        statements,
    }
}

/// A transfer between two random wallets, timed.
#[derive(Clone)]
struct Transfers(Arc<Vec<grandlivre::ledger::AccountId>>);

impl Workload for Transfers {
    async fn step(&self, conn: &mut AsyncPgConnection, key: String) -> f64 {
        let wallets = &self.0;
        let (a, b, cents) = {
            let mut rng = rand::rng();
            let a = rng.random_range(0..wallets.len());
            let b = (a + rng.random_range(1..wallets.len())) % wallets.len();
            (a, b, rng.random_range(1..10_000))
        };
        let amount = Amount::new(Decimal::new(cents, 2), Unit::Eur).expect("amount");
        let tx = NewTransaction::new(
            key,
            "bench.transfer",
            vec![
                Posting::debit(wallets[a], amount),
                Posting::credit(wallets[b], amount),
            ],
        )
        .expect("balanced");
        let start = Instant::now();
        store::post(conn, &tx).await.expect("post");
        start.elapsed().as_secs_f64() * 1000.0
    }
}

/// A ticketing request for one of the customers (`kind`: what it holds, see `authorizations`).
fn request(
    customer: uuid::Uuid,
    kind: u32,
    key: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> serde_json::Value {
    let (kind_name, classification, service) = match kind {
        2 => (
            "service_purchase",
            serde_json::json!({"type": "in_scope"}),
            Some("training"),
        ),
        3 => (
            "intervention",
            serde_json::json!({"type": "misdeclared"}),
            None,
        ),
        4 => ("appointment", serde_json::json!({"type": "in_scope"}), None),
        _ => (
            "intervention",
            serde_json::json!({"type": "in_scope"}),
            None,
        ),
    };
    serde_json::json!({
        "customer_id": customer,
        "request_ref": key,
        "kind": kind_name,
        "classification": classification,
        "priority": "high",
        "requester": {"certified": false, "learning_phase_end": null},
        "occurred_at": now - chrono::Duration::minutes(30),
        "declared_at": now,
        "service_code": service,
        "preferred_funding": "auto"
    })
}

/// What a capture reports: 20 minutes of work (used when the authorization is hourly).
const CAPTURE: grandlivre::authorizations::store::Capture =
    grandlivre::authorizations::store::Capture {
        minutes: Some(20),
        units: None,
    };

/// An authorization for a random customer, timed, then its capture (not timed).
#[derive(Clone)]
struct Authorizations(Arc<Vec<(uuid::Uuid, u32)>>);

impl Workload for Authorizations {
    async fn step(&self, conn: &mut AsyncPgConnection, key: String) -> f64 {
        use grandlivre::authorizations::store::{self as authz, AuthorizationRequest};
        let (customer, kind) = self.0[rand::rng().random_range(0..self.0.len())];
        let now = chrono::Utc::now();
        let req: AuthorizationRequest =
            serde_json::from_value(request(customer, kind, &key, now)).expect("request");
        let start = Instant::now();
        let hours = grandlivre::calendar::BusinessHours::default();
        let (view, _) = authz::authorize(conn, &req, now, &hours)
            .await
            .expect("authorize");
        let ms = start.elapsed().as_secs_f64() * 1000.0;
        if view.status == authz::AuthorizationStatus::Open {
            authz::capture(conn, view.id, CAPTURE, now)
                .await
                .expect("capture");
        }
        ms
    }
}

/// The same over HTTP: `POST /v1/authorizations` (timed), then (when `capture`) its
/// capture, against the service running on the same cluster, with a ticketing key.
#[derive(Clone)]
struct OverHttp {
    customers: Arc<Vec<(uuid::Uuid, u32)>>,
    client: reqwest::Client,
    base: String,
    key: String,
    capture: bool,
}

impl Workload for OverHttp {
    async fn step(&self, _conn: &mut AsyncPgConnection, key: String) -> f64 {
        let (customer, kind) = self.customers[rand::rng().random_range(0..self.customers.len())];
        // refs of their own: the direct run used the same keys on the same database
        let body = request(
            customer,
            kind,
            &format!("http-{}-{key}", self.capture),
            chrono::Utc::now(),
        );
        let start = Instant::now();
        let response = self
            .client
            .post(format!("{}/v1/authorizations", self.base))
            .bearer_auth(&self.key)
            .json(&body)
            .send()
            .await
            .expect("authorize");
        assert_eq!(response.status(), 201, "authorize");
        let view: serde_json::Value = response.json().await.expect("authorization");
        let ms = start.elapsed().as_secs_f64() * 1000.0;
        if self.capture && view["status"] == "open" {
            let response = self
                .client
                .post(format!(
                    "{}/v1/authorizations/{}/capture",
                    self.base,
                    view["id"].as_str().unwrap_or_default()
                ))
                .bearer_auth(&self.key)
                .json(&CAPTURE)
                .send()
                .await
                .expect("capture");
            assert_eq!(response.status(), 200, "capture");
        }
        ms
    }
}

/// 1,000 customers with mixed entitlements: fibre (maintenance), paid tickets, Service+
/// credits (service purchases), nothing (misdeclared incidents, chargeable), an
/// Assistance+ pack (appointments: quota, then overage). Each client
/// authorizes (decision + hold) then captures, in a loop.
async fn authorizations(urls: &Urls, clients: u64, seconds: u64) -> [Run; 3] {
    db::run_migrations(&urls.owner).await.expect("migrate");
    let url = &urls.service;
    let mut conn = AsyncPgConnection::establish(url).await.expect("connect");
    let now = chrono::Utc::now();
    grandlivre::demo::seed(&mut conn, now).await.expect("seed");
    let mut customers = Vec::with_capacity(1000);
    for i in 0..1000u32 {
        let id = uuid::Uuid::now_v7();
        let fields = grandlivre::customers::CustomerFields {
            legal_name: format!("Bench {i}"),
            siren: "900000019".into(),
            siret: None,
            vat_number: None,
            billing_email: "bench@example.org".into(),
            address: grandlivre::customers::Address {
                street_number: None,
                street: "Rue".into(),
                postcode: "75001".into(),
                town: "Paris".into(),
                country: "FR".into(),
            },
        };
        grandlivre::customers::store::create(&mut conn, id, &fields, None, now)
            .await
            .expect("customer");
        let start = Some(grandlivre::calendar::paris_date(now) - chrono::Duration::days(30));
        let subscribe =
            |offer: &str, parent| NewSubscriptionReq(id, offer.to_string(), start, parent);
        // premium assistance with the pack `pack` on it
        let with_pack = async |conn: &mut AsyncPgConnection, pack: &str| {
            let parent = subscribe("premium_assistance", None)
                .create(conn, now)
                .await;
            subscribe(pack, Some(parent)).create(conn, now).await;
        };
        match i % 5 {
            4 => with_pack(&mut conn, "assistance_plus_pack").await,
            0 => {
                diesel::sql_query(format!(
                    "INSERT INTO mandates (id, customer_id, reference, signed_on) VALUES ('{}', '{id}', 'B-{i}', '2026-01-01')",
                    uuid::Uuid::now_v7()
                ))
                .execute(&mut conn)
                .await
                .expect("mandate");
                subscribe("ip_access_fibre", None)
                    .create(&mut conn, now)
                    .await;
            }
            1 => {
                let (p, _) =
                    grandlivre::wallets::store::buy_tickets(&mut conn, id, 1000, None, now)
                        .await
                        .expect("tickets");
                // invoiced (now, or already at purchase) and paid as finance would: the
                // payment releases the tickets
                grandlivre::invoicing::store::issue_for_customer(&mut conn, id, now, now)
                    .await
                    .expect("invoice");
                let due: Decimal =
                    grandlivre::invoicing::store_settlements::open_invoices(&mut conn, id)
                        .await
                        .expect("open invoices")
                        .iter()
                        .map(|i| i.due)
                        .sum();
                let payment = grandlivre::payments::NewPayment {
                    customer_id: id,
                    amount: grandlivre::money::DecimalString(due),
                    method: grandlivre::payments::PaymentMethod::Transfer,
                    reference: format!("bench-tickets-{}", p.id),
                    value_date: grandlivre::calendar::paris_date(now),
                    invoice_ids: None,
                };
                grandlivre::payments::store::receive(&mut conn, &payment, now)
                    .await
                    .expect("paid");
            }
            2 => {
                with_pack(&mut conn, "service_plus_pack").await;
                let credits =
                    Amount::new(Decimal::new(1_000_000, 0), Unit::Credit).expect("credits");
                grandlivre::wallets::store::buy_credits(&mut conn, id, credits, None, now)
                    .await
                    .expect("credits");
            }
            _ => {}
        }
        customers.push((id, i % 5));
    }
    urls.vacuum().await;
    let customers = Arc::new(customers);
    let direct = drive(urls, clients, seconds, Authorizations(customers.clone())).await;
    let (key, state) = {
        let (_, key) = grandlivre::auth::create_key(
            &mut conn,
            grandlivre::auth::Role::Ticketing,
            None,
            Some("bench"),
        )
        .await
        .expect("key");
        let pool = db::pool(url, clients as usize).expect("pool");
        (
            key,
            grandlivre::startup::state(pool, grandlivre::clock::ServiceClock::System),
        )
    };
    let (server, addr) =
        grandlivre::startup::build(state, "127.0.0.1:0", Some(2)).expect("service");
    let handle = server.handle();
    tokio::spawn(server);
    let http = OverHttp {
        customers,
        client: reqwest::Client::new(),
        base: format!("http://{addr}"),
        key,
        capture: false,
    };
    let alone = drive(urls, clients, seconds, http.clone()).await;
    let pairs = drive(
        urls,
        clients,
        seconds,
        OverHttp {
            capture: true,
            ..http
        },
    )
    .await;
    handle.stop(true).await;
    [direct, alone, pairs]
}

struct NewSubscriptionReq(
    uuid::Uuid,
    String,
    Option<chrono::NaiveDate>,
    Option<uuid::Uuid>,
);

impl NewSubscriptionReq {
    async fn create(
        self,
        conn: &mut AsyncPgConnection,
        now: chrono::DateTime<chrono::Utc>,
    ) -> uuid::Uuid {
        let req = grandlivre::subscriptions::NewSubscription {
            customer_id: self.0,
            offer_code: self.1,
            start_date: self.2,
            parent_id: self.3,
        };
        grandlivre::subscriptions::store::create(conn, &req, None, now)
            .await
            .expect("subscribe")
            .0
    }
}

const INVOICED_CUSTOMERS: u32 = 10_000;

/// What the invoice run measured.
struct InvoiceRun {
    invoices: i32,
    seconds: f64,
    peak_rss_growth_kib: u64,
    vm_hwm_kib: u64,
    numbers: String,
    /// Server time per invoice by statement.
    statements: Vec<(f64, f64, String)>,
}

/// A field of /proc/self/status, in KiB.
fn proc_status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// 10,000 customers with three charges each (two services HT at 20 %, one at 5.5 %), then
/// one invoice run over them on the run engine, timed, with its memory sampled.
async fn invoicing(urls: &Urls) -> InvoiceRun {
    db::run_migrations(&urls.owner).await.expect("migrate");
    let now = chrono::Utc::now();
    execute(
        &urls.service,
        &format!(
            "INSERT INTO customers (id, legal_name, siren, billing_email, street, postcode, town, country)
             SELECT ('00000000-0000-7000-8000-' || lpad(to_hex(i), 12, '0'))::uuid, 'Bench ' || i,
                    '900000019', 'bench@example.org', 'Rue', '75001', 'Paris', 'FR'
               FROM generate_series(1, {INVOICED_CUSTOMERS}) AS i"
        ),
    )
    .await;
    execute(
        &urls.service,
        &format!(
            "INSERT INTO charges (id, customer_id, source, description, quantity, unit_price,
                                  price_basis, vat_rate, created_at)
             SELECT gen_random_uuid(), c.id, 'one_off', 'service ' || k, k, 10.05 * k, 'ht',
                    CASE k WHEN 3 THEN 0.055 ELSE 0.2 END, '{}'
               FROM customers c CROSS JOIN generate_series(1, 3) AS k",
            (now - chrono::Duration::hours(1)).to_rfc3339()
        ),
    )
    .await;
    urls.vacuum().await;
    let pool = db::pool(
        &urls.service,
        grandlivre::invoicing::store_runs::WORKERS + 2,
    )
    .expect("pool");
    urls.reset_statements().await;
    let baseline = proc_status_kib("VmRSS:");
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let sampling = sampling.clone();
        std::thread::spawn(move || {
            let mut peak = 0;
            while AtomicBool::load(&sampling, Ordering::Relaxed) {
                peak = peak.max(proc_status_kib("VmRSS:"));
                std::thread::sleep(Duration::from_millis(2));
            }
            peak
        })
    };
    let start = Instant::now();
    let run = grandlivre::invoicing::store_runs::run_to_end(
        &pool,
        now,
        &grandlivre::clock::ServiceClock::System,
        &|_| {},
    )
    .await
    .expect("the invoice run");
    let seconds = start.elapsed().as_secs_f64();
    sampling.store(false, Ordering::Relaxed);
    let peak = sampler.join().expect("sampler");
    assert_eq!(run.customers_failed, 0, "{:?}", run.errors);
    #[derive(diesel::QueryableByName)]
    struct Numbers {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        first: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        last: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        well_formed: i64,
        #[diesel(sql_type = diesel::sql_types::Integer)]
        year: i32,
    }
    let mut conn = AsyncPgConnection::establish(&urls.service)
        .await
        .expect("connect");
    let year = chrono::Datelike::year(&grandlivre::calendar::paris_date(now));
    let numbers: Numbers = diesel::sql_query(format!(
        "SELECT count(*) AS n, coalesce(min(seq), 0) AS first, coalesce(max(seq), 0) AS last,
                count(*) FILTER (WHERE number = 'F' || year || '-' || lpad(seq::text, 6, '0')) AS well_formed,
                {year} AS year
           FROM invoices WHERE series = 'F' AND year = {year}"
    ))
    .get_result(&mut conn)
    .await
    .expect("numbers");
    let n = i64::from(run.invoices_issued);
    assert_eq!(n, i64::from(INVOICED_CUSTOMERS), "one invoice per customer");
    assert_eq!(
        (numbers.n, numbers.first, numbers.last, numbers.well_formed),
        (n, 1, n, n),
        "numbers F{}-000001..{n:06}, no gap",
        numbers.year
    );
    InvoiceRun {
        invoices: run.invoices_issued,
        seconds,
        peak_rss_growth_kib: peak.saturating_sub(baseline),
        vm_hwm_kib: proc_status_kib("VmHWM:"),
        numbers: format!("F{year}-000001..F{year}-{n:06}, no gap"),
        statements: urls.statements(INVOICED_CUSTOMERS as usize).await,
    }
}

/// pg_stat_statements on the bench cluster (a restart when it is not loaded yet).
fn track_statements(cluster: &Cluster) {
    #[derive(diesel::QueryableByName)]
    struct Loaded {
        #[diesel(sql_type = diesel::sql_types::Text)]
        shared_preload_libraries: String,
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let loaded = runtime.block_on(async {
        let mut conn = AsyncPgConnection::establish(&cluster.connection_string("postgres"))
            .await
            .expect("connect");
        let loaded: Loaded = diesel::sql_query("SHOW shared_preload_libraries")
            .get_result(&mut conn)
            .await
            .expect("show");
        let loaded = loaded
            .shared_preload_libraries
            .contains("pg_stat_statements");
        let settings: &[&str] = if loaded {
            // statements sent by the client, not those inside the functions they call
            // (tracking those costs server time of its own)
            &[
                "ALTER SYSTEM SET pg_stat_statements.track = 'top'",
                "SELECT pg_reload_conf()",
            ]
        } else {
            &["ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'"]
        };
        for sql in settings {
            diesel::sql_query(*sql)
                .execute(&mut conn)
                .await
                .expect("configure");
        }
        loaded
    });
    if !loaded {
        cluster.stop().expect("stop to load pg_stat_statements");
        cluster.ensure_running().expect("restart");
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` lists; nothing to list
    }
    let clients = env_or("BENCH_CLIENTS", 8);
    let seconds = env_or("BENCH_SECONDS", 20);
    let target = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target");
    let dir = scratch_dir(&target, "pg-bench");
    let cluster = Cluster::locate(&dir, Durability::Durable).unwrap_or_else(|e| panic!("{e}"));
    cluster.ensure_running().unwrap_or_else(|e| panic!("{e}"));
    track_statements(&cluster);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (ledger_run, authz_runs, (invoice_run, documents)) = runtime.block_on(async {
        let maintenance = cluster.connection_string("postgres");
        let mut conn = AsyncPgConnection::establish(&maintenance)
            .await
            .expect("connect");
        db::ensure_roles(&mut conn).await.expect("roles");
        for name in [
            "bench_pgbench",
            "bench_ledger",
            "bench_authz",
            "bench_invoicing",
        ] {
            diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut conn)
                .await
                .expect("drop");
            db::create_database_on(&mut conn, name, None)
                .await
                .expect("create");
            let mut in_db = AsyncPgConnection::establish(&cluster.connection_string(name))
                .await
                .expect("connect");
            diesel::sql_query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
                .execute(&mut in_db)
                .await
                .expect("pg_stat_statements");
        }
        drop(conn);
        println!(
            "grandlivre ledger bench: {clients} clients, {seconds} s per measurement, cluster {}",
            dir.display()
        );
        let ledger_run = match wanted("ledger") {
            true => ledger(&Urls::of(&cluster, "bench_ledger"), clients, seconds).await,
            false => Run::skipped(),
        };
        let authz_runs = match wanted("authz") {
            true => authorizations(&Urls::of(&cluster, "bench_authz"), clients, seconds).await,
            false => [Run::skipped(), Run::skipped(), Run::skipped()],
        };
        let invoice_run = match wanted("invoicing") {
            true => Some(invoicing(&Urls::of(&cluster, "bench_invoicing")).await),
            false => None,
        };
        let documents = match (wanted("documents"), &invoice_run) {
            (true, Some(_)) => {
                Some(documents(&Urls::of(&cluster, "bench_invoicing"), seconds).await)
            }
            _ => None,
        };
        (ledger_run, authz_runs, (invoice_run, documents))
    });
    let pg = pgbench(&cluster, clients, seconds);
    let [direct, alone, pairs] = authz_runs;
    let runs = [
        ("pgbench tpcb-like (scale = clients)", &pg),
        ("ledger post, 2 postings, idempotency key", &ledger_run),
        ("authorization + capture pairs (Rust API)", &direct),
        ("authorization alone over HTTP", &alone),
        ("authorization + capture pairs over HTTP", &pairs),
    ];
    println!();
    println!("{clients} clients, {seconds} s each; latencies: the ledger call, or the authorization call");
    println!(
        "{:<44} {:>9} {:>8} {:>8} {:>7}",
        "measurement", "per s", "p50 ms", "p99 ms", "ratio"
    );
    for (name, run) in runs {
        println!(
            "{:<44} {:>9.0} {:>8.2} {:>8.2} {:>7.2}",
            name,
            run.tps,
            run.p50_ms,
            run.p99_ms,
            run.tps / pg.tps
        );
    }
    for (name, run) in runs.iter().skip(1) {
        if run.statements.is_empty() {
            continue;
        }
        println!();
        println!("server time per operation, by statement: {name}");
        println!("{:>9} {:>7}  statement", "ms/op", "calls");
        for (ms, calls, query) in &run.statements {
            println!("{ms:>9.3} {calls:>7.2}  {query}");
        }
    }
    if let Some(run) = invoice_run {
        let per_s = f64::from(run.invoices) / run.seconds;
        println!();
        println!(
            "invoice run, {INVOICED_CUSTOMERS} customers × 3 charges (run engine, {} connections, pages of {})",
            grandlivre::invoicing::store_runs::WORKERS,
            grandlivre::invoicing::store_runs::BATCH
        );
        println!(
            "  {} invoices in {:.2} s: {per_s:.0} invoices/s (target ≥ 500), ratio to pgbench tps {:.2}",
            run.invoices,
            run.seconds,
            per_s / pg.tps
        );
        println!(
            "  peak RSS growth during the run {:.1} MiB; process VmHWM {:.1} MiB",
            run.peak_rss_growth_kib as f64 / 1024.0,
            run.vm_hwm_kib as f64 / 1024.0
        );
        println!("  numbers {}", run.numbers);
        println!("server time per invoice, by statement");
        println!("{:>9} {:>7}  statement", "ms/op", "calls");
        for (ms, calls, query) in &run.statements {
            println!("{ms:>9.3} {calls:>7.2}  {query}");
        }
    }
    if let Some((pdfs, elapsed, bytes)) = documents {
        let per_s = pdfs as f64 / elapsed;
        println!();
        println!(
            "Factur-X PDFs of the run's invoices, {} threads: {pdfs} in {elapsed:.1} s, {per_s:.0} PDFs/s (target ≥ 50), {:.0} KiB each, ratio to pgbench tps {:.3}",
            threads(),
            bytes as f64 / 1024.0,
            per_s / pg.tps
        );
    }
    if std::env::var_os("BENCH_KEEP_CLUSTER").is_none() {
        let _ = cluster.stop();
    }
}

/// Render threads: one per core.
fn threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// (e): renders the PDFs of 200 invoices of the run over and over on [`threads`] threads
/// for `seconds`: (PDFs, seconds, bytes of the last one).
async fn documents(urls: &Urls, seconds: u64) -> (u64, f64, usize) {
    use diesel::QueryDsl;
    use grandlivre::schema::invoices;
    let mut conn = AsyncPgConnection::establish(&urls.service)
        .await
        .expect("connect");
    let ids: Vec<uuid::Uuid> = invoices::table
        .select(invoices::id)
        .order(invoices::id)
        .limit(200)
        .load(&mut conn)
        .await
        .expect("invoices");
    let mut views = Vec::with_capacity(ids.len());
    for id in ids {
        let view = grandlivre::invoicing::store::get(&mut conn, id)
            .await
            .expect("invoice")
            .expect("exists");
        views.push(view);
    }
    let views = Arc::new(views);
    // the first one outside the clock: fonts and typst's library are read once per process
    let first = grandlivre::invoicing::pdf::invoice(&views[0]).expect("a PDF");
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let workers: Vec<_> = (0..threads())
        .map(|t| {
            let (views, stop) = (views.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut done = 0u64;
                let mut i = t;
                while !AtomicBool::load(&stop, Ordering::Relaxed) {
                    grandlivre::invoicing::pdf::invoice(&views[i % views.len()]).expect("a PDF");
                    done += 1;
                    i += threads();
                }
                done
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let pdfs: u64 = workers.into_iter().map(|w| w.join().expect("worker")).sum();
    (pdfs, started.elapsed().as_secs_f64(), first.len())
}
