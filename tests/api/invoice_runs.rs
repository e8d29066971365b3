//! Invoice runs through HTTP: 202 at once, then progress to `completed` with the run's
//! counts and totals; nothing new the second time; one customer's failure recorded while
//! the others are invoiced, and picked up by a re-run; concurrent runs; numbers across New
//! Year; runs left running by a stopped process; the CLI's progress lines.

use chrono::Duration;
use diesel_async::RunQueryDsl;
use rust_decimal_macros::dec;
use serde_json::{json, Value};
use uuid::Uuid;

use grandlivre::auth::Role;
use grandlivre::catalog::PriceBasis;
use grandlivre::charges::{self, ChargeSource, NewCharge};
use grandlivre::clock::Clock;
use grandlivre::demo::{DEMO_CUSTOMER_1 as C1, DEMO_CUSTOMER_2 as C2};

use crate::helpers::{new_customer, paris, seeded, TestApp};

/// `quantity` remote sessions at 100.00 incl. VAT charged to `customer` now, under the key
/// `idem` (purchases invoice themselves at once: a run invoices charges like these).
async fn charge_sessions(app: &TestApp, customer: Uuid, quantity: u32, idem: &str) {
    let mut conn = app.db.conn().await;
    let charge = NewCharge {
        description: format!("Remote session × {quantity}"),
        quantity: quantity.into(),
        unit_price: dec!(100.00),
        price_basis: PriceBasis::Ttc,
        ..one_off(customer, idem, quantity.into())
    };
    let now = app.clock.now();
    assert!(charges::insert(&mut conn, &charge, now).await.unwrap());
}

/// `POST /v1/invoice-runs` for the clock's instant: 202, the run `running`, its Location.
async fn start_run(app: &TestApp, key: &str) -> Value {
    let started = app
        .post_json(
            key,
            "/v1/invoice-runs",
            None,
            &json!({ "as_of": app.clock.now() }),
        )
        .await;
    assert_eq!(started.status, 202, "{}", started.text);
    let id = started.body["id"].as_str().unwrap();
    assert_eq!(
        started.header("location"),
        Some(format!("/v1/invoice-runs/{id}").as_str())
    );
    assert_eq!(started.body["status"], "running", "{}", started.text);
    assert_eq!(started.body["finished_at"], Value::Null);
    started.body
}

/// Polls the run until it is no longer `running` (it goes on in the background).
async fn finished(app: &TestApp, key: &str, run: &Value) -> Value {
    let path = format!("/v1/invoice-runs/{}", run["id"].as_str().unwrap());
    for _ in 0..1500 {
        let now = app.get(key, &path).await;
        assert_eq!(now.status, 200, "{}", now.text);
        if now.body["status"] != "running" {
            return now.body;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("the run did not finish");
}

async fn numbers(app: &TestApp, key: &str) -> Vec<(String, String)> {
    let page = app.get(key, "/v1/invoices?limit=200").await;
    assert_eq!(page.status, 200, "{}", page.text);
    let mut out: Vec<(String, String)> = page.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["number"].as_str().unwrap().to_string(),
                i["issued_on"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

fn one_off(customer: Uuid, description: &str, quantity: rust_decimal::Decimal) -> NewCharge {
    NewCharge {
        customer_id: customer,
        subscription_id: None,
        offer_code: None,
        source: ChargeSource::OneOff,
        period_index: None,
        description: description.into(),
        quantity,
        unit_price: dec!(999999),
        price_basis: PriceBasis::Ht,
        vat_rate: dec!(0.20),
        service_start: None,
        service_end: None,
        idempotency_key: Some(description.into()),
    }
}

#[actix_web::test]
async fn a_run_answers_at_once_then_completes_with_its_counts_and_totals() {
    let (app, _conn) = seeded().await;
    let finance = app.key(Role::Finance, None).await;
    app.clock.set(paris("2026-11-20") + Duration::hours(10));
    charge_sessions(&app, C1, 1, "one").await;
    charge_sessions(&app, C2, 3, "three").await;

    let started = start_run(&app, &finance).await;
    assert_eq!(started["customers_total"], 2, "{started}");
    let done = finished(&app, &finance, &started).await;
    assert_eq!(
        (
            &done["status"],
            &done["customers_done"],
            &done["customers_failed"],
            &done["invoices_issued"]
        ),
        (&json!("completed"), &json!(2), &json!(0), &json!(2)),
        "{done}"
    );
    // DOMAIN.md: 1 ticket 83.33 + 16.67, 3 tickets 250.00 + 50.00
    assert_eq!(
        (&done["total_ht"], &done["total_vat"], &done["total_ttc"]),
        (&json!("333.33"), &json!("66.67"), &json!("400.00"))
    );
    assert_eq!(done["errors"], json!([]));
    assert_eq!(done["finished_at"], json!(app.clock.now()));
    assert_eq!(
        numbers(&app, &finance).await,
        [
            ("F2026-000001".to_string(), "2026-11-20".to_string()),
            ("F2026-000002".to_string(), "2026-11-20".to_string())
        ]
    );

    // the same as_of again: nothing new
    let again = finished(&app, &finance, &start_run(&app, &finance).await).await;
    assert_eq!(
        (
            &again["status"],
            &again["customers_total"],
            &again["invoices_issued"],
            &again["total_ttc"]
        ),
        (&json!("completed"), &json!(0), &json!(0), &json!("0.00")),
        "{again}"
    );
    assert_eq!(numbers(&app, &finance).await.len(), 2);

    // the job runs on the same engine and records its run
    let job = app
        .post_json(
            &app.admin().await,
            "/v1/jobs/invoicing/run",
            None,
            &json!({ "as_of": app.clock.now() }),
        )
        .await;
    assert_eq!(job.status, 200, "{}", job.text);
    assert_eq!(job.body["invoices_issued"], 0);

    // every run, by pages; the job's run too
    let first = app.get(&finance, "/v1/invoice-runs?limit=2").await;
    assert_eq!(first.status, 200, "{}", first.text);
    let cursor = first.body["next_cursor"].as_str().unwrap();
    let second = app
        .get(
            &finance,
            &format!("/v1/invoice-runs?limit=2&cursor={cursor}"),
        )
        .await;
    let ids: Vec<&Value> = first.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .chain(second.body["items"].as_array().unwrap())
        .map(|r| &r["id"])
        .collect();
    assert_eq!(
        ids,
        [&started["id"], &again["id"], &job.body["run_id"]],
        "oldest first"
    );
    assert_eq!(first.body["items"][0], done);

    // customers and the ticketing system have no access; an unknown run is a 404
    let own = app.key(Role::Customer, Some(C1)).await;
    let ticketing = app.key(Role::Ticketing, None).await;
    for key in [&own, &ticketing] {
        app.post_json(key, "/v1/invoice-runs", None, &json!({}))
            .await
            .problem(403, "forbidden");
        app.get(key, "/v1/invoice-runs")
            .await
            .problem(403, "forbidden");
    }
    app.get(&finance, &format!("/v1/invoice-runs/{}", Uuid::now_v7()))
        .await
        .problem(404, "not_found");
    // an instant too far ahead names its field
    let far = app
        .post_json(
            &finance,
            "/v1/invoice-runs",
            None,
            &json!({"as_of": "2099-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(
        far.problem(422, "invalid_request")["errors"][0]["field"],
        "as_of"
    );
    app.assert_ledger_verifies(&finance).await;
}

#[actix_web::test]
async fn a_failing_customer_is_recorded_the_others_invoiced_and_a_rerun_picks_it_up() {
    let (app, mut conn) = seeded().await;
    let finance = app.key(Role::Finance, None).await;
    app.clock.set(paris("2026-11-20") + Duration::hours(10));
    let bad = new_customer(&app, &finance, "bad").await;
    charge_sessions(&app, C1, 1, "one").await;
    charge_sessions(&app, C2, 2, "two").await;
    // its total does not fit an invoice (numeric(12, 2)): refused once its number is taken
    let huge = one_off(bad, "too large for an invoice", dec!(9999999));
    assert!(charges::insert(&mut conn, &huge, app.clock.now())
        .await
        .unwrap());

    let run = finished(&app, &finance, &start_run(&app, &finance).await).await;
    assert_eq!(
        (
            &run["status"],
            &run["customers_total"],
            &run["customers_done"],
            &run["customers_failed"],
            &run["invoices_issued"],
        ),
        (
            &json!("completed"),
            &json!(3),
            &json!(3),
            &json!(1),
            &json!(2)
        ),
        "{run}"
    );
    assert_eq!(run["errors"][0]["customer_id"], json!(bad), "{run}");
    assert!(
        run["errors"][0]["error"]
            .as_str()
            .unwrap()
            .contains("numeric field overflow"),
        "{run}"
    );
    assert_eq!(run["total_ttc"], "300.00", "{run}");
    // its number was given back: the others are 1 and 2
    let issued: Vec<String> = numbers(&app, &finance)
        .await
        .into_iter()
        .map(|n| n.0)
        .collect();
    assert_eq!(issued, ["F2026-000001", "F2026-000002"]);

    // once its charge is corrected, the next run invoices it, next in the series
    diesel::sql_query(format!(
        "UPDATE charges SET quantity = 1 WHERE customer_id = '{bad}'"
    ))
    .execute(&mut conn)
    .await
    .unwrap();
    let rerun = finished(&app, &finance, &start_run(&app, &finance).await).await;
    assert_eq!(
        (
            &rerun["customers_total"],
            &rerun["invoices_issued"],
            &rerun["errors"],
            &rerun["total_ttc"]
        ),
        (&json!(1), &json!(1), &json!([]), &json!("1199998.80")),
        "{rerun}"
    );
    let invoices = app
        .get(&finance, &format!("/v1/invoices?customer_id={bad}"))
        .await;
    assert_eq!(invoices.body["items"][0]["number"], "F2026-000003");
    app.assert_ledger_verifies(&finance).await;
}

#[actix_web::test]
async fn concurrent_runs_invoice_each_customer_once_with_gapless_numbers() {
    let (app, _conn) = seeded().await;
    let finance = app.key(Role::Finance, None).await;
    app.clock.set(paris("2026-11-20") + Duration::hours(10));
    for i in 0..30 {
        let c = new_customer(&app, &finance, &format!("c{i}")).await;
        charge_sessions(&app, c, 1 + i % 3, &format!("t{i}")).await;
    }
    // another process of the service starts the second run at the same time
    let other = app.sibling().await;
    let (a, b) = tokio::join!(start_run(&app, &finance), start_run(&other, &finance));
    let (a, b) = tokio::join!(finished(&app, &finance, &a), finished(&other, &finance, &b));
    for run in [&a, &b] {
        assert_eq!(run["status"], "completed", "{run}");
        assert_eq!(run["errors"], json!([]), "{run}");
    }
    assert_eq!(
        a["invoices_issued"].as_i64().unwrap() + b["invoices_issued"].as_i64().unwrap(),
        30,
        "{a} {b}"
    );
    let issued: Vec<String> = numbers(&app, &finance)
        .await
        .into_iter()
        .map(|n| n.0)
        .collect();
    let expected: Vec<String> = (1..=30).map(|n| format!("F2026-{n:06}")).collect();
    assert_eq!(issued, expected);
    app.assert_ledger_verifies(&finance).await;
}

#[actix_web::test]
async fn numbers_start_again_at_one_on_new_year_paris_time() {
    let (app, _conn) = seeded().await;
    let finance = app.key(Role::Finance, None).await;
    // 23:30 in Paris on 31 December is 22:30 UTC: still 2026
    app.clock
        .set(paris("2026-12-31") + Duration::hours(23) + Duration::minutes(30));
    charge_sessions(&app, C1, 1, "old-year").await;
    let old = finished(&app, &finance, &start_run(&app, &finance).await).await;
    assert_eq!(old["invoices_issued"], 1, "{old}");
    // 00:10 in Paris on 1 January is still 31 December in UTC
    app.clock.set(paris("2027-01-01") + Duration::minutes(10));
    assert_eq!(app.clock.now().date_naive().to_string(), "2026-12-31");
    charge_sessions(&app, C2, 1, "new-year").await;
    let new = finished(&app, &finance, &start_run(&app, &finance).await).await;
    assert_eq!(new["invoices_issued"], 1, "{new}");
    assert_eq!(
        numbers(&app, &finance).await,
        [
            ("F2026-000001".to_string(), "2026-12-31".to_string()),
            ("F2027-000001".to_string(), "2027-01-01".to_string())
        ]
    );
}

#[actix_web::test]
async fn a_run_whose_process_stopped_shows_interrupted() {
    let (app, mut conn) = seeded().await;
    let finance = app.key(Role::Finance, None).await;
    app.clock.set(paris("2026-11-20") + Duration::hours(10));
    let id = Uuid::now_v7();
    diesel::sql_query(format!(
        "INSERT INTO invoice_runs (id, as_of, status, customers_total, started_at)
         VALUES ('{id}', now(), 'running', 5, now())"
    ))
    .execute(&mut conn)
    .await
    .unwrap();
    // while a session holds its lease (as the process running it does), it is running
    let mut lease = app.db.conn().await;
    diesel::sql_query(format!(
        "SELECT pg_advisory_lock(1229870674, hashtext('{id}') & 2147483647)"
    ))
    .execute(&mut lease)
    .await
    .unwrap();
    let path = format!("/v1/invoice-runs/{id}");
    let held = app.get(&finance, &path).await;
    assert_eq!(held.body["status"], "running", "{}", held.text);
    // the process stops: its connection closes, and the run shows what happened
    drop(lease);
    let mut shown = Value::Null;
    for _ in 0..100 {
        shown = app.get(&finance, &path).await.body;
        if shown["status"] != "running" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(shown["status"], "interrupted", "{shown}");
    assert_eq!(shown["finished_at"], json!(app.clock.now()));
}

/// `jobs run invoicing` not on a terminal: plain progress lines on stderr, the report on
/// stdout.
#[actix_web::test]
async fn the_cli_prints_plain_progress_lines_when_not_on_a_terminal() {
    let (app, mut conn) = seeded().await;
    let now = paris("2026-11-20") + Duration::hours(10);
    for (i, customer) in [C1, C2].into_iter().enumerate() {
        let charge = NewCharge {
            unit_price: dec!(10),
            ..one_off(customer, &format!("service {i}"), dec!(1))
        };
        assert!(charges::insert(&mut conn, &charge, now).await.unwrap());
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_grandlivre"))
        .env("DATABASE_URL", &app.db.url)
        .env("GRANDLIVRE_OWNER_DATABASE_URL", &app.db.owner_url)
        .env("RUST_LOG", "warn")
        .args([
            "jobs",
            "run",
            "invoicing",
            "--test-clock",
            "--test-clock-start",
            "2026-11-21T00:00:00Z",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run grandlivre");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr
            .lines()
            .any(|l| l == "invoicing: 2/2 customers, 2 invoices"),
        "{stderr}"
    );
    assert!(!stderr.contains('\r'), "no bar: {stderr:?}");
    let report: Value = serde_json::from_str(&stdout).expect(&stdout);
    assert_eq!(
        (
            &report["job"],
            &report["invoices_issued"],
            &report["total_ttc"]
        ),
        (&json!("invoicing"), &json!(2), &json!("24.00")),
        "{report}"
    );
    let finance = app.key(Role::Finance, None).await;
    let run = app
        .get(
            &finance,
            &format!("/v1/invoice-runs/{}", report["run_id"].as_str().unwrap()),
        )
        .await;
    assert_eq!(
        (&run.body["status"], &run.body["invoices_issued"]),
        (&json!("completed"), &json!(2)),
        "{}",
        run.text
    );
}

/// A customer's credit balance pays the invoice a run issues, in the run's transaction.
#[actix_web::test]
async fn a_run_lets_the_credit_balance_pay_the_invoices_it_issues() {
    let (app, _conn) = seeded().await;
    let finance = app.key(Role::Finance, None).await;
    app.clock.set(paris("2026-11-20") + Duration::hours(10));
    let paid = app
        .post_json(
            &finance,
            "/v1/payments",
            None,
            &json!({"customer_id": C2, "amount": "150.00", "method": "transfer",
                    "reference": "VIR-AHEAD", "value_date": "2026-11-20"}),
        )
        .await;
    assert_eq!(paid.body["to_credit_balance"], "150.00", "{}", paid.text);
    charge_sessions(&app, C1, 1, "c1").await;
    charge_sessions(&app, C2, 1, "c2").await;
    let run = finished(&app, &finance, &start_run(&app, &finance).await).await;
    assert_eq!(run["invoices_issued"], 2, "{run}");
    let of = |customer: Uuid| {
        let app = &app;
        let finance = &finance;
        async move {
            app.get(finance, &format!("/v1/invoices?customer_id={customer}"))
                .await
                .body["items"][0]
                .clone()
        }
    };
    let (c1, c2) = (of(C1).await, of(C2).await);
    assert_eq!(
        (&c1["status"], &c1["amount_due"]),
        (&json!("issued"), &json!("100.00"))
    );
    assert_eq!(
        (&c2["status"], &c2["amount_paid"], &c2["amount_due"]),
        (&json!("paid"), &json!("100.00"), &json!("0.00"))
    );
    let balances = app
        .get(&finance, &format!("/v1/customers/{C2}/balances"))
        .await;
    assert_eq!(
        (
            &balances.body["credit_balance"],
            &balances.body["amount_owed"]
        ),
        (&json!("50.00"), &json!("0.00"))
    );
    app.assert_ledger_verifies(&finance).await;
}
