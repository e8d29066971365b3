//! The catalog names the items other rules price from: packs name the offers their overage
//! and unit credits are sold at, and one offer per role sells tickets or prices
//! intervention time. Nothing is found by a fixed offer code.

use serde_json::{json, Value};

use grandlivre::demo::{DEMO_CUSTOMER_1 as C1, DEMO_CUSTOMER_2 as C2};

use crate::helpers::{
    authorization_request, authorize_and_capture, paris, seeded, subscribe, TestApp,
};

fn pack(code: &str, overage_offer: Value) -> Value {
    json!({
        "code": code,
        "name": format!("Pack {code}"),
        "billing_period": "year",
        "price_basis": "ht",
        "vat_rate": "0.20",
        "commitment_months": 12,
        "renewal_months": 12,
        "addon": true,
        "entitlements": {"appointment_quota": 2, "overage_offer": overage_offer}
    })
}

fn item(code: &str, billing_period: &str) -> Value {
    json!({
        "code": code,
        "name": format!("Item {code}"),
        "billing_period": billing_period,
        "price_basis": "ht",
        "vat_rate": "0.20"
    })
}

async fn create(app: &TestApp, admin: &str, offer: &Value, price: Option<&str>) {
    let created = app.post_json(admin, "/v1/offers", None, offer).await;
    assert_eq!(created.status, 201, "{}", created.text);
    if let Some(price) = price {
        let path = format!("/v1/offers/{}/prices", offer["code"].as_str().unwrap());
        let body = json!({"effective_from": "2020-01-01", "unit_price": price});
        let priced = app.post_json(admin, &path, None, &body).await;
        assert_eq!(priced.status, 201, "{}", priced.text);
    }
}

#[actix_web::test]
async fn a_pack_names_an_existing_one_off_or_metered_overage_offer() {
    let (app, _conn) = seeded().await;
    let admin = app.admin().await;
    let refused = async |offer: Value, field: &str| {
        let r = app.post_json(&admin, "/v1/offers", None, &offer).await;
        r.problem(422, "invalid_request");
        assert_eq!(r.body["errors"][0]["field"], field, "{}", r.text);
    };
    refused(pack("p_none", Value::Null), "entitlements.overage_offer").await;
    refused(
        pack("p_nowhere", json!("nowhere")),
        "entitlements.overage_offer",
    )
    .await;
    refused(
        pack("p_recurring", json!("ip_access_fibre")),
        "entitlements.overage_offer",
    )
    .await;
    let mut unit_credits = item("p_credits", "year");
    unit_credits["commitment_months"] = json!(12);
    unit_credits["renewal_months"] = json!(12);
    unit_credits["entitlements"] = json!({"unit_credit_purchase": true});
    refused(unit_credits, "entitlements.unit_credit_offer").await;
    let mut ticket = item("ticket_bis", "per_use");
    ticket["role"] = json!("ticket");
    refused(ticket.clone(), "role").await;
    // one offer per role: the demo's `ticket` has it
    ticket["billing_period"] = json!("once");
    let taken = app.post_json(&admin, "/v1/offers", None, &ticket).await;
    taken.problem(409, "already_exists");
    assert_eq!(taken.body["errors"][0]["field"], "role", "{}", taken.text);
    let shown = app.get(&admin, "/v1/offers/assistance_plus_pack").await;
    assert_eq!(shown.body["entitlements"]["overage_offer"], "appointment");
    assert_eq!(
        app.get(&admin, "/v1/offers/ticket").await.body["role"],
        "ticket"
    );
}

#[actix_web::test]
async fn overage_is_billed_at_the_packs_own_offer_and_one_pack_does_not_stop_the_run() {
    let (app, mut conn) = seeded().await;
    let admin = app.admin().await;
    create(&app, &admin, &item("extra_visit", "per_use"), Some("70.00")).await;
    create(&app, &admin, &item("unpriced_visit", "per_use"), None).await;
    create(
        &app,
        &admin,
        &pack("small_pack", json!("extra_visit")),
        Some("100.00"),
    )
    .await;
    create(
        &app,
        &admin,
        &pack("odd_pack", json!("unpriced_visit")),
        Some("100.00"),
    )
    .await;
    let mut packs = Vec::new();
    for (customer, code) in [(C1, "small_pack"), (C2, "odd_pack")] {
        let parent = subscribe(
            &mut conn,
            customer,
            "premium_assistance",
            "2026-01-31",
            None,
        )
        .await;
        packs.push(subscribe(&mut conn, customer, code, "2026-01-31", Some(parent)).await);
        for i in 0..3 {
            let at = paris("2026-06-01") + chrono::Duration::hours(i);
            let reference = format!("{code}-{i}");
            let req = authorization_request(customer, &reference, "appointment", None, "auto", at);
            authorize_and_capture(&mut conn, &req, at).await.unwrap();
        }
    }
    let close = async || {
        let ran = app
            .post_json(
                &admin,
                "/v1/jobs/assistance-period-close/run",
                None,
                &json!({"as_of": "2027-01-31T00:00:00+01:00"}),
            )
            .await;
        assert_eq!(ran.status, 200, "{}", ran.text);
        ran.body
    };
    let first = close().await;
    assert_eq!(first["job"], "assistance-period-close");
    assert_eq!(first["periods_closed"], 1, "{first}");
    assert_eq!(first["charges_created"], 1, "{first}");
    assert_eq!(first["failed"][0]["id"], packs[1].to_string(), "{first}");
    let charges = app
        .get(&admin, &format!("/v1/customers/{C1}/charges?limit=100"))
        .await;
    let overage: Vec<&Value> = charges.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["source"] == "assistance_overage")
        .collect();
    assert_eq!(overage.len(), 1, "{}", charges.text);
    assert_eq!(overage[0]["offer_code"], "extra_visit");
    assert_eq!(overage[0]["amount"], "70.00");

    // priced later, the failed pack is closed by the next run, the other not again
    let body = json!({"effective_from": "2020-01-01", "unit_price": "65.00"});
    let path = "/v1/offers/unpriced_visit/prices";
    assert_eq!(app.post_json(&admin, path, None, &body).await.status, 201);
    let second = close().await;
    assert_eq!(second["periods_closed"], 1, "{second}");
    assert_eq!(second["charges_created"], 1, "{second}");
    assert_eq!(second["failed"], json!([]), "{second}");
}

#[actix_web::test]
async fn offers_show_the_price_in_force_today_and_its_basis() {
    let (app, _conn) = seeded().await;
    let key = app.key(grandlivre::auth::Role::Customer, Some(C1)).await;
    let ticket = app.get(&key, "/v1/offers/ticket").await;
    assert_eq!(ticket.status, 200, "{}", ticket.text);
    assert_eq!(ticket.body["price_basis"], "ttc");
    assert_eq!(
        ticket.body["current_price"],
        json!({"effective_from": "2020-01-01", "unit_price": "100.00"})
    );
    let admin = app.admin().await;
    create(&app, &admin, &item("later_item", "once"), None).await;
    let body = json!({"effective_from": "2031-01-01", "unit_price": "12.5"});
    let priced = app
        .post_json(&admin, "/v1/offers/later_item/prices", None, &body)
        .await;
    assert_eq!(priced.status, 201, "{}", priced.text);
    let listed = app.get(&key, "/v1/offers").await;
    let later = |list: &Value| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|o| o["code"] == "later_item")
            .cloned()
            .unwrap()
    };
    assert_eq!(later(&listed.body)["current_price"], Value::Null);
    assert!(listed.body.as_array().unwrap().len() > 10);
    app.clock.set(paris("2031-01-01"));
    let listed = app.get(&key, "/v1/offers").await;
    assert_eq!(later(&listed.body)["current_price"]["unit_price"], "12.50");
}
