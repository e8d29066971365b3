//! SEPA direct debit through HTTP (issue 13): mandates, their amendments, revocation and
//! lapse, and who may see them.

use chrono::Duration;
use grandlivre::auth::Role;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{new_customer, paris, seeded, TestApp};

fn mandate_body(reference: &str) -> Value {
    json!({
        "reference": reference,
        "signed_on": "2026-11-02",
        "debtor_name": "Atelier Dupont SARL",
        "iban": "FR76 3000 6000 0112 3456 7890 189",
        "bic": "agrifrpp",
        "scheme": "CORE"
    })
}

/// Records `body` as a mandate of `customer` (201) and answers it.
async fn record(app: &TestApp, key: &str, customer: Uuid, body: &Value) -> Value {
    let created = app
        .post_json(
            key,
            &format!("/v1/customers/{customer}/mandates"),
            None,
            body,
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    created.body
}

#[actix_web::test]
async fn mandates_are_recorded_read_listed_and_replayed() {
    let app = TestApp::spawn().await;
    app.clock.set(paris("2026-11-24") + Duration::hours(10));
    let admin = app.admin().await;
    let finance = app.key(Role::Finance, None).await;
    let customer = new_customer(&app, &admin, "c-1").await;
    let path = format!("/v1/customers/{customer}/mandates");
    let body = mandate_body("GL-2026-000123");
    let created = app.post_json(&finance, &path, Some("m-1"), &body).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let m = &created.body;
    assert_eq!(m["customer_id"], customer.to_string());
    assert_eq!(m["reference"], "GL-2026-000123");
    assert_eq!(
        m["iban"], "FR7630006000011234567890189",
        "electronic format"
    );
    assert_eq!(m["bic"], "AGRIFRPP");
    assert_eq!(m["scheme"], "CORE");
    assert_eq!(m["status"], "active");
    assert_eq!(m["lapses_after"], "2029-11-01");
    assert_eq!(m["last_collected_on"], Value::Null);
    assert_eq!(m["amendments"], json!([]));
    let id = m["id"].as_str().unwrap();

    let read = app.get(&finance, &format!("/v1/mandates/{id}")).await;
    assert_eq!((read.status, &read.body), (200, m));
    let listed = app.get(&finance, &path).await;
    assert_eq!(listed.body["items"], json!([m]), "{}", listed.text);

    // the same key and body: the first mandate; another body: 409
    let replay = app.post_json(&finance, &path, Some("m-1"), &body).await;
    assert_eq!((replay.status, &replay.body), (200, m));
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    app.post_json(&finance, &path, Some("m-1"), &mandate_body("GL-OTHER"))
        .await
        .problem(409, "idempotency_conflict");
    // a reference is unique whoever records it, for whichever customer
    let other = new_customer(&app, &admin, "c-2").await;
    let dup = app
        .post_json(
            &admin,
            &format!("/v1/customers/{other}/mandates"),
            None,
            &body,
        )
        .await;
    assert_eq!(
        dup.problem(409, "already_exists")["errors"][0]["field"],
        "reference"
    );

    // B2B, no BIC: fine
    let mut b2b = mandate_body("GL-2026-000124");
    b2b["scheme"] = json!("B2B");
    b2b.as_object_mut().unwrap().remove("bic");
    let b2b = record(&app, &admin, customer, &b2b).await;
    assert_eq!((&b2b["scheme"], &b2b["bic"]), (&json!("B2B"), &Value::Null));
    let page = app.get(&admin, &format!("{path}?limit=1")).await;
    assert_eq!(page.body["items"][0]["id"], id);
    let cursor = page.body["next_cursor"].as_str().unwrap();
    let next = app
        .get(&admin, &format!("{path}?limit=1&cursor={cursor}"))
        .await;
    assert_eq!(next.body["items"][0]["id"], b2b["id"]);
}

#[actix_web::test]
async fn bad_mandates_are_422_naming_each_field_never_500() {
    let app = TestApp::spawn().await;
    app.clock.set(paris("2026-11-24") + Duration::hours(10));
    let admin = app.admin().await;
    let customer = new_customer(&app, &admin, "c-1").await;
    let path = format!("/v1/customers/{customer}/mandates");
    let cases: Vec<(Value, &str, &str)> = vec![
        (
            json!({"iban": "FR7630006000011234567890188"}),
            "iban",
            "checksum",
        ),
        (
            json!({"iban": "FR763000600001123456789018"}),
            "iban",
            "must be 27 characters",
        ),
        (
            json!({"iban": "DE8937O400440532013000"}),
            "iban",
            "position 7",
        ),
        (
            json!({"iban": "BR1800360305000010009795493C1"}),
            "iban",
            "SEPA",
        ),
        (json!({"signed_on": "2026-11-25"}), "signed_on", "future"),
        (json!({"signed_on": "2026-02-30"}), "signed_on", ""),
        (json!({"reference": "A".repeat(36)}), "reference", "35"),
        (json!({"reference": "GL_2026"}), "reference", "SEPA set"),
        (json!({"reference": "GL//2026"}), "reference", "//"),
        (json!({"reference": "GL-ÉTÉ-2026"}), "reference", "SEPA set"),
        (json!({"debtor_name": "   "}), "debtor_name", "blank"),
        (json!({"debtor_name": "é".repeat(71)}), "debtor_name", "70"),
        (json!({"bic": "AGRI"}), "bic", ""),
        (json!({"bic": "AGRIXXPP"}), "bic", "BIC"),
        (json!({"scheme": "SEPA"}), "scheme", ""),
        (json!({"mandate_id": "x"}), "mandate_id", ""),
    ];
    for (change, field, hint) in cases {
        let mut body = mandate_body("GL-BAD-1");
        for (k, v) in change.as_object().unwrap() {
            body[k] = v.clone();
        }
        let reply = app.post_json(&admin, &path, None, &body).await;
        let problem = reply.problem(422, "invalid_request");
        let error = problem["errors"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["field"] == field)
            .unwrap_or_else(|| panic!("{change}: {}", reply.text));
        assert!(
            error["message"].as_str().unwrap().contains(hint),
            "{change}: {}",
            reply.text
        );
    }
    // nothing was recorded
    assert_eq!(app.get(&admin, &path).await.body["items"], json!([]));
    app.post_json(
        &admin,
        &format!("/v1/customers/{}/mandates", Uuid::now_v7()),
        None,
        &mandate_body("GL-1"),
    )
    .await
    .problem(404, "not_found");
    app.patch_json(
        &admin,
        &format!("/v1/customers/{customer}"),
        &json!({"status": "closed"}),
    )
    .await;
    app.post_json(&admin, &path, None, &mandate_body("GL-1"))
        .await
        .problem(409, "customer_closed");
}

#[actix_web::test]
async fn customer_keys_see_only_their_own_mandates() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let (mine, theirs) = (
        new_customer(&app, &admin, "c-1").await,
        new_customer(&app, &admin, "c-2").await,
    );
    let my_mandate = record(&app, &admin, mine, &mandate_body("GL-MINE")).await;
    let their_mandate = record(&app, &admin, theirs, &mandate_body("GL-THEIRS")).await;
    let me = app.key(Role::Customer, Some(mine)).await;
    let listed = app
        .get(&me, &format!("/v1/customers/{mine}/mandates"))
        .await;
    assert_eq!(listed.body["items"], json!([my_mandate]), "{}", listed.text);
    let id = my_mandate["id"].as_str().unwrap();
    assert_eq!(
        app.get(&me, &format!("/v1/mandates/{id}")).await.status,
        200
    );
    app.get(&me, &format!("/v1/customers/{theirs}/mandates"))
        .await
        .problem(404, "not_found");
    let theirs_id = their_mandate["id"].as_str().unwrap();
    app.get(&me, &format!("/v1/mandates/{theirs_id}"))
        .await
        .problem(404, "not_found");
    // reading is all a customer key does
    app.post_json(
        &me,
        &format!("/v1/customers/{mine}/mandates"),
        None,
        &mandate_body("GL-2"),
    )
    .await
    .problem(403, "forbidden");
    app.post_json(&me, &format!("/v1/mandates/{id}/revoke"), None, &json!({}))
        .await
        .problem(403, "forbidden");
    app.post_json(
        &me,
        &format!("/v1/mandates/{id}/amendments"),
        None,
        &json!({"debtor_name": "X"}),
    )
    .await
    .problem(403, "forbidden");
    let ticketing = app.key(Role::Ticketing, None).await;
    app.get(&ticketing, &format!("/v1/mandates/{id}"))
        .await
        .problem(403, "forbidden");
}

#[actix_web::test]
async fn amendments_keep_what_they_replaced_and_revocation_ends_collection() {
    let (app, _conn) = seeded().await;
    app.clock.set(paris("2026-11-24") + Duration::hours(10));
    let admin = app.admin().await;
    let customer = grandlivre::demo::DEMO_CUSTOMER_2;
    let fibre = json!({"customer_id": customer, "offer_code": "ip_access_fibre"});
    app.post_json(&admin, "/v1/subscriptions", None, &fibre)
        .await
        .problem(422, "sepa_mandate_required");
    let m = record(&app, &admin, customer, &mandate_body("GL-AMEND-1")).await;
    let id = m["id"].as_str().unwrap();
    let amend = format!("/v1/mandates/{id}/amendments");

    let moved = app
        .post_json(
            &admin,
            &amend,
            Some("a-1"),
            &json!({"iban": "FR1420041010050500013M02606"}),
        )
        .await;
    assert_eq!(moved.status, 201, "{}", moved.text);
    assert_eq!(moved.body["iban"], "FR1420041010050500013M02606");
    assert_eq!(
        moved.body["bic"],
        Value::Null,
        "the BIC follows the account"
    );
    assert_eq!(moved.body["reference"], "GL-AMEND-1", "the reference stays");
    let a = &moved.body["amendments"][0];
    assert_eq!(a["previous_iban"], "FR7630006000011234567890189");
    assert_eq!(
        (&a["previous_bic"], &a["bic_changed"]),
        (&json!("AGRIFRPP"), &json!(true))
    );
    assert_eq!(
        (&a["amended_on"], &a["reported_in"]),
        (&json!("2026-11-24"), &Value::Null)
    );
    // a retry is the same amendment, not a second one
    let again = app
        .post_json(
            &admin,
            &amend,
            Some("a-1"),
            &json!({"iban": "FR1420041010050500013M02606"}),
        )
        .await;
    assert_eq!((again.status, &again.body), (200, &moved.body));
    app.post_json(
        &admin,
        &amend,
        None,
        &json!({"iban": "FR14 2004 1010 0505 0001 3M02 606"}),
    )
    .await
    .problem(422, "invalid_request");
    app.post_json(&admin, &amend, None, &json!({}))
        .await
        .problem(422, "invalid_request");
    let renamed = app
        .post_json(
            &admin,
            &amend,
            None,
            &json!({"debtor_name": "Dupont & Fils"}),
        )
        .await;
    assert_eq!(renamed.status, 201, "{}", renamed.text);
    assert_eq!(
        renamed.body["amendments"][1]["previous_debtor_name"],
        "Atelier Dupont SARL"
    );
    assert_eq!(renamed.body["amendments"][1]["previous_iban"], Value::Null);

    let subscribed = app
        .post_json(&admin, "/v1/subscriptions", None, &fibre)
        .await;
    assert_eq!(subscribed.status, 201, "{}", subscribed.text);

    let revoke = format!("/v1/mandates/{id}/revoke");
    let revoked = app
        .post_json(
            &admin,
            &revoke,
            None,
            &json!({"reason": "Debtor's letter of 2026-11-23"}),
        )
        .await;
    assert_eq!(revoked.status, 200, "{}", revoked.text);
    assert_eq!(revoked.body["status"], "revoked");
    assert_eq!(
        revoked.body["status_reason"],
        "Debtor's letter of 2026-11-23"
    );
    assert_eq!(revoked.body["lapses_after"], Value::Null);
    // again: nothing changes
    let again = app.post_json(&admin, &revoke, None, &json!(null)).await;
    assert_eq!((again.status, &again.body), (200, &revoked.body));
    app.post_json(&admin, &amend, None, &json!({"debtor_name": "Y"}))
        .await
        .problem(409, "invalid_state");
    app.post_json(&admin, "/v1/subscriptions", None, &fibre)
        .await
        .problem(422, "sepa_mandate_required");
    app.post_json(
        &admin,
        &format!("/v1/mandates/{}/revoke", Uuid::now_v7()),
        None,
        &json!({}),
    )
    .await
    .problem(404, "not_found");
}

#[actix_web::test]
async fn a_mandate_unused_for_36_months_lapses() {
    let (app, _conn) = seeded().await;
    app.clock.set(paris("2026-11-24") + Duration::hours(10));
    let admin = app.admin().await;
    let customer = grandlivre::demo::DEMO_CUSTOMER_2;
    let mut body = mandate_body("GL-OLD-1");
    body["signed_on"] = json!("2023-12-01");
    let m = record(&app, &admin, customer, &body).await;
    assert_eq!(m["lapses_after"], "2026-11-30");
    let id = m["id"].as_str().unwrap();
    let fibre = json!({"customer_id": customer, "offer_code": "ip_access_fibre"});

    let ran = app
        .run_job("mandate-lapse", paris("2026-11-30") + Duration::hours(23))
        .await;
    assert_eq!(ran["mandates_lapsed"], 0);
    // the day it lapses, it no longer counts, whether the job ran or not
    app.clock.set(paris("2026-12-01") + Duration::hours(9));
    app.post_json(&admin, "/v1/subscriptions", None, &fibre)
        .await
        .problem(422, "sepa_mandate_required");
    let ran = app.run_job("mandate-lapse", paris("2026-12-01")).await;
    assert_eq!(ran["mandates_lapsed"], 1);
    let again = app.run_job("mandate-lapse", paris("2026-12-01")).await;
    assert_eq!(again["mandates_lapsed"], 0);
    let lapsed = app.get(&admin, &format!("/v1/mandates/{id}")).await;
    assert_eq!(lapsed.body["status"], "lapsed");
    assert_eq!(
        lapsed.body["status_reason"],
        "no collection presented for 36 months"
    );
    app.post_json(
        &admin,
        &format!("/v1/mandates/{id}/revoke"),
        None,
        &json!({}),
    )
    .await
    .problem(409, "invalid_state");
    // the demo mandate, signed at seeding, is still active
    let demo = app
        .get(
            &admin,
            &format!(
                "/v1/customers/{}/mandates",
                grandlivre::demo::DEMO_CUSTOMER_1
            ),
        )
        .await;
    assert_eq!(demo.body["items"][0]["status"], "active", "{}", demo.text);
}

/// `--creditor` (or `GRANDLIVRE_CREDITOR`) is checked at start-up: each bad field named,
/// the ICS by its own check digits.
#[test]
fn the_creditor_setting_is_checked_at_start_up() {
    let dir = std::env::temp_dir().join(format!("gl-creditor-{}", Uuid::now_v7().simple()));
    let run = |creditor: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_grandlivre"))
            .env_remove("DATABASE_URL")
            .env("GRANDLIVRE_CREDITOR", creditor)
            .arg("--data-dir")
            .arg(&dir)
            .args(["db", "status"])
            .output()
            .expect("run grandlivre");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let good = json!({
        "name": "Atelier Dupont SARL",
        "address": {"street_number": null, "street": "Rue de la Paix", "postcode": "75002",
                    "town": "Paris", "country": "FR"},
        "iban": "FR76 3000 6000 0112 3456 7890 189", "bic": "AGRIFRPP",
        "creditor_id": "FR22ZZZABC123", "prenotification_days": 5
    });
    let (ok, stderr) = run(&good.to_string());
    assert!(ok, "{stderr}");
    let mut bad = good.clone();
    bad["creditor_id"] = json!("FR20ZZZ123456"); // the IBAN rule's digits, not the ICS's
    bad["iban"] = json!("FR7630006000011234567890188");
    bad["prenotification_days"] = json!(20);
    let (ok, stderr) = run(&bad.to_string());
    assert!(!ok, "{stderr}");
    for field in ["--creditor", "creditor_id", "iban", "prenotification_days"] {
        assert!(stderr.contains(field), "{field}: {stderr}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
