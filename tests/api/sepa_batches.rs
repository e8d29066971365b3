//! SEPA collection batches through HTTP (issue 13): mandate → subscription → invoice →
//! batch → pain.008 (checked against the XSD with xmllint) → submit → settle, with the
//! ledger verified after each step.

use chrono::Duration;
use grandlivre::auth::Role;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{balance, paris, seeded, TestApp};
use crate::sepa_files::*;

#[actix_web::test]
async fn mandate_subscription_invoice_batch_submit_settle_with_the_ledger_after_each_step() {
    let (app, _conn) = seeded().await;
    app.clock.set(paris("2026-11-24") + Duration::hours(10));
    let admin = app.admin().await;
    let finance = app.key(Role::Finance, None).await;
    // A: CORE, an accented name; B: B2B, no BIC, its account amended to another bank
    let a = customer(
        &app,
        &admin,
        "Société d'Électricité & Fils",
        "Rue de l'Église",
        "Saint-Étienne",
    )
    .await;
    let b = customer(
        &app,
        &admin,
        "Atelier Dupont SARL",
        "Rue de la Paix",
        "Saint-Chamond",
    )
    .await;
    mandate(&app, &finance, a, json!({"reference": "GL-A-1", "signed_on": "2026-11-02",
        "debtor_name": "Société Générale d'Électricité & Fils", "iban": "DE89 3704 0044 0532 0130 00",
        "bic": "COBADEFFXXX", "scheme": "CORE"})).await;
    let mb = mandate(&app, &finance, b, json!({"reference": "GL-B-1", "signed_on": "2026-11-03",
        "debtor_name": "Atelier Dupont SARL", "iban": "FR7630006000011234567890189", "scheme": "B2B"})).await;
    let amended = app
        .post_json(
            &finance,
            &format!("/v1/mandates/{}/amendments", mb["id"].as_str().unwrap()),
            None,
            &json!({"iban": "FR1420041010050500013M02606"}),
        )
        .await;
    assert_eq!(amended.status, 201, "{}", amended.text);
    for c in [a, b] {
        let sub = app
            .post_json(&admin, "/v1/subscriptions", None,
                &json!({"customer_id": c, "offer_code": "ip_access_fibre", "start_date": "2026-11-24"}))
            .await;
        assert_eq!(sub.status, 201, "{}", sub.text);
    }
    app.run_job("billing", paris("2026-11-24") + Duration::hours(12))
        .await;
    app.run_job("invoicing", paris("2026-11-24") + Duration::hours(12))
        .await;
    // C: an invoice too, no mandate: never collected
    let c = customer(&app, &admin, "Sans Mandat SAS", "Rue Neuve", "Lyon").await;
    crate::helpers::buy_tickets(&app, &admin, c, 1, None).await;
    let invoice_of = |customer: Uuid| {
        let app = &app;
        let admin = admin.clone();
        async move {
            let listed = app
                .get(&admin, &format!("/v1/invoices?customer_id={customer}"))
                .await;
            listed.body["items"][0].clone()
        }
    };
    let (ia, ib) = (invoice_of(a).await, invoice_of(b).await);
    assert_eq!(
        (&ia["totals"]["total_ttc"], &ia["due_on"]),
        (&json!("47.88"), &json!("2026-12-24")),
        "{ia}"
    );
    assert_eq!(balance(&app, &admin, a, "411").await, dec("47.88"));
    // each invoice is its pre-notification: the amount, the day (its due date, a TARGET2
    // business day), the mandate, the creditor and the account debited
    assert_eq!(
        ia["direct_debit"],
        json!({"collection_date": "2026-12-24", "amount": "47.88", "mandate_reference": "GL-A-1",
            "creditor_id": "FR72ZZZ123456", "debtor_iban": "DE89370400440532013000"})
    );
    assert_eq!(
        ib["direct_debit"]["debtor_iban"],
        "FR1420041010050500013M02606"
    );
    let ic = invoice_of(c).await;
    assert_eq!(
        ic["direct_debit"],
        Value::Null,
        "no mandate, no notice: {ic}"
    );
    let cii = app
        .get(
            &admin,
            &format!("/v1/invoices/{}/cii", ia["id"].as_str().unwrap()),
        )
        .await;
    assert_eq!(cii.status, 200, "{}", cii.text);
    for part in [
        "<ram:TypeCode>59</ram:TypeCode>",
        "GL-A-1",
        "<ram:CreditorReferenceID>FR72ZZZ123456</ram:CreditorReferenceID>",
        "<ram:IBANID>DE89370400440532013000</ram:IBANID>",
        "<ram:DirectDebitMandateID>GL-A-1</ram:DirectDebitMandateID>",
        "seront débités le 24/12/2026 du compte DE89 **** 3000, au titre du mandat GL-A-1",
    ] {
        assert!(cii.text.contains(part), "{part} not in {}", cii.text);
    }

    // the date: a TARGET2 business day, one ahead, with something to collect
    for (date, hint) in [
        ("2026-11-25", "earliest collection date"),
        ("2026-12-25", "not a TARGET2 business day"),
        ("2026-12-23", "no invoice to collect"),
    ] {
        let refused = app
            .post_json(
                &finance,
                "/v1/sepa/batches",
                None,
                &json!({"collection_date": date}),
            )
            .await;
        let problem = refused.problem(422, "invalid_request");
        assert_eq!(problem["errors"][0]["field"], "collection_date");
        assert!(
            problem["detail"].as_str().unwrap().contains(hint),
            "{date}: {}",
            refused.text
        );
    }
    let body = json!({"collection_date": "2026-12-24"});
    let made = app
        .post_json(&finance, "/v1/sepa/batches", Some("batch-1"), &body)
        .await;
    assert_eq!(made.status, 201, "{}", made.text);
    let batch = made.body.clone();
    assert_eq!(
        (
            &batch["status"],
            &batch["collections_count"],
            &batch["total"]
        ),
        (&json!("created"), &json!(2), &json!("95.76"))
    );
    assert_eq!(
        batch["groups"],
        json!([
        {"scheme": "B2B", "sequence_type": "FRST", "collections": 1, "total": "47.88"},
        {"scheme": "CORE", "sequence_type": "FRST", "collections": 1, "total": "47.88"}])
    );
    let e2e: Vec<&str> = batch["collections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["end_to_end_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        e2e,
        [
            format!("{}-01", ia["number"].as_str().unwrap()),
            format!("{}-01", ib["number"].as_str().unwrap())
        ]
    );
    let replay = app
        .post_json(&finance, "/v1/sepa/batches", Some("batch-1"), &body)
        .await;
    assert_eq!((replay.status, &replay.body), (200, &batch));
    // an invoice in a batch not yet settled is never collected twice
    app.post_json(&finance, "/v1/sepa/batches", None, &body)
        .await
        .problem(422, "invalid_request");
    let id = batch["id"].as_str().unwrap();
    let amendment = app
        .get(
            &finance,
            &format!("/v1/mandates/{}", mb["id"].as_str().unwrap()),
        )
        .await;
    assert_eq!(amendment.body["amendments"][0]["reported_in"], id);

    // the file
    let file = app
        .get(&finance, &format!("/v1/sepa/batches/{id}/pain008"))
        .await;
    assert_eq!(file.status, 200);
    assert_eq!(file.header("content-type"), Some("application/xml"));
    let xml = file.text.clone();
    xsd_valid(&xml);
    check_control_sums(&xml);
    // transliterated to the SEPA set (EPC table); the apostrophe, in the set, escaped
    assert!(
        xml.contains("<Nm>Societe Generale d&apos;Electricite + Fils</Nm>"),
        "{xml}"
    );
    assert!(
        xml.contains("<StrtNm>Rue de l&apos;Eglise</StrtNm>")
            && xml.contains("<TwnNm>Saint-Etienne</TwnNm>"),
        "{xml}"
    );
    assert!(xml.is_ascii(), "only the SEPA set");
    for group in texts(&xml, "PmtInf") {
        let scheme = texts(group, "Cd")
            .into_iter()
            .find(|c| *c == "CORE" || *c == "B2B")
            .unwrap();
        let mandates = texts(group, "MndtId");
        assert_eq!(
            mandates,
            [if scheme == "CORE" { "GL-A-1" } else { "GL-B-1" }],
            "CORE and B2B never mixed"
        );
        if scheme == "B2B" {
            assert_eq!(texts(group, "AmdmntInd"), ["true"]);
            assert!(group.contains("SMNDA"), "{group}");
        } else {
            assert!(texts(group, "AmdmntInd").is_empty(), "{group}");
        }
    }
    assert!(xml.contains(&format!(
        "<Ustrd>Facture {}</Ustrd>",
        ia["number"].as_str().unwrap()
    )));
    assert_eq!(
        app.get(&finance, &format!("/v1/sepa/batches/{id}/pain008"))
            .await
            .text,
        xml,
        "the same bytes"
    );
    let snapshot = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/api/snapshots/pain008.xml"
    );
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(snapshot, redacted(&xml)).unwrap();
    }
    assert_eq!(redacted(&xml), std::fs::read_to_string(snapshot).unwrap());

    // submitted: 411 → 5112, invoices collection_pending, no other payment takes them
    let bank_before = platform(&app, &admin, BANK).await;
    let submitted = app
        .post_json(
            &finance,
            &format!("/v1/sepa/batches/{id}/submit"),
            None,
            &json!(null),
        )
        .await;
    assert_eq!(
        (submitted.status, &submitted.body["status"]),
        (200, &json!("submitted")),
        "{}",
        submitted.text
    );
    assert_eq!(platform(&app, &admin, IN_TRANSIT).await, dec("95.76"));
    assert_eq!(balance(&app, &admin, a, "411").await, Decimal::ZERO);
    let read = app
        .get(
            &admin,
            &format!("/v1/invoices/{}", ia["id"].as_str().unwrap()),
        )
        .await;
    assert_eq!(read.body["status"], "collection_pending");
    let again = app
        .post_json(
            &finance,
            &format!("/v1/sepa/batches/{id}/submit"),
            None,
            &json!(null),
        )
        .await;
    assert_eq!((again.status, &again.body), (200, &submitted.body));
    assert_eq!(
        platform(&app, &admin, IN_TRANSIT).await,
        dec("95.76"),
        "submitted once"
    );
    let transfer = app.post_json(&admin, "/v1/payments", None, &json!({"customer_id": a, "amount": "47.88",
        "method": "transfer", "reference": "VIR-1", "value_date": "2026-11-24", "invoice_ids": [ia["id"]]})).await;
    transfer.problem(422, "invalid_request");
    // nor is it credited while the bank collects it
    let credit = format!("/v1/invoices/{}/credit-notes", ia["id"].as_str().unwrap());
    app.post_json(
        &admin,
        &credit,
        Some("cn-1"),
        &json!({"reason": "Goodwill"}),
    )
    .await
    .problem(409, "invalid_state");
    let m = app
        .get(&admin, &format!("/v1/customers/{a}/mandates"))
        .await;
    assert_eq!(m.body["items"][0]["last_collected_on"], "2026-12-24");
    app.assert_ledger_verifies(&admin).await;

    // settled: 5112 → 512, each invoice paid by a direct_debit payment
    app.clock.set(paris("2026-12-24") + Duration::hours(16));
    let settle = format!("/v1/sepa/batches/{id}/settle");
    app.post_json(
        &finance,
        &settle,
        None,
        &json!({"value_date": "2026-12-23"}),
    )
    .await
    .problem(422, "invalid_request");
    app.post_json(
        &finance,
        &settle,
        None,
        &json!({"value_date": "2026-12-25"}),
    )
    .await
    .problem(422, "invalid_request");
    let settled = app
        .post_json(
            &finance,
            &settle,
            None,
            &json!({"value_date": "2026-12-24"}),
        )
        .await;
    assert_eq!(
        (settled.status, &settled.body["status"]),
        (200, &json!("settled")),
        "{}",
        settled.text
    );
    assert_eq!(platform(&app, &admin, IN_TRANSIT).await, Decimal::ZERO);
    assert_eq!(
        platform(&app, &admin, BANK).await - bank_before,
        dec("95.76")
    );
    let read = app
        .get(
            &admin,
            &format!("/v1/invoices/{}", ia["id"].as_str().unwrap()),
        )
        .await;
    assert_eq!(read.body["status"], "paid", "{}", read.text);
    let payments = app
        .get(&admin, &format!("/v1/payments?customer_id={a}"))
        .await;
    let p = &payments.body["items"][0];
    assert_eq!(
        (
            &p["method"],
            &p["reference"],
            &p["amount"],
            &p["value_date"]
        ),
        (
            &json!("direct_debit"),
            &json!(e2e[0]),
            &json!("47.88"),
            &json!("2026-12-24")
        ),
        "{}",
        payments.text
    );
    assert_eq!(settled.body["collections"][0]["payment_id"], p["id"]);
    let again = app
        .post_json(
            &finance,
            &settle,
            None,
            &json!({"value_date": "2026-12-24"}),
        )
        .await;
    assert_eq!((again.status, &again.body), (200, &settled.body));
    assert_eq!(
        platform(&app, &admin, BANK).await - bank_before,
        dec("95.76"),
        "settled once"
    );
    // a collection's end-to-end id is its payment's reference: a transfer under it is a 409
    let clash = app
        .post_json(
            &admin,
            "/v1/payments",
            None,
            &json!({"customer_id": a, "amount": "10.00",
            "method": "transfer", "reference": e2e[0], "value_date": "2026-12-24"}),
        )
        .await;
    assert_eq!(
        clash.problem(409, "idempotency_conflict")["errors"][0]["field"],
        "reference"
    );
    assert_eq!(
        platform(&app, &admin, BANK).await - bank_before,
        dec("95.76")
    );
    app.post_json(
        &finance,
        &settle,
        None,
        &json!({"value_date": "2026-12-24T00:00:00Z"}),
    )
    .await
    .problem(422, "invalid_request");
    app.assert_ledger_verifies(&admin).await;
}

#[actix_web::test]
async fn batches_are_finances_and_follow_their_order() {
    let (app, _conn) = seeded().await;
    app.clock.set(paris("2026-11-24") + Duration::hours(10));
    let admin = app.admin().await;
    let customer_key = app
        .key(Role::Customer, Some(grandlivre::demo::DEMO_CUSTOMER_1))
        .await;
    let ticketing = app.key(Role::Ticketing, None).await;
    for key in [&customer_key, &ticketing] {
        app.post_json(
            key,
            "/v1/sepa/batches",
            None,
            &json!({"collection_date": "2026-12-24"}),
        )
        .await
        .problem(403, "forbidden");
    }
    let unknown = Uuid::now_v7();
    app.get(&admin, &format!("/v1/sepa/batches/{unknown}"))
        .await
        .problem(404, "not_found");
    app.get(&admin, &format!("/v1/sepa/batches/{unknown}/pain008"))
        .await
        .problem(404, "not_found");
    app.post_json(
        &admin,
        &format!("/v1/sepa/batches/{unknown}/submit"),
        None,
        &json!(null),
    )
    .await
    .problem(404, "not_found");
    app.post_json(
        &admin,
        "/v1/sepa/batches",
        None,
        &json!({"collection_date": "24/12/2026"}),
    )
    .await
    .problem(422, "invalid_request");
    // the demo customer's ticket invoice, collected under its demo mandate
    crate::helpers::buy_tickets(&app, &admin, grandlivre::demo::DEMO_CUSTOMER_1, 1, None).await;
    let made = app
        .post_json(
            &admin,
            "/v1/sepa/batches",
            None,
            &json!({"collection_date": "2026-12-24"}),
        )
        .await;
    assert_eq!(made.status, 201, "{}", made.text);
    let id = made.body["id"].as_str().unwrap();
    app.post_json(
        &admin,
        &format!("/v1/sepa/batches/{id}/settle"),
        None,
        &json!({"value_date": "2026-11-24"}),
    )
    .await
    .problem(409, "invalid_state");
    app.get(&customer_key, &format!("/v1/sepa/batches/{id}"))
        .await
        .problem(403, "forbidden");
    xsd_valid(
        &app.get(&admin, &format!("/v1/sepa/batches/{id}/pain008"))
            .await
            .text,
    );
}

/// Runs billing and invoicing for `date` (at 17:00 Paris, after the clock's time: charges
/// are created at the clock's time) and answers the customer's invoices.
async fn invoice_up_to(app: &TestApp, key: &str, customer: Uuid, date: &str) -> Vec<Value> {
    app.run_job("billing", paris(date) + Duration::hours(17))
        .await;
    app.run_job("invoicing", paris(date) + Duration::hours(17))
        .await;
    let listed = app
        .get(key, &format!("/v1/invoices?customer_id={customer}"))
        .await;
    listed.body["items"].as_array().unwrap().clone()
}

#[actix_web::test]
async fn the_second_collection_is_rcur_and_an_amendment_is_reported_once() {
    let (app, _conn) = seeded().await;
    app.clock.set(paris("2026-11-24") + Duration::hours(10));
    let admin = app.admin().await;
    let c = customer(
        &app,
        &admin,
        "Atelier Dupont SARL",
        "Rue de la Paix",
        "Lyon",
    )
    .await;
    let m = mandate(
        &app,
        &admin,
        c,
        json!({"reference": "GL-R-1", "signed_on": "2026-11-02",
        "debtor_name": "Atelier Dupont SARL", "iban": "FR7630006000011234567890189"}),
    )
    .await;
    // the same bank (30006), another account: the previous IBAN is reported
    let amended = app
        .post_json(
            &admin,
            &format!("/v1/mandates/{}/amendments", m["id"].as_str().unwrap()),
            None,
            &json!({"iban": "FR76 3000 6000 0198 7654 3210 949"}),
        )
        .await;
    assert_eq!(amended.status, 201, "{}", amended.text);
    let sub = app
        .post_json(
            &admin,
            "/v1/subscriptions",
            None,
            &json!({"customer_id": c, "offer_code": "ip_access_fibre", "start_date": "2026-11-24"}),
        )
        .await;
    assert_eq!(sub.status, 201, "{}", sub.text);
    invoice_up_to(&app, &admin, c, "2026-11-24").await;
    let first = made_batch(&app, &admin, "2026-12-24").await;
    let id = first["id"].as_str().unwrap();
    let xml = app
        .get(&admin, &format!("/v1/sepa/batches/{id}/pain008"))
        .await
        .text;
    xsd_valid(&xml);
    assert_eq!(texts(&xml, "SeqTp"), ["FRST"]);
    assert_eq!(texts(&xml, "AmdmntInd"), ["true"]);
    assert!(
        xml.contains("<OrgnlDbtrAcct><Id><IBAN>FR7630006000011234567890189</IBAN>"),
        "{xml}"
    );
    submitted(&app, &admin, id).await;
    app.clock.set(paris("2026-12-24") + Duration::hours(16));
    settled(&app, &admin, id, "2026-12-24").await;

    // the next period's invoice, a month later: RCUR, nothing more to report
    let invoices = invoice_up_to(&app, &admin, c, "2026-12-24").await;
    assert_eq!(invoices.len(), 2, "{invoices:?}");
    app.clock.set(paris("2027-01-20") + Duration::hours(10));
    let second = made_batch(&app, &admin, "2027-01-25").await;
    assert_eq!(
        second["groups"],
        json!([
        {"scheme": "CORE", "sequence_type": "RCUR", "collections": 1, "total": "47.88"}])
    );
    assert_eq!(second["collections"][0]["amendment"], false);
    let id2 = second["id"].as_str().unwrap();
    let xml = app
        .get(&admin, &format!("/v1/sepa/batches/{id2}/pain008"))
        .await
        .text;
    xsd_valid(&xml);
    check_control_sums(&xml);
    assert_ne!(
        texts(&xml, "MsgId"),
        texts(
            &app.get(&admin, &format!("/v1/sepa/batches/{id}/pain008"))
                .await
                .text,
            "MsgId"
        ),
        "unique message ids"
    );
    assert!(texts(&xml, "AmdmntInd").is_empty(), "{xml}");
    let read = app
        .get(
            &admin,
            &format!("/v1/mandates/{}", m["id"].as_str().unwrap()),
        )
        .await;
    assert_eq!(
        (&read.body["last_collected_on"], &read.body["lapses_after"]),
        (&json!("2026-12-24"), &json!("2029-12-23"))
    );
    app.assert_ledger_verifies(&admin).await;
}

#[actix_web::test]
async fn a_one_off_mandate_collects_once_and_a_mandate_asked_to_end_collects_a_final_time() {
    let (app, _conn) = seeded().await;
    app.clock.set(paris("2026-11-24") + Duration::hours(10));
    let admin = app.admin().await;
    let finance = app.key(Role::Finance, None).await;
    let d = customer(&app, &admin, "Ponctuel SARL", "Rue Haute", "Roanne").await;
    let e = customer(&app, &admin, "Partant SAS", "Rue Basse", "Feurs").await;
    let md = mandate(&app, &finance, d, json!({"reference": "GL-OOFF-1", "signed_on": "2026-11-20",
        "debtor_name": "Ponctuel SARL", "iban": "FR7630006000011234567890189", "payment_type": "one_off"})).await;
    assert_eq!(md["payment_type"], "one_off");
    let me = mandate(
        &app,
        &finance,
        e,
        json!({"reference": "GL-FNAL-1", "signed_on": "2026-11-20",
        "debtor_name": "Partant SAS", "iban": "FR1420041010050500013M02606"}),
    )
    .await;
    assert_eq!(me["payment_type"], "recurrent");
    let fibre = |c: Uuid| json!({"customer_id": c, "offer_code": "ip_access_fibre"});
    // a one-off mandate is no mandate for a subscription collected every month
    app.post_json(&admin, "/v1/subscriptions", None, &fibre(d))
        .await
        .problem(422, "sepa_mandate_required");
    let first_d = crate::helpers::buy_tickets(&app, &admin, d, 1, None).await;
    let second_d = crate::helpers::buy_tickets(&app, &admin, d, 1, None).await;
    let first_e = crate::helpers::buy_tickets(&app, &admin, e, 1, None).await;
    let notice = |purchase: &Value| {
        let (app, admin) = (&app, admin.clone());
        let invoice = purchase["invoice_id"].as_str().unwrap().to_string();
        async move {
            app.get(&admin, &format!("/v1/invoices/{invoice}"))
                .await
                .body["direct_debit"]
                .clone()
        }
    };
    assert_eq!(notice(&first_d).await["mandate_reference"], "GL-OOFF-1");
    assert_eq!(
        notice(&second_d).await,
        Value::Null,
        "a one-off mandate announces one collection"
    );
    assert_eq!(notice(&first_e).await["mandate_reference"], "GL-FNAL-1");

    // E's mandate is to end after one last collection; D's, one-off, cannot be asked to
    let revoke = |id: &Value, body: Value| {
        let (app, finance) = (&app, finance.clone());
        let id = id.as_str().unwrap().to_string();
        async move {
            app.post_json(&finance, &format!("/v1/mandates/{id}/revoke"), None, &body)
                .await
        }
    };
    revoke(&md["id"], json!({"after_final_collection": true}))
        .await
        .problem(409, "invalid_state");
    let ending = revoke(
        &me["id"],
        json!({"reason": "contract ended", "after_final_collection": true}),
    )
    .await;
    assert_eq!(ending.status, 200, "{}", ending.text);
    assert_eq!(ending.body["status"], "active");
    assert!(ending.body["final_collection_requested_at"].is_string());
    app.post_json(&admin, "/v1/subscriptions", None, &fibre(e))
        .await
        .problem(422, "sepa_mandate_required");
    let second_e = crate::helpers::buy_tickets(&app, &admin, e, 1, None).await;
    assert_eq!(
        notice(&second_e).await,
        Value::Null,
        "it announces nothing new"
    );

    let made = made_batch(&app, &finance, "2026-12-24").await;
    assert_eq!(
        made["groups"],
        json!([
            {"scheme": "CORE", "sequence_type": "OOFF", "collections": 1, "total": "100.00"},
            {"scheme": "CORE", "sequence_type": "FNAL", "collections": 1, "total": "100.00"}
        ])
    );
    let id = made["id"].as_str().unwrap();
    let xml = app
        .get(&finance, &format!("/v1/sepa/batches/{id}/pain008"))
        .await
        .text;
    xsd_valid(&xml);
    check_control_sums(&xml);
    for seq in ["<SeqTp>OOFF</SeqTp>", "<SeqTp>FNAL</SeqTp>"] {
        assert!(xml.contains(seq), "{seq}: {xml}");
    }
    submitted(&app, &finance, id).await;
    for (m, reason) in [
        (&md, "its last collection was presented"),
        (&me, "contract ended; its last collection was presented"),
    ] {
        let read = app
            .get(
                &finance,
                &format!("/v1/mandates/{}", m["id"].as_str().unwrap()),
            )
            .await;
        assert_eq!(read.body["status"], "revoked", "{}", read.text);
        assert!(
            read.body["status_reason"]
                .as_str()
                .unwrap()
                .starts_with(reason),
            "{}",
            read.text
        );
    }
    app.assert_ledger_verifies(&admin).await;
}
