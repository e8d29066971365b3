//! Strict input (issue 11, items 5, 6, 7, 8, 21): the caller is authorized before its body
//! is read; dates are RFC 3339 within 2000–2100; text is bounded and free of control
//! characters; every offending field of a body is named at once, by its path.

use actix_web::test::TestRequest;
use chrono::Duration;
use serde_json::{json, Value};
use uuid::Uuid;

use grandlivre::auth::Role;
use grandlivre::demo::{DEMO_CUSTOMER_1 as C1, DEMO_CUSTOMER_2 as C2};

use crate::helpers::{paris, seeded, Reply, TestApp};

const SUSPENSE: &str = "00000000-0000-4000-8000-000000000471";
const BANK: &str = "00000000-0000-4000-8000-000000000512";

/// The fields a 422 names, in its order.
#[track_caller]
fn fields(reply: &Reply) -> Vec<String> {
    reply.problem(422, "invalid_request")["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| e["field"].as_str().expect("a field").to_string())
        .collect()
}

/// The message of the error on `field`.
#[track_caller]
fn message<'a>(reply: &'a Reply, field: &str) -> &'a str {
    reply.body["errors"]
        .as_array()
        .and_then(|errors| errors.iter().find(|e| e["field"] == field))
        .and_then(|e| e["message"].as_str())
        .unwrap_or_else(|| panic!("no error on {field}: {}", reply.text))
}

fn authorization(reference: &str) -> Value {
    json!({
        "customer_id": C2,
        "request_ref": reference,
        "kind": "intervention",
        "classification": {"type": "in_scope"},
        "priority": "high",
        "requester": {"certified": false, "learning_phase_end": null},
        "occurred_at": "2026-11-20T09:00:00+01:00",
        "declared_at": "2026-11-20T10:00:00+01:00",
        "preferred_funding": "auto"
    })
}

fn customer() -> Value {
    json!({
        "legal_name": "Atelier Dupont SARL",
        "siren": "732829320",
        "vat_number": "FR44732829320",
        "billing_email": "compta@atelier-dupont.fr",
        "address": {"street_number": "12", "street": "Rue de la Paix", "postcode": "75002", "town": "Paris", "country": "FR"}
    })
}

fn adjustment() -> Value {
    json!({
        "description": "Bank fee for October",
        "postings": [
            {"account_id": SUSPENSE, "side": "debit", "amount": "12.50"},
            {"account_id": BANK, "side": "credit", "amount": "12.50"}
        ]
    })
}

async fn transactions_written(app: &TestApp) -> u64 {
    let admin = app.admin().await;
    let report = app.get(&admin, "/v1/ledger/verify").await;
    report.body["transactions_checked"]
        .as_u64()
        .expect("a count")
}

/// Item 5: a role that may not call an operation gets 403 whatever its body, and learns
/// nothing of the body's shape; a role that may gets the details.
#[actix_web::test]
async fn the_caller_is_authorized_before_its_body_is_read() {
    let (app, _conn) = seeded().await;
    let ticketing = app.key(Role::Ticketing, None).await;
    let reply = app
        .post_json(
            &ticketing,
            "/v1/ledger/transactions",
            Some("k"),
            &json!({"x": 1}),
        )
        .await;
    let problem = reply.problem(403, "forbidden");
    assert!(problem.get("errors").is_none(), "{}", reply.text);
    assert!(!reply.text.contains("description"), "{}", reply.text);
    // nor malformed, unsupported, oversized or absent bodies
    let bodies: [(&str, Vec<u8>); 4] = [
        ("application/json", b"{\"description\": ".to_vec()),
        ("text/plain", b"hello".to_vec()),
        ("application/json", vec![b' '; 70 * 1024]),
        ("application/json", Vec::new()),
    ];
    for (content_type, body) in bodies {
        let req = TestRequest::post()
            .uri("/v1/ledger/transactions")
            .insert_header(("Authorization", format!("Bearer {ticketing}")))
            .insert_header(("Content-Type", content_type))
            .set_payload(body);
        app.send(req).await.problem(403, "forbidden");
    }
    // the same for every other guarded body: a customer key on admin's and staff's writes
    let own = app.key(Role::Customer, Some(C1)).await;
    for path in [
        "/v1/offers",
        "/v1/offers/ticket/prices",
        "/v1/customers",
        "/v1/subscriptions",
        "/v1/authorizations",
        "/v1/jobs/billing/run",
    ] {
        app.post_json(&own, path, None, &json!({"x": 1}))
            .await
            .problem(403, "forbidden");
    }
    // another customer's purchase is not found, whatever the body
    app.post_json(
        &own,
        &format!("/v1/customers/{C2}/ticket-purchases"),
        None,
        &json!({"x": 1}),
    )
    .await
    .problem(404, "not_found");
    // finance may: it gets the accepted fields and what is missing
    let finance = app.key(Role::Finance, None).await;
    let reply = app
        .post_json(
            &finance,
            "/v1/ledger/transactions",
            Some("k"),
            &json!({"x": 1}),
        )
        .await;
    assert_eq!(fields(&reply), ["description", "postings", "x"]);
    assert!(
        message(&reply, "x").contains("`description`, `effective_at`, `metadata`, `postings`"),
        "{}",
        reply.text
    );
    assert_eq!(transactions_written(&app).await, 0);
}

/// Item 6: dates are RFC 3339 date-times or zero-padded `YYYY-MM-DD` dates, from 2000-01-01
/// to 2100-12-31, in bodies (422) and in the query (400), each naming its field.
#[actix_web::test]
async fn dates_are_rfc_3339_within_2000_to_2100() {
    let (app, _conn) = seeded().await;
    app.clock.set(paris("2026-11-20") + Duration::hours(11));
    let ticketing = app.key(Role::Ticketing, None).await;
    let admin = app.admin().await;

    let mut far = authorization("TCK-9999");
    far["occurred_at"] = json!("9999-12-27T10:00:00Z");
    far["declared_at"] = json!("9999-12-27T10:00:00Z");
    let reply = app
        .post_json(&ticketing, "/v1/authorizations", None, &far)
        .await;
    assert_eq!(fields(&reply), ["declared_at", "occurred_at"]);
    assert!(message(&reply, "occurred_at").contains("2000-01-01 to 2100-12-31"));

    for (date, expected) in [
        ("0000-01-01", "2000-01-01 to 2100-12-31"),
        ("1899-12-31", "2000-01-01 to 2100-12-31"),
        ("2026-1-1", "YYYY-MM-DD"),
    ] {
        let mut body = authorization(&format!("TCK-{date}"));
        body["requester"]["learning_phase_end"] = json!(date);
        let reply = app
            .post_json(&ticketing, "/v1/authorizations", None, &body)
            .await;
        assert_eq!(fields(&reply), ["requester.learning_phase_end"], "{date}");
        assert!(
            message(&reply, "requester.learning_phase_end").contains(expected),
            "{date}: {}",
            reply.text
        );
    }
    for (at, expected) in [
        ("2026-11-20 09:00:00+01:00", "RFC 3339"),
        ("2026-11-20T09:00:00", "RFC 3339"),
        ("2026-11-20T9:00:00Z", "RFC 3339"),
        ("+10000-01-03T15:00:00Z", "RFC 3339"),
        ("1999-12-31T23:59:59Z", "2100-12-31"),
        ("2101-01-01T00:00:00Z", "2100-12-31"),
    ] {
        let mut body = authorization(&format!("TCK-{at}"));
        body["occurred_at"] = json!(at);
        let reply = app
            .post_json(&ticketing, "/v1/authorizations", None, &body)
            .await;
        assert_eq!(fields(&reply), ["occurred_at"], "{at}");
        assert!(message(&reply, "occurred_at").contains(expected), "{at}");
    }

    let subscription =
        json!({"customer_id": C1, "offer_code": "ip_access_fibre", "start_date": "2026-1-1"});
    let reply = app
        .post_json(&admin, "/v1/subscriptions", None, &subscription)
        .await;
    assert_eq!(fields(&reply), ["start_date"]);
    let price = json!({"effective_from": "1999-12-31", "unit_price": "1.00"});
    let reply = app
        .post_json(&admin, "/v1/offers/ticket/prices", None, &price)
        .await;
    assert_eq!(fields(&reply), ["effective_from"]);
    let reply = app
        .post_json(
            &admin,
            "/v1/jobs/billing/run",
            None,
            &json!({"as_of": "2026-12-01T00:00:00+0100"}),
        )
        .await;
    assert_eq!(fields(&reply), ["as_of"]);
    let mut fee = adjustment();
    fee["effective_at"] = json!("2101-01-01T00:00:00Z");
    let reply = app
        .post_json(&admin, "/v1/ledger/transactions", Some("late"), &fee)
        .await;
    assert_eq!(fields(&reply), ["effective_at"]);

    for as_of in ["2026-1-1T00:00:00Z", "9999-12-31T00:00:00Z", "2026-12-01"] {
        let reply = app
            .get(&admin, &format!("/v1/ledger/accounts/{BANK}?as_of={as_of}"))
            .await;
        let problem = reply.problem(400, "invalid_parameter");
        assert_eq!(problem["errors"][0]["field"], "as_of", "{as_of}");
    }
    let reply = app
        .get(
            &admin,
            &format!("/v1/ledger/accounts/{BANK}?as_of=2026-12-01T00:00:00%2B01:00"),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);

    // what is accepted is answered in RFC 3339
    let ok = app
        .post_json(
            &ticketing,
            "/v1/authorizations",
            None,
            &authorization("TCK-OK"),
        )
        .await;
    assert_eq!(ok.status, 201, "{}", ok.text);
    let created = ok.body["created_at"].as_str().expect("created_at");
    assert!(
        grandlivre::input::parse_instant(created).is_ok(),
        "{created}"
    );
    assert_eq!(transactions_written(&app).await, 0);
}

/// Item 7: text is bounded and free of control characters; a JSON value of the wrong type
/// (an array for an object) is refused, naming the field.
#[actix_web::test]
async fn text_is_bounded_and_types_are_exact() {
    let (app, mut conn) = seeded().await;
    app.clock.set(paris("2026-11-20") + Duration::hours(11));
    let admin = app.admin().await;
    let ticketing = app.key(Role::Ticketing, None).await;

    let mut body = customer();
    body["legal_name"] = json!("Atelier\u{7} Dupont");
    body["address"]["street"] = json!("Rue de la \u{1b}[31mPaix");
    body["address"]["town"] = json!("Paris\nCedex");
    let reply = app.post_json(&admin, "/v1/customers", None, &body).await;
    assert_eq!(
        fields(&reply),
        ["address.street", "address.town", "legal_name"]
    );
    assert!(message(&reply, "legal_name").contains("control characters"));

    let mut reference = authorization("TCK-\u{7}");
    reference["service_code"] = json!("x".repeat(10 * 1024));
    let reply = app
        .post_json(&ticketing, "/v1/authorizations", None, &reference)
        .await;
    assert_eq!(fields(&reply), ["request_ref", "service_code"]);
    assert_eq!(message(&reply, "service_code"), "at most 64 characters");

    let mut fee = adjustment();
    fee["description"] = json!("fee\u{7}");
    fee["metadata"] = json!({"note": ["ok", "\u{1b}"], "k\u{0}": 1});
    let reply = app
        .post_json(&admin, "/v1/ledger/transactions", Some("bel"), &fee)
        .await;
    assert_eq!(
        fields(&reply),
        ["description", "metadata.k\u{0}", "metadata.note[1]"]
    );

    // bounds count characters, not bytes
    let mut long = customer();
    long["legal_name"] = json!("é".repeat(200));
    let reply = app.post_json(&admin, "/v1/customers", None, &long).await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    long["legal_name"] = json!("é".repeat(201));
    let reply = app.post_json(&admin, "/v1/customers", None, &long).await;
    assert_eq!(fields(&reply), ["legal_name"]);
    assert_eq!(message(&reply, "legal_name"), "at most 200 characters");

    let mut offer = serde_json::to_value(
        grandlivre::catalog::store::get(&mut conn, "service_plus_pack")
            .await
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    offer["code"] = json!("service_plus_array");
    offer["entitlements"] = json!([]);
    let reply = app.post_json(&admin, "/v1/offers", None, &offer).await;
    assert_eq!(fields(&reply), ["entitlements"]);
    assert_eq!(message(&reply, "entitlements"), "expected an object");
    let mut body = customer();
    body["address"] = json!(["12", "Rue de la Paix", "75002", "Paris", "FR"]);
    let reply = app.post_json(&admin, "/v1/customers", None, &body).await;
    assert_eq!(fields(&reply), ["address"]);
    let reply = app
        .post_json(&admin, "/v1/customers", None, &json!([customer()]))
        .await;
    assert_eq!(fields(&reply), ["body"]);
    // a field named twice is refused, not resolved by a guess
    let req = TestRequest::post()
        .uri(&format!("/v1/customers/{C1}/ticket-purchases"))
        .insert_header(("Authorization", format!("Bearer {admin}")))
        .insert_header(("Content-Type", "application/json"))
        .set_payload(r#"{"quantity": 1, "quantity": 1000}"#);
    let reply = app.send(req).await;
    assert_eq!(fields(&reply), ["quantity"]);
    assert!(message(&reply, "quantity").contains("duplicate"));
    // a header's control character too
    let req = TestRequest::post()
        .uri("/v1/ledger/transactions")
        .insert_header(("Authorization", format!("Bearer {admin}")))
        .insert_header(("Content-Type", "application/json"))
        .insert_header(("Idempotency-Key", "a\tb"))
        .set_payload(adjustment().to_string());
    let reply = app.send(req).await;
    let problem = reply.problem(400, "invalid_parameter");
    assert_eq!(problem["errors"][0]["field"], "Idempotency-Key");
    assert_eq!(transactions_written(&app).await, 0);
}

/// Item 8: `null` in an enum field, like any other wrong type, is a 422 naming the field;
/// a `null` body is the empty request where the contract allows one (capture, reverse).
#[actix_web::test]
async fn null_and_wrong_types_are_422_naming_the_field() {
    let (app, _conn) = seeded().await;
    app.clock.set(paris("2026-11-20") + Duration::hours(11));
    let admin = app.admin().await;
    let ticketing = app.key(Role::Ticketing, None).await;

    for field in ["kind", "priority", "preferred_funding", "classification"] {
        let mut body = authorization(&format!("TCK-null-{field}"));
        body[field] = Value::Null;
        let reply = app
            .post_json(&ticketing, "/v1/authorizations", None, &body)
            .await;
        assert_eq!(fields(&reply), [field], "{}", reply.text);
    }
    let mut body = authorization("TCK-types");
    body["kind"] = json!(1);
    body["requester"]["certified"] = json!("yes");
    body["customer_id"] = json!("not-a-uuid");
    let reply = app
        .post_json(&ticketing, "/v1/authorizations", None, &body)
        .await;
    assert_eq!(
        fields(&reply),
        ["customer_id", "kind", "requester.certified"]
    );
    assert_eq!(
        message(&reply, "kind"),
        "expected one of `diagnostic`, `intervention`, `appointment`, `service_purchase`"
    );

    let mut fee = adjustment();
    fee["postings"][1]["side"] = Value::Null;
    let reply = app
        .post_json(&admin, "/v1/ledger/transactions", Some("null"), &fee)
        .await;
    assert_eq!(fields(&reply), ["postings[1].side"]);
    let reply = app
        .post_json(
            &admin,
            &format!("/v1/customers/{C1}/ticket-purchases"),
            None,
            &json!({"quantity": "3"}),
        )
        .await;
    assert_eq!(fields(&reply), ["quantity"]);
    let reply = app
        .post_json(&admin, "/v1/customers", None, &Value::Null)
        .await;
    assert_eq!(fields(&reply), ["body"]);

    // capture and reverse take no body, or `null`
    let held = app
        .post_json(&ticketing, "/v1/authorizations", None, &{
            let mut b = authorization("TCK-held");
            b["customer_id"] = json!(C1);
            b["kind"] = json!("service_purchase");
            b["service_code"] = json!("training");
            b["preferred_funding"] = json!("euros");
            b
        })
        .await;
    assert_eq!(held.status, 201, "{}", held.text);
    assert_eq!(held.body["status"], "open", "{}", held.text);
    let id = held.body["id"].as_str().unwrap();
    let captured = app
        .post_json(
            &ticketing,
            &format!("/v1/authorizations/{id}/capture"),
            None,
            &Value::Null,
        )
        .await;
    assert_eq!(captured.status, 200, "{}", captured.text);
    assert_eq!(captured.body["status"], "captured");
    let posted = app
        .post_json(
            &admin,
            "/v1/ledger/transactions",
            Some("fee"),
            &adjustment(),
        )
        .await;
    assert_eq!(posted.status, 201, "{}", posted.text);
    let reversal = app
        .post_json(
            &admin,
            &format!(
                "/v1/ledger/transactions/{}/reverse",
                posted.body["id"].as_str().unwrap()
            ),
            None,
            &Value::Null,
        )
        .await;
    assert_eq!(reversal.status, 201, "{}", reversal.text);
    assert!(
        reversal.body["description"]
            .as_str()
            .is_some_and(|d| d.starts_with("Reversal of")),
        "{}",
        reversal.text
    );
    // but not another JSON value
    let reply = app
        .post_json(
            &admin,
            &format!("/v1/ledger/transactions/{}/reverse", Uuid::now_v7()),
            None,
            &json!([]),
        )
        .await;
    assert_eq!(fields(&reply), ["body"]);
}

/// Item 21: every missing field is named at once by its path, with the other errors of the
/// body; the README's customer is accepted as it is written.
#[actix_web::test]
async fn every_missing_field_is_named_by_its_path() {
    let (app, _conn) = seeded().await;
    let admin = app.admin().await;
    let reply = app
        .post_json(
            &admin,
            "/v1/customers",
            None,
            &json!({"legal_name": "Atelier Dupont SARL", "siren": "732829320",
                    "address": {"street": "Rue de la Paix", "town": "Paris", "country": "FR"}}),
        )
        .await;
    assert_eq!(fields(&reply), ["billing_email", "address.postcode"]);
    assert_eq!(message(&reply, "address.postcode"), "required");
    assert_eq!(reply.body["detail"], "2 fields are invalid");

    let reply = app
        .post_json(&admin, "/v1/customers", None, &json!({}))
        .await;
    assert_eq!(fields(&reply), ["legal_name", "billing_email", "address"]);

    let reply = app
        .post_json(
            &admin,
            "/v1/ledger/transactions",
            Some("k"),
            &json!({"postings": [{"account_id": SUSPENSE}, {"side": "credit", "amount": 1}]}),
        )
        .await;
    assert_eq!(
        fields(&reply),
        [
            "description",
            "postings[0].side",
            "postings[0].amount",
            "postings[1].account_id",
            "postings[1].amount"
        ]
    );

    let reply = app
        .post_json(
            &app.key(Role::Ticketing, None).await,
            "/v1/authorizations",
            None,
            &json!({"customer_id": C1, "requester": {}}),
        )
        .await;
    assert_eq!(
        fields(&reply),
        [
            "request_ref",
            "kind",
            "classification",
            "priority",
            "occurred_at",
            "declared_at",
            "requester.certified"
        ]
    );
    for (path, body) in [
        ("/v1/subscriptions", json!({})),
        ("/v1/offers", json!({"code": "x1"})),
        (&format!("/v1/customers/{C1}/ticket-purchases"), json!({})),
        (&format!("/v1/customers/{C1}/credit-purchases"), json!({})),
    ] {
        let reply = app.post_json(&admin, path, None, &body).await;
        let named = fields(&reply);
        assert!(
            !named.is_empty() && named.iter().all(|f| f != "body"),
            "{path}: {named:?}"
        );
    }

    // the customer of the README, as it is written there
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README");
    let start = readme
        .find("localhost:8080/v1/customers -d '")
        .expect("a customer example")
        + "localhost:8080/v1/customers -d '".len();
    let end = start + readme[start..].find('\'').expect("its end");
    let example: Value = serde_json::from_str(&readme[start..end]).expect("JSON");
    let created = app.post_json(&admin, "/v1/customers", None, &example).await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.body["siren"], "732829320");
}
