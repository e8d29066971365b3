//! Subscriptions with exact dates and amounts: commitments, tacit renewal, cancellation
//! notice, early termination, activation on payment, add-ons, SEPA, price versions.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use proptest::prelude::*;
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use serde_json::json;
use uuid::Uuid;

use grandlivre::calendar::paris_midnight;
use grandlivre::charges::{self, ChargeSource};
use grandlivre::demo::{DEMO_CUSTOMER_1 as WITH_MANDATE, DEMO_CUSTOMER_2 as NO_MANDATE};
use grandlivre::jobs::{self, Job};
use grandlivre::subscriptions::store;
use grandlivre::subscriptions::{NewSubscription, Plan, SubscriptionError, SubscriptionStatus};

use crate::helpers::{d, paris, pay_invoice_of, seeded};

async fn subscribe(
    conn: &mut AsyncPgConnection,
    customer: Uuid,
    offer: &str,
    start: &str,
) -> Result<Uuid, SubscriptionError> {
    let req = NewSubscription {
        customer_id: customer,
        offer_code: offer.into(),
        start_date: Some(d(start)),
        parent_id: None,
    };
    store::create(conn, &req, None, paris(start))
        .await
        .map(|(id, _)| id)
}

async fn run(conn: &mut AsyncPgConnection, as_of: DateTime<Utc>) -> (u32, u32, u32) {
    let r = jobs::run(conn, Job::Renewals, as_of, as_of)
        .await
        .expect("renewals");
    let b = jobs::run(conn, Job::Billing, as_of, as_of)
        .await
        .expect("billing");
    let figure = |run: &jobs::JobRun, name: &str| {
        serde_json::to_value(run).unwrap()[name]
            .as_u64()
            .map(|n| n as u32)
            .unwrap_or_else(|| panic!("{name} in {run:?}"))
    };
    (
        figure(&r, "renewed"),
        figure(&r, "ended"),
        figure(&b, "charges_created"),
    )
}

/// (period index, service start, unit price) of a subscription's period charges.
async fn periods(conn: &mut AsyncPgConnection, sub: Uuid) -> Vec<(i32, NaiveDate, Decimal)> {
    charges::for_subscription(conn, sub)
        .await
        .unwrap()
        .into_iter()
        .filter(|c| c.source == ChargeSource::SubscriptionPeriod)
        .map(|c| {
            (
                c.period_index.unwrap(),
                c.service_start.unwrap_or(NaiveDate::MIN),
                c.unit_price.0,
            )
        })
        .collect()
}

fn assert_contiguous(charged: &[(i32, NaiveDate, Decimal)], plan_anchor: &str, months: u32) {
    for (i, (index, start, _)) in charged.iter().enumerate() {
        assert_eq!(*index as usize, i);
        assert_eq!(
            *start,
            grandlivre::calendar::add_months(d(plan_anchor), i as u32 * months)
        );
    }
}

#[actix_web::test]
async fn fibre_36_months_then_tacit_renewal_to_month_40() {
    let (_app, mut conn) = seeded().await;
    let sub = subscribe(&mut conn, WITH_MANDATE, "ip_access_fibre", "2026-01-31")
        .await
        .unwrap();
    // month 40 began on 2029-04-30; month 41 would begin on 2029-05-31
    let (renewed, ended, created) = run(&mut conn, paris("2029-05-30")).await;
    assert_eq!((renewed, ended, created), (1, 0, 40));
    let charged = periods(&mut conn, sub).await;
    assert_contiguous(&charged, "2026-01-31", 1);
    assert_eq!(charged[1].1, d("2026-02-28"));
    assert_eq!(charged[2].1, d("2026-03-31"));
    assert_eq!(
        charged[35].1,
        d("2028-12-31"),
        "last month of the commitment"
    );
    let renewal: Vec<NaiveDate> = charged[36..].iter().map(|c| c.1).collect();
    assert_eq!(
        renewal,
        [
            d("2029-01-31"),
            d("2029-02-28"),
            d("2029-03-31"),
            d("2029-04-30")
        ]
    );
    assert!(charged.iter().all(|c| c.2 == dec!(39.90)));
    let total: Decimal = charged.iter().map(|c| c.2).sum();
    assert_eq!(total, dec!(1596.00));

    let view = store::view(&mut conn, sub, paris("2029-05-30"))
        .await
        .unwrap()
        .unwrap();
    let renewed: Vec<_> = view
        .history
        .iter()
        .filter(|e| e.term_index.is_some())
        .collect();
    assert_eq!(renewed.len(), 1);
    assert_eq!(renewed[0].at, paris("2029-01-31"));
    assert_eq!(
        view.current_term.map(|t| (t.index, t.start, t.end)),
        Some((1, d("2029-01-31"), d("2030-01-31")))
    );
    // idempotent: the same instant, or an earlier one, creates nothing
    assert_eq!(run(&mut conn, paris("2029-05-30")).await, (0, 0, 0));
    assert_eq!(run(&mut conn, paris("2027-01-01")).await, (0, 0, 0));
}

#[actix_web::test]
async fn cellular_renews_month_by_month() {
    let (_app, mut conn) = seeded().await;
    let sub = subscribe(&mut conn, WITH_MANDATE, "ip_access_cellular", "2026-03-31")
        .await
        .unwrap();
    assert_eq!(run(&mut conn, paris("2026-06-29")).await, (0, 0, 3));
    assert_eq!(run(&mut conn, paris("2026-08-31")).await, (3, 0, 3));
    let charged = periods(&mut conn, sub).await;
    let starts: Vec<NaiveDate> = charged.iter().map(|c| c.1).collect();
    assert_eq!(
        starts,
        [
            d("2026-03-31"),
            d("2026-04-30"),
            d("2026-05-31"),
            d("2026-06-30"),
            d("2026-07-31"),
            d("2026-08-31")
        ]
    );
    assert!(charged.iter().all(|c| c.2 == dec!(29.90)));
    let view = store::view(&mut conn, sub, paris("2026-09-05"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        view.current_term.map(|t| (t.index, t.end)),
        Some((3, d("2026-09-30")))
    );
    assert_eq!(
        view.notice_deadline,
        Some(d("2026-09-20")),
        "10 days' notice"
    );
}

#[actix_web::test]
async fn cancellation_on_the_notice_deadline_stops_renewal_one_day_later_renews_once() {
    let (_app, mut conn) = seeded().await;
    let on_time = subscribe(&mut conn, WITH_MANDATE, "ip_access_fibre", "2026-01-31")
        .await
        .unwrap();
    let late = subscribe(&mut conn, WITH_MANDATE, "ip_access_fibre", "2026-01-31")
        .await
        .unwrap();
    // 30 days' notice before 2029-01-31: the deadline is 2029-01-01 (Paris), all day
    store::cancel(
        &mut conn,
        on_time,
        None,
        paris("2029-01-02") - Duration::seconds(1),
    )
    .await
    .unwrap();
    store::cancel(&mut conn, late, None, paris("2029-01-02"))
        .await
        .unwrap();
    store::cancel(&mut conn, late, None, paris("2029-01-03"))
        .await
        .unwrap(); // asking again changes nothing
    let on_time_view = store::view(&mut conn, on_time, paris("2029-01-10"))
        .await
        .unwrap()
        .unwrap();
    let late_view = store::view(&mut conn, late, paris("2029-01-10"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(on_time_view.ends_at, Some(paris("2029-01-31")));
    assert_eq!(late_view.ends_at, Some(paris("2030-01-31")));
    assert_eq!(on_time_view.next_renewal_date, None);
    assert_eq!(late_view.next_renewal_date, Some(d("2029-01-31")));

    let (renewed, ended, _) = run(&mut conn, paris("2031-06-01")).await;
    assert_eq!((renewed, ended), (1, 2));
    assert_eq!(periods(&mut conn, on_time).await.len(), 36);
    assert_eq!(periods(&mut conn, late).await.len(), 48);
    let ended_view = store::view(&mut conn, on_time, paris("2031-06-01"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ended_view.status, SubscriptionStatus::Ended);
    let ended_at: Vec<_> = ended_view
        .history
        .iter()
        .filter(|e| e.kind == grandlivre::subscriptions::EventKind::Ended)
        .map(|e| e.at)
        .collect();
    assert_eq!(ended_at, [paris("2029-01-31")]);
}

#[actix_web::test]
async fn early_termination_at_100_and_50_percent() {
    let (app, mut conn) = seeded().await;
    let admin = app.admin().await;
    // an offer like fibre whose early-termination rate is 50 %, created over HTTP
    let mut half = serde_json::to_value(
        grandlivre::catalog::store::get(&mut conn, "ip_access_fibre")
            .await
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    half["code"] = json!("ip_access_fibre_half");
    half["early_termination_rate"] = json!("0.5");
    assert_eq!(
        app.post_json(&admin, "/v1/offers", None, &half)
            .await
            .status,
        201
    );
    let price = json!({"effective_from": "2020-01-01", "unit_price": "39.90"});
    assert_eq!(
        app.post_json(
            &admin,
            "/v1/offers/ip_access_fibre_half/prices",
            None,
            &price
        )
        .await
        .status,
        201
    );
    app.post_json(
        &admin,
        "/v1/offers/ip_access_fibre_half/prices",
        None,
        &price,
    )
    .await
    .problem(409, "already_exists");

    let full = subscribe(&mut conn, WITH_MANDATE, "ip_access_fibre", "2026-01-31")
        .await
        .unwrap();
    let halfway = subscribe(
        &mut conn,
        WITH_MANDATE,
        "ip_access_fibre_half",
        "2026-01-31",
    )
    .await
    .unwrap();
    let at = paris("2027-06-15") + Duration::hours(10);
    let quote = store::view(&mut conn, full, at)
        .await
        .unwrap()
        .unwrap()
        .early_termination_if_now
        .unwrap();
    assert_eq!((quote.remaining_periods, quote.fee.0), (19, dec!(758.10)));
    store::terminate(&mut conn, full, None, at).await.unwrap();
    store::terminate(&mut conn, halfway, None, at)
        .await
        .unwrap();
    assert!(matches!(
        store::terminate(&mut conn, full, None, at).await,
        Err(SubscriptionError::WrongState(..))
    ));
    run(&mut conn, paris("2030-01-01")).await;
    for (sub, fee) in [(full, dec!(758.10)), (halfway, dec!(379.05))] {
        let all = charges::for_subscription(&mut conn, sub).await.unwrap();
        let fees: Vec<Decimal> = all
            .iter()
            .filter(|c| c.source == ChargeSource::EarlyTermination)
            .map(|c| c.amount.0)
            .collect();
        assert_eq!(fees, [fee]);
        // the period in progress (from 2027-05-31) was billed in advance and is kept; none after
        let last = periods(&mut conn, sub).await.last().copied().unwrap();
        assert_eq!((last.0, last.1), (16, d("2027-05-31")));
    }
}

#[actix_web::test]
async fn periods_anchor_on_the_31st_and_on_29_february() {
    let (_app, mut conn) = seeded().await;
    let leap = subscribe(&mut conn, WITH_MANDATE, "ip_access_fibre", "2028-02-29")
        .await
        .unwrap();
    run(&mut conn, paris("2032-03-01")).await;
    let charged = periods(&mut conn, leap).await;
    assert_contiguous(&charged, "2028-02-29", 1);
    assert_eq!(charged[1].1, d("2028-03-29"));
    assert_eq!(charged[12].1, d("2029-02-28"));
    assert_eq!(
        charged[13].1,
        d("2029-03-29"),
        "counted from the anchor, not from 28 February"
    );
    assert_eq!(charged[48].1, d("2032-02-29"));
}

#[actix_web::test]
async fn a_price_version_mid_contract_applies_from_its_date_only() {
    let (app, mut conn) = seeded().await;
    let sub = subscribe(&mut conn, WITH_MANDATE, "ip_access_fibre", "2026-01-31")
        .await
        .unwrap();
    run(&mut conn, paris("2026-06-01")).await;
    let admin = app.admin().await;
    let version = json!({"effective_from": "2026-07-15", "unit_price": "42.00"});
    assert_eq!(
        app.post_json(&admin, "/v1/offers/ip_access_fibre/prices", None, &version)
            .await
            .status,
        201
    );
    run(&mut conn, paris("2026-09-01")).await;
    let prices: Vec<(NaiveDate, Decimal)> = periods(&mut conn, sub)
        .await
        .into_iter()
        .map(|c| (c.1, c.2))
        .collect();
    assert_eq!(
        prices,
        [
            (d("2026-01-31"), dec!(39.90)),
            (d("2026-02-28"), dec!(39.90)),
            (d("2026-03-31"), dec!(39.90)),
            (d("2026-04-30"), dec!(39.90)),
            (d("2026-05-31"), dec!(39.90)),
            (d("2026-06-30"), dec!(39.90)),
            (d("2026-07-31"), dec!(42.00)),
            (d("2026-08-31"), dec!(42.00)),
        ]
    );
}

#[actix_web::test]
async fn support_vip_waits_for_its_first_payment() {
    let (app, mut conn) = seeded().await;
    let req = NewSubscription {
        customer_id: NO_MANDATE,
        offer_code: "support_vip_annual".into(),
        start_date: None,
        parent_id: None,
    };
    let (sub, _) = store::create(&mut conn, &req, None, paris("2026-03-10"))
        .await
        .unwrap();
    let view = store::view(&mut conn, sub, paris("2026-03-10"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (view.status, view.anchor_date),
        (SubscriptionStatus::PendingPayment, None)
    );
    let first = charges::for_subscription(&mut conn, sub).await.unwrap();
    assert_eq!(first.len(), 1, "the invoice to pay is charged at once");
    assert_eq!(
        (first[0].amount.0, first[0].service_start),
        (dec!(490.00), None)
    );
    assert_eq!(
        run(&mut conn, paris("2027-01-01")).await.2,
        0,
        "nothing more until paid"
    );
    assert!(matches!(
        store::cancel(&mut conn, sub, None, paris("2026-03-11")).await,
        Err(SubscriptionError::WrongState(..))
    ));

    // invoiced, then paid through the API with value date 20 March, reported the 21st
    app.clock.set(paris("2026-03-21"));
    let paid = pay_invoice_of(&app, NO_MANDATE, "VIR-VIP-1", Some("2026-03-20"))
        .await
        .expect("the first period is owed");
    assert_eq!(paid["amount"], "588.00", "490.00 excl. VAT: {paid}");
    app.clock.set(paris("2026-03-22"));
    assert!(pay_invoice_of(&app, NO_MANDATE, "VIR-VIP-2", None)
        .await
        .is_none());
    let view = store::view(&mut conn, sub, paris("2026-04-01"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (view.status, view.anchor_date),
        (SubscriptionStatus::Active, Some(d("2026-03-20")))
    );
    assert_eq!(view.current_term.map(|t| t.end), Some(d("2027-03-20")));
    assert_eq!(run(&mut conn, paris("2027-03-19")).await, (0, 0, 0));
    assert_eq!(run(&mut conn, paris("2027-03-20")).await, (1, 0, 1));
    let charged = periods(&mut conn, sub).await;
    assert_eq!(charged.iter().map(|c| c.0).collect::<Vec<_>>(), [0, 1]);
    assert_eq!(charged[1].1, d("2027-03-20"));
}

#[actix_web::test]
async fn add_ons_share_their_parents_terms_and_end_with_it() {
    let (_app, mut conn) = seeded().await;
    let parent = subscribe(&mut conn, WITH_MANDATE, "ip_access_fibre", "2026-01-31")
        .await
        .unwrap();
    let add = |start: &'static str, parent_id| NewSubscription {
        customer_id: WITH_MANDATE,
        offer_code: "assistance_plus_pack".into(),
        start_date: Some(d(start)),
        parent_id,
    };
    assert!(matches!(
        store::create(
            &mut conn,
            &add("2026-05-10", None),
            None,
            paris("2026-05-10")
        )
        .await,
        Err(SubscriptionError::ParentRequired(_))
    ));
    let (pack, _) = store::create(
        &mut conn,
        &add("2026-05-10", Some(parent)),
        None,
        paris("2026-05-10"),
    )
    .await
    .unwrap();
    let view = store::view(&mut conn, pack, paris("2026-05-10"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        view.current_term.map(|t| t.end),
        Some(d("2029-01-31")),
        "the parent's term"
    );
    run(&mut conn, paris("2027-02-01")).await;
    let charged = periods(&mut conn, pack).await;
    assert_eq!(
        charged.iter().map(|c| (c.1, c.2)).collect::<Vec<_>>(),
        [
            (d("2026-05-10"), dec!(437.26)),
            (d("2027-01-31"), dec!(600.00))
        ],
        "yearly periods on the parent's anchor: the one holding the start date from 2026-05-10, \
         600.00 × 266 days left ÷ 365 = 437.26; the next one whole, 600.00"
    );

    store::cancel(&mut conn, parent, None, paris("2027-06-01"))
        .await
        .unwrap();
    let pack_view = store::view(&mut conn, pack, paris("2027-06-02"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(pack_view.ends_at, Some(paris("2029-01-31")));
    run(&mut conn, paris("2030-01-01")).await;
    let pack_view = store::view(&mut conn, pack, paris("2030-01-01"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(pack_view.status, SubscriptionStatus::Ended);
    assert_eq!(periods(&mut conn, pack).await.len(), 3);

    // terminating a parent terminates its add-ons, each with its own fee
    let parent2 = subscribe(&mut conn, WITH_MANDATE, "ip_access_fibre", "2026-01-31")
        .await
        .unwrap();
    let (pack2, _) = store::create(
        &mut conn,
        &add("2026-02-01", Some(parent2)),
        None,
        paris("2026-02-01"),
    )
    .await
    .unwrap();
    store::terminate(&mut conn, parent2, None, paris("2026-12-15"))
        .await
        .unwrap();
    let pack2_view = store::view(&mut conn, pack2, paris("2026-12-16"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (pack2_view.status, pack2_view.ends_at),
        (SubscriptionStatus::Ended, Some(paris("2026-12-15")))
    );
    let fees: Vec<Decimal> = charges::for_subscription(&mut conn, pack2)
        .await
        .unwrap()
        .into_iter()
        .filter(|c| c.source == ChargeSource::EarlyTermination)
        .map(|c| c.amount.0)
        .collect();
    assert_eq!(
        fees,
        [dec!(1200.00)],
        "the 2027 and 2028 yearly periods of the term remain"
    );
}

/// An add-on taken inside its parent's billing period is billed from its own start to
/// the period's end, prorated by days, and not before it exists; from then on, whole
/// periods on the parent's calendar.
#[actix_web::test]
async fn an_add_on_taken_mid_period_pays_the_days_left_over_http() {
    let (app, _conn) = seeded().await;
    let admin = app.admin().await;
    app.clock.set(paris("2027-09-15") + Duration::hours(10));
    let parent = app
        .post_json(
            &admin,
            "/v1/subscriptions",
            None,
            &json!({"customer_id": NO_MANDATE, "offer_code": "premium_assistance", "start_date": "2027-03-01"}),
        )
        .await;
    assert_eq!(parent.status, 201, "{}", parent.text);
    let pack = app
        .post_json(
            &admin,
            "/v1/subscriptions",
            None,
            &json!({
                "customer_id": NO_MANDATE,
                "offer_code": "service_plus_pack",
                "start_date": "2027-09-15",
                "parent_id": parent.body["id"],
            }),
        )
        .await;
    assert_eq!(pack.status, 201, "{}", pack.text);
    let pack_id = pack.body["id"].as_str().unwrap().to_string();
    let bill = async |as_of: &str| {
        let run = app
            .post_json(
                &admin,
                "/v1/jobs/billing/run",
                None,
                &json!({ "as_of": as_of }),
            )
            .await;
        assert_eq!(run.status, 200, "{}", run.text);
        run.body["charges_created"].as_i64().unwrap()
    };
    assert_eq!(
        bill("2027-09-14T23:59:59+02:00").await,
        1,
        "the parent's 2027-03-01 period only: the pack does not exist yet"
    );
    assert_eq!(
        bill("2027-09-15T00:00:00+02:00").await,
        1,
        "the pack's first day"
    );
    assert_eq!(bill("2027-09-15T00:00:00+02:00").await, 0, "idempotent");
    assert_eq!(
        bill("2028-03-01T00:00:00+01:00").await,
        2,
        "the parent's and the pack's periods from 2028-03-01"
    );
    let charges = app
        .get(&admin, &format!("/v1/customers/{NO_MANDATE}/charges"))
        .await;
    assert_eq!(charges.status, 200, "{}", charges.text);
    let of_pack: Vec<_> = charges.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["subscription_id"] == pack_id.as_str())
        .map(|c| {
            (
                c["period_index"].as_i64().unwrap(),
                c["service_start"].as_str().unwrap(),
                c["service_end"].as_str().unwrap(),
                c["amount"].as_str().unwrap(),
                c["description"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        of_pack,
        [
            (
                0,
                "2027-09-15",
                "2028-03-01",
                "688.52",
                "Service+ pack (20 service credits a year), 2027-09-15 to 2028-02-29 (168 of 366 days)"
            ),
            (
                1,
                "2028-03-01",
                "2029-03-01",
                "1500.00",
                "Service+ pack (20 service credits a year), 2028-03-01 to 2029-02-28"
            ),
        ],
        "1500.00 × 168 days left (2027-09-15 to 2028-03-01, 29 February included) ÷ 366 days \
         in the parent's period 2027-03-01..2028-03-01 = 688.5246 → 688.52; then whole years"
    );
}

#[actix_web::test]
async fn sepa_offers_need_an_active_mandate() {
    let (app, mut conn) = seeded().await;
    let refused = subscribe(&mut conn, NO_MANDATE, "ip_access_fibre", "2026-01-31").await;
    assert!(matches!(
        refused,
        Err(SubscriptionError::SepaMandateRequired(_))
    ));
    let admin = app.admin().await;
    let body = json!({"customer_id": NO_MANDATE, "offer_code": "ip_access_fibre", "start_date": "2026-01-31"});
    let reply = app
        .post_json(&admin, "/v1/subscriptions", None, &body)
        .await;
    assert!(reply.problem(422, "sepa_mandate_required")["detail"]
        .as_str()
        .unwrap()
        .contains("mandate"));
    // a mandate row naming no debtor account is no mandate: the database refuses it active
    let incomplete = diesel::sql_query(format!(
        "INSERT INTO mandates (id, customer_id, reference, signed_on) VALUES ('{}', '{NO_MANDATE}', 'TEST-UMR-0', '2026-01-01')",
        Uuid::now_v7()
    ))
    .execute(&mut conn)
    .await;
    assert!(
        incomplete.is_err(),
        "an active mandate without IBAN was stored"
    );
    let mandate = app
        .post_json(
            &admin,
            &format!("/v1/customers/{NO_MANDATE}/mandates"),
            None,
            &json!({"reference": "TEST-UMR-1", "signed_on": "2026-01-01",
                    "debtor_name": "Client Sans Mandat SARL", "iban": "FR7630006000011234567890189"}),
        )
        .await;
    assert_eq!(mandate.status, 201, "{}", mandate.text);
    let reply = app
        .post_json(&admin, "/v1/subscriptions", Some("sub-1"), &body)
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    let replay = app
        .post_json(&admin, "/v1/subscriptions", Some("sub-1"), &body)
        .await;
    assert_eq!(
        (replay.status, &replay.body["id"]),
        (200, &reply.body["id"])
    );
    let mut other = body.clone();
    other["start_date"] = json!("2026-02-01");
    app.post_json(&admin, "/v1/subscriptions", Some("sub-1"), &other)
        .await
        .problem(409, "idempotency_conflict");
}

#[actix_web::test]
async fn subscription_views_over_http_and_customer_scoping() {
    let (app, _conn) = seeded().await;
    let admin = app.admin().await;
    app.clock.set(paris("2027-06-15") + Duration::hours(10));
    let body = json!({"customer_id": WITH_MANDATE, "offer_code": "ip_access_fibre", "start_date": "2026-01-31"});
    let created = app
        .post_json(&admin, "/v1/subscriptions", None, &body)
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let id = created.body["id"].as_str().unwrap();
    assert_eq!(
        created.body["current_term"],
        json!({"index": 0, "start": "2026-01-31", "end": "2029-01-31"})
    );
    assert_eq!(created.body["notice_deadline"], "2029-01-01");
    assert_eq!(created.body["early_termination_if_now"]["fee"], "758.10");
    assert_eq!(
        created.body["early_termination_if_now"]["unit_price"],
        "39.90"
    );

    let own = app
        .key(grandlivre::auth::Role::Customer, Some(WITH_MANDATE))
        .await;
    let other = app
        .key(grandlivre::auth::Role::Customer, Some(NO_MANDATE))
        .await;
    assert_eq!(
        app.get(&own, &format!("/v1/subscriptions/{id}"))
            .await
            .status,
        200
    );
    app.get(&other, &format!("/v1/subscriptions/{id}"))
        .await
        .problem(404, "not_found");
    let listed = app.get(&other, "/v1/subscriptions").await;
    assert_eq!(
        listed.body["items"],
        json!([]),
        "a customer lists only its own"
    );
    app.get(
        &other,
        &format!("/v1/subscriptions?customer_id={WITH_MANDATE}"),
    )
    .await
    .problem(404, "not_found");
    app.post_json(
        &own,
        &format!("/v1/subscriptions/{id}/cancel"),
        None,
        &json!({}),
    )
    .await
    .problem(403, "forbidden");

    let cancelled = app
        .post_json(
            &admin,
            &format!("/v1/subscriptions/{id}/cancel"),
            None,
            &json!({}),
        )
        .await;
    assert_eq!(cancelled.body["ends_at"], "2029-01-30T23:00:00Z");
    let ended = app
        .post_json(
            &admin,
            &format!("/v1/subscriptions/{id}/terminate"),
            None,
            &json!({}),
        )
        .await;
    assert_eq!(ended.body["status"], "ended", "{}", ended.text);
    app.post_json(
        &admin,
        &format!("/v1/subscriptions/{id}/terminate"),
        None,
        &json!({}),
    )
    .await
    .problem(409, "invalid_state");
    let charges = app
        .get(&own, &format!("/v1/customers/{WITH_MANDATE}/charges"))
        .await;
    let fee = charges.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["source"] == "early_termination")
        .cloned()
        .unwrap();
    assert_eq!(fee["amount"], "758.10");
    app.get(&other, &format!("/v1/customers/{WITH_MANDATE}/charges"))
        .await
        .problem(404, "not_found");

    let run = app
        .post_json(
            &admin,
            "/v1/jobs/billing/run",
            None,
            &json!({"as_of": "2027-06-16T00:00:00Z"}),
        )
        .await;
    assert_eq!(run.body["charges_created"], 17, "{}", run.text);
    app.post_json(
        &admin,
        "/v1/jobs/nope/run",
        None,
        &json!({"as_of": "2027-06-16T00:00:00Z"}),
    )
    .await
    .problem(404, "not_found");
    // a run catches up every period up to its instant: one centuries away is refused
    let far = app
        .post_json(
            &admin,
            "/v1/jobs/billing/run",
            None,
            &json!({"as_of": "6558-09-27T11:33:18Z"}),
        )
        .await;
    assert_eq!(
        far.problem(422, "invalid_request")["errors"][0]["field"],
        "as_of"
    );
    let ancient = json!({"customer_id": WITH_MANDATE, "offer_code": "ip_access_fibre", "start_date": "1900-01-01"});
    let reply = app
        .post_json(&admin, "/v1/subscriptions", None, &ancient)
        .await;
    assert_eq!(
        reply.problem(422, "invalid_request")["errors"][0]["field"],
        "start_date"
    );
    app.post_json(
        &own,
        "/v1/jobs/billing/run",
        None,
        &json!({"as_of": "2027-06-16T00:00:00Z"}),
    )
    .await
    .problem(403, "forbidden");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// For any start and horizon, with or without a cancellation, the charged periods cover
    /// each day of the subscription's active life exactly once: contiguous from the
    /// anchor (or, for an add-on taken later, from its own start, the period holding it
    /// prorated to exactly the days from that start), no overlap, the last one holding
    /// the last active day.
    #[test]
    fn charges_cover_each_active_day_once(
        start in 0i64..(366 * 30),
        addon_after_days in proptest::option::of(0i64..800),
        yearly in any::<bool>(),
        commitment_periods in 1u32..4,
        renewal_periods in 1u32..3,
        horizon_days in 0i64..(366 * 8),
        cancel_after_days in proptest::option::of(0i64..(366 * 6)),
    ) {
        let anchor = d("2000-01-01") + Duration::days(start);
        let own_start = anchor + Duration::days(addon_after_days.unwrap_or(0));
        let months = if yearly { 12 } else { 1 };
        let plan = Plan {
            anchor,
            billing_months: months,
            commitment_months: commitment_periods * months * if yearly { 1 } else { 12 },
            renewal_months: renewal_periods * months,
            notice_days: 30,
            start: own_start,
        };
        let horizon = paris_midnight(own_start + Duration::days(horizon_days)) + Duration::hours(12);
        let ends_at = cancel_after_days
            .map(|c| paris_midnight(plan.end_after_cancellation(own_start + Duration::days(c))));
        let due: Vec<_> = plan.periods_due(horizon, ends_at).collect();
        prop_assert!(!due.is_empty());
        prop_assert!(due[0].start <= own_start && own_start < due[0].end);
        let first = plan.charge(due[0], dec!(1000.00));
        prop_assert_eq!(first.from, own_start);
        prop_assert_eq!(i64::from(first.days_billed), (due[0].end - own_start).num_days());
        prop_assert_eq!(first.is_prorated(), own_start != due[0].start);
        prop_assert!(first.amount <= dec!(1000.00) && first.amount > Decimal::ZERO);
        for p in &due[1..] {
            prop_assert!(!plan.charge(*p, dec!(1000.00)).is_prorated());
        }
        for w in due.windows(2) {
            prop_assert_eq!(w[0].end, w[1].start);
            prop_assert!(w[0].start < w[0].end);
        }
        let last_day = match ends_at {
            Some(end) if end <= horizon => grandlivre::calendar::paris_date(end) - Duration::days(1),
            _ => grandlivre::calendar::paris_date(horizon),
        };
        let last = due.last().unwrap();
        prop_assert!(last.start <= last_day && last_day < last.end, "{:?} does not hold {}", last, last_day);
    }
}

/// Twenty concurrent subscriptions under one key subscribe once: one 201, nineteen
/// replays of it.
#[actix_web::test]
async fn concurrent_subscriptions_with_one_key_subscribe_once() {
    let (app, _conn) = seeded().await;
    let finance = app.key(grandlivre::auth::Role::Finance, None).await;
    app.clock.set(paris("2026-01-20") + Duration::hours(10));
    let body = json!({"customer_id": WITH_MANDATE, "offer_code": "ip_access_fibre", "start_date": "2026-01-31"});
    let created = app
        .post_concurrently_once(&finance, "/v1/subscriptions", "fibre-1", &body, 20)
        .await;
    assert_eq!(created["status"], "active");
}

/// DOMAIN.md, "Cancellation date": the notice deadline is checked against the day the
/// customer's notice was received (`received_on`, default today), not the day it is
/// recorded. Fibre started 2026-01-31: its first term ends 2029-01-31, 30 days' notice, so
/// the deadline is 2029-01-01. Recorded on 2029-01-05, a notice received on the deadline
/// stops the renewal; the same notice received on 2029-01-02, or one recorded without a
/// date (received that day), renews once more and ends 2030-01-31.
#[actix_web::test]
async fn a_cancellation_is_judged_by_the_day_its_notice_was_received() {
    let (app, _conn) = seeded().await;
    let admin = app.admin().await;
    app.clock.set(paris("2029-01-05") + Duration::hours(10));
    let body = json!({"customer_id": WITH_MANDATE, "offer_code": "ip_access_fibre", "start_date": "2026-01-31"});
    let mut ids = Vec::new();
    for _ in 0..4 {
        let created = app
            .post_json(&admin, "/v1/subscriptions", None, &body)
            .await;
        assert_eq!(created.status, 201, "{}", created.text);
        assert_eq!(created.body["notice_deadline"], "2029-01-01");
        ids.push(created.body["id"].as_str().unwrap().to_string());
    }
    let cancel = |id: &str, body: Option<serde_json::Value>| {
        let (app, key) = (&app, admin.clone());
        let mut req = actix_web::test::TestRequest::post()
            .uri(&format!("/v1/subscriptions/{id}/cancel"))
            .insert_header(("Authorization", format!("Bearer {key}")));
        if let Some(b) = body {
            req = req
                .insert_header(("Content-Type", "application/json"))
                .set_payload(b.to_string());
        }
        async move { app.send(req).await }
    };
    let ends = |reply: &crate::helpers::Reply| {
        assert_eq!(reply.status, 200, "{}", reply.text);
        (
            reply.body["cancel_received_on"]
                .as_str()
                .unwrap()
                .to_string(),
            reply.body["ends_at"].as_str().unwrap().to_string(),
        )
    };

    let on_deadline = cancel(&ids[0], Some(json!({"received_on": "2029-01-01"}))).await;
    assert_eq!(
        ends(&on_deadline),
        ("2029-01-01".into(), "2029-01-30T23:00:00Z".into()),
        "received on the deadline: ends at the term's end"
    );
    assert_eq!(on_deadline.body["next_renewal_date"], json!(null));
    assert_eq!(
        on_deadline.body["cancel_received_at"], "2029-01-05T09:00:00Z",
        "recorded when it was"
    );
    let history = on_deadline.body["history"].as_array().unwrap();
    assert_eq!(
        history.last().unwrap()["detail"]["received_on"],
        "2029-01-01"
    );
    let day_late = cancel(&ids[1], Some(json!({"received_on": "2029-01-02"}))).await;
    assert_eq!(
        ends(&day_late),
        ("2029-01-02".into(), "2030-01-30T23:00:00Z".into()),
        "one day late: renews once more"
    );
    // no body at all, or `null`: received today
    let today = cancel(&ids[2], None).await;
    assert_eq!(
        ends(&today),
        ("2029-01-05".into(), "2030-01-30T23:00:00Z".into())
    );
    let today = cancel(&ids[3], Some(json!(null))).await;
    assert_eq!(
        ends(&today),
        ("2029-01-05".into(), "2030-01-30T23:00:00Z".into())
    );
    // asking again changes nothing
    let again = cancel(&ids[0], Some(json!({"received_on": "2029-01-03"}))).await;
    assert_eq!(
        ends(&again),
        ("2029-01-01".into(), "2029-01-30T23:00:00Z".into())
    );
}

/// A notice date in the future, before the subscription's start, or whose notice ended the
/// subscription already is refused (422, on `received_on`); so is one that is no date.
#[actix_web::test]
async fn a_notice_date_must_lie_between_the_start_and_today() {
    let (app, _conn) = seeded().await;
    let admin = app.admin().await;
    app.clock.set(paris("2029-01-05") + Duration::hours(10));
    let body = json!({"customer_id": WITH_MANDATE, "offer_code": "ip_access_fibre", "start_date": "2026-01-31"});
    let created = app
        .post_json(&admin, "/v1/subscriptions", None, &body)
        .await;
    let id = created.body["id"].as_str().unwrap().to_string();
    for action in ["cancel", "terminate"] {
        let path = format!("/v1/subscriptions/{id}/{action}");
        for (received_on, why) in [
            (json!("2029-01-06"), "in the future"),
            (json!("2026-01-30"), "before the subscription started"),
            (json!("2029-02-30"), "a date YYYY-MM-DD"),
        ] {
            let reply = app
                .post_json(&admin, &path, None, &json!({ "received_on": received_on }))
                .await;
            let problem = reply.problem(422, "invalid_request");
            assert_eq!(
                problem["errors"][0]["field"], "received_on",
                "{}",
                reply.text
            );
            assert!(
                reply.text.contains(why),
                "{action} {received_on}: {}",
                reply.text
            );
        }
        app.post_json(&admin, &path, None, &json!({"received": "2029-01-02"}))
            .await
            .problem(422, "invalid_request");
    }
    let view = app.get(&admin, &format!("/v1/subscriptions/{id}")).await;
    assert_eq!(
        (&view.body["status"], &view.body["cancel_received_at"]),
        (&json!("active"), &json!(null)),
        "nothing recorded"
    );

    // a month after the term's end, a notice received before its deadline would have
    // ended the subscription on 2029-01-31: too late to record it as a cancellation
    app.clock.set(paris("2029-03-01") + Duration::hours(10));
    let late = app
        .post_json(
            &admin,
            &format!("/v1/subscriptions/{id}/cancel"),
            None,
            &json!({"received_on": "2028-12-20"}),
        )
        .await;
    let problem = late.problem(422, "invalid_request");
    assert_eq!(problem["errors"][0]["field"], "received_on");
    assert!(late.text.contains("2029-01-31"), "{}", late.text);
}

/// DOMAIN.md's worked example, its notice received five days before it is recorded: fibre
/// at 39.90 HT/month started 2026-01-31, terminated 2027-06-15, pays 19 × 39.90 = 758.10;
/// the termination records the day the notice was received.
#[actix_web::test]
async fn a_termination_records_the_day_its_notice_was_received() {
    let (app, _conn) = seeded().await;
    let admin = app.admin().await;
    app.clock.set(paris("2027-06-15") + Duration::hours(10));
    let body = json!({"customer_id": WITH_MANDATE, "offer_code": "ip_access_fibre", "start_date": "2026-01-31"});
    let created = app
        .post_json(&admin, "/v1/subscriptions", None, &body)
        .await;
    let id = created.body["id"].as_str().unwrap();
    let ended = app
        .post_json(
            &admin,
            &format!("/v1/subscriptions/{id}/terminate"),
            None,
            &json!({"received_on": "2027-06-10"}),
        )
        .await;
    assert_eq!(ended.status, 200, "{}", ended.text);
    assert_eq!(
        (
            &ended.body["status"],
            &ended.body["termination_received_on"],
            &ended.body["terminated_at"]
        ),
        (
            &json!("ended"),
            &json!("2027-06-10"),
            &json!("2027-06-15T08:00:00Z")
        )
    );
    let terminated = ended.body["history"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "terminated")
        .unwrap();
    assert_eq!(
        (
            &terminated["detail"]["fee"],
            &terminated["detail"]["received_on"]
        ),
        (&json!("758.10"), &json!("2027-06-10"))
    );
}
