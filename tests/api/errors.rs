//! Bad input answers a problem document naming the field, never a 500, and writes nothing.

use actix_web::test::TestRequest;
use serde_json::{json, Value};

use crate::helpers::TestApp;

const SUSPENSE: &str = "00000000-0000-4000-8000-000000000471";
const BANK: &str = "00000000-0000-4000-8000-000000000512";

fn adjustment(debit: &str, credit: &str) -> Value {
    json!({
        "description": "test",
        "postings": [
            {"account_id": SUSPENSE, "side": "debit", "amount": debit},
            {"account_id": BANK, "side": "credit", "amount": credit}
        ]
    })
}

async fn assert_nothing_written(app: &TestApp, key: &str) {
    let report = app.get(key, "/v1/ledger/verify").await;
    assert_eq!(report.status, 200);
    assert_eq!(
        report.body["transactions_checked"], 0,
        "a refused request wrote something"
    );
}

#[actix_web::test]
async fn malformed_json_is_400() {
    let app = TestApp::spawn().await;
    let key = app.admin().await;
    let req = TestRequest::post()
        .uri("/v1/ledger/transactions")
        .insert_header(("Authorization", format!("Bearer {key}")))
        .insert_header(("Content-Type", "application/json"))
        .insert_header(("Idempotency-Key", "k"))
        .set_payload("{\"description\": ");
    app.send(req).await.problem(400, "malformed_json");
    // a second value after the first is refused, not ignored
    let body = adjustment("1.00", "1.00");
    let req = TestRequest::post()
        .uri("/v1/ledger/transactions")
        .insert_header(("Authorization", format!("Bearer {key}")))
        .insert_header(("Content-Type", "application/json"))
        .insert_header(("Idempotency-Key", "k"))
        .set_payload(format!("{body}{body}"));
    let problem = app.send(req).await.problem(400, "malformed_json").clone();
    assert!(problem["detail"]
        .as_str()
        .unwrap()
        .contains("trailing characters"));
    assert_nothing_written(&app, &key).await;
}

#[actix_web::test]
async fn unknown_fields_and_wrong_types_name_the_field() {
    let app = TestApp::spawn().await;
    let key = app.admin().await;
    let mut body = adjustment("1.00", "1.00");
    body["postings"][1]["colour"] = json!("red");
    let reply = app
        .post_json(&key, "/v1/ledger/transactions", Some("k1"), &body)
        .await;
    let problem = reply.problem(422, "invalid_request");
    assert_eq!(problem["errors"][0]["field"], "postings[1].colour");
    assert!(problem["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("unknown field `colour`"));

    let mut body = adjustment("1.00", "1.00");
    body["postings"][0]["amount"] = json!(1.0);
    let reply = app
        .post_json(&key, "/v1/ledger/transactions", Some("k2"), &body)
        .await;
    assert_eq!(
        reply.problem(422, "invalid_request")["errors"][0]["field"],
        "postings[0].amount"
    );

    let mut body = adjustment("1.00", "1.00");
    body["postings"][0]["side"] = json!("sideways");
    let reply = app
        .post_json(&key, "/v1/ledger/transactions", Some("k3"), &body)
        .await;
    assert_eq!(
        reply.problem(422, "invalid_request")["errors"][0]["field"],
        "postings[0].side"
    );

    let mut body = adjustment("1.00", "1.00");
    body["description"] = json!("nul \u{0}");
    let reply = app
        .post_json(&key, "/v1/ledger/transactions", Some("nul"), &body)
        .await;
    assert!(reply.problem(422, "invalid_request")["detail"]
        .as_str()
        .unwrap()
        .contains("NUL"));
    let reply = app
        .post_json(
            &key,
            "/v1/ledger/transactions",
            Some("k4"),
            &json!("just a string"),
        )
        .await;
    assert_eq!(
        reply.problem(422, "invalid_request")["errors"][0]["field"],
        "body"
    );
    assert_nothing_written(&app, &key).await;
}

#[actix_web::test]
async fn amounts_beyond_scale_or_not_positive_are_refused() {
    let app = TestApp::spawn().await;
    let key = app.admin().await;
    for (amount, message) in [
        ("1.001", "EUR allows at most 2 decimal(s)"),
        ("0", "must be greater than zero"),
        ("0.00", "must be greater than zero"),
        ("-5.00", "must be greater than zero"),
    ] {
        let reply = app
            .post_json(
                &key,
                "/v1/ledger/transactions",
                Some(amount),
                &adjustment(amount, amount),
            )
            .await;
        let problem = reply.problem(422, "invalid_request");
        assert_eq!(
            problem["errors"][0]["field"], "postings[0].amount",
            "{amount}"
        );
        assert_eq!(problem["errors"][0]["message"], message, "{amount}");
    }
    let reply = app
        .post_json(
            &key,
            "/v1/ledger/transactions",
            Some("exp"),
            &adjustment("1e3", "1e3"),
        )
        .await;
    assert_eq!(
        reply.problem(422, "invalid_request")["errors"][0]["field"],
        "postings[0].amount"
    );
    assert_nothing_written(&app, &key).await;
}

#[actix_web::test]
async fn unknown_accounts_and_unbalanced_transactions_are_refused() {
    let app = TestApp::spawn().await;
    let key = app.admin().await;
    let mut body = adjustment("1.00", "1.00");
    body["postings"][1]["account_id"] = json!("0193e0a0-0000-7000-8000-000000000001");
    let reply = app
        .post_json(&key, "/v1/ledger/transactions", Some("u"), &body)
        .await;
    assert_eq!(
        reply.problem(422, "unknown_account")["errors"][0]["field"],
        "postings[1].account_id"
    );

    let reply = app
        .post_json(
            &key,
            "/v1/ledger/transactions",
            Some("b"),
            &adjustment("1.00", "0.99"),
        )
        .await;
    let problem = reply.problem(422, "unbalanced_transaction");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("differ by 0.01"),
        "{}",
        reply.text
    );

    let mut one = adjustment("1.00", "1.00");
    one["postings"].as_array_mut().unwrap().pop();
    app.post_json(&key, "/v1/ledger/transactions", Some("one"), &one)
        .await
        .problem(422, "unbalanced_transaction");
    assert_nothing_written(&app, &key).await;
}

#[actix_web::test]
async fn idempotency_key_is_required_and_bound_to_its_body() {
    let app = TestApp::spawn().await;
    let key = app.admin().await;
    app.post_json(
        &key,
        "/v1/ledger/transactions",
        None,
        &adjustment("5.00", "5.00"),
    )
    .await
    .problem(400, "missing_idempotency_key");
    let first = app
        .post_json(
            &key,
            "/v1/ledger/transactions",
            Some("same"),
            &adjustment("5.00", "5.00"),
        )
        .await;
    assert_eq!(first.status, 201, "{}", first.text);
    let replay = app
        .post_json(
            &key,
            "/v1/ledger/transactions",
            Some("same"),
            &adjustment("5.00", "5.00"),
        )
        .await;
    assert_eq!(replay.status, 200);
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    assert_eq!(replay.body["id"], first.body["id"]);
    app.post_json(
        &key,
        "/v1/ledger/transactions",
        Some("same"),
        &adjustment("6.00", "6.00"),
    )
    .await
    .problem(409, "idempotency_conflict");
    let report = app.get(&key, "/v1/ledger/verify").await;
    assert_eq!(report.body["transactions_checked"], 1);
}

#[actix_web::test]
async fn oversized_and_non_json_bodies_are_refused() {
    let app = TestApp::spawn().await;
    let key = app.admin().await;
    let mut body = adjustment("1.00", "1.00");
    body["description"] = json!("x".repeat(70 * 1024));
    app.post_json(&key, "/v1/ledger/transactions", Some("big"), &body)
        .await
        .problem(413, "payload_too_large");
    let req = TestRequest::post()
        .uri("/v1/ledger/transactions")
        .insert_header(("Authorization", format!("Bearer {key}")))
        .insert_header(("Content-Type", "text/plain"))
        .insert_header(("Idempotency-Key", "k"))
        .set_payload(adjustment("1.00", "1.00").to_string());
    app.send(req).await.problem(415, "unsupported_media_type");
    assert_nothing_written(&app, &key).await;
}

#[actix_web::test]
async fn bad_cursors_limits_and_parameters_are_400() {
    let app = TestApp::spawn().await;
    let key = app.admin().await;
    let reply = app
        .get(&key, "/v1/ledger/accounts?cursor=not-a-cursor")
        .await;
    assert_eq!(
        reply.problem(400, "invalid_cursor")["errors"][0]["field"],
        "cursor"
    );
    // a cursor of another list is refused too
    let postings_cursor = grandlivre::http::encode_cursor("postings", "3");
    app.get(
        &key,
        &format!("/v1/ledger/accounts?cursor={postings_cursor}"),
    )
    .await
    .problem(400, "invalid_cursor");
    app.get(
        &key,
        &format!("/v1/ledger/accounts/{BANK}/postings?cursor=%%%"),
    )
    .await
    .problem(400, "invalid_cursor");
    let reply = app.get(&key, "/v1/ledger/accounts?limit=500").await;
    assert_eq!(
        reply.problem(400, "invalid_parameter")["errors"][0]["field"],
        "limit"
    );
    app.get(&key, "/v1/ledger/accounts?limit=abc")
        .await
        .problem(400, "invalid_parameter");
    let reply = app.get(&key, "/v1/ledger/accounts?customer=1").await;
    assert_eq!(
        reply.problem(400, "invalid_parameter")["errors"][0]["field"],
        "customer"
    );
    app.get(&key, "/v1/ledger/accounts/not-a-uuid")
        .await
        .problem(400, "invalid_parameter");
    app.get(
        &key,
        "/v1/ledger/accounts/0193e0a0-0000-7000-8000-000000000001",
    )
    .await
    .problem(404, "not_found");
    app.get(&key, "/v1/nothing-here")
        .await
        .problem(404, "not_found");
}

/// A handler that panics is answered with a 500 problem naming the request, through the
/// service's own middleware; the connection is not dropped.
#[actix_web::test]
async fn a_panicking_handler_gets_a_problem_not_a_dropped_connection() {
    use actix_web::body::MessageBody;
    use actix_web::{middleware::from_fn, web, App};
    let app = actix_web::test::init_service(
        App::new()
            .route(
                "/boom",
                web::get().to(|| async {
                    panic!("a bug");
                    #[allow(unreachable_code)]
                    ""
                }),
            )
            .wrap(from_fn(grandlivre::http::observe)),
    )
    .await;
    // as the server does: an error a middleware returns is answered by its response
    let boom = TestRequest::get().uri("/boom").to_request();
    let res = match actix_web::test::try_call_service(&app, boom).await {
        Ok(res) => res.into_parts().1.map_into_boxed_body(),
        Err(e) => e.error_response(),
    };
    assert_eq!(res.status(), 500);
    assert_eq!(
        res.headers().get("content-type").unwrap(),
        "application/problem+json"
    );
    let id = res.headers().get("x-request-id").cloned().unwrap();
    let Ok(bytes) = actix_web::body::to_bytes(res.into_body().boxed()).await else {
        panic!("the body could not be read");
    };
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(body["type"], "urn:grandlivre:problem:internal");
    assert_eq!(body["request_id"].as_str(), id.to_str().ok());
}

/// A control character encoded in a path segment or the query is a 400 naming where it
/// is (a NUL once reached PostgreSQL and answered 500), with any key.
#[actix_web::test]
async fn control_characters_in_the_uri_are_named() {
    let (app, _conn) = crate::helpers::seeded().await;
    let customer = app
        .key(
            grandlivre::auth::Role::Customer,
            Some(grandlivre::demo::DEMO_CUSTOMER_1),
        )
        .await;
    for (uri, part) in [
        ("/v1/offers/%00", "path"),
        ("/v1/offers/tic%00ket", "path"),
        ("/v1/offers/ticket%1b/prices", "path"),
        ("/v1/offers?cursor=%00", "query"),
    ] {
        let reply = app.get(&customer, uri).await;
        let problem = reply.problem(400, "invalid_parameter");
        assert_eq!(problem["errors"][0]["field"], part, "{uri}");
    }
    // text with ordinary escapes still reaches its handler
    app.get(&customer, "/v1/offers/no%20such%20offer")
        .await
        .problem(404, "not_found");
}

/// Amounts and counts beyond what their columns hold are a 422 naming the field, before
/// the database (they answered 500 "numeric field overflow").
#[actix_web::test]
async fn amounts_beyond_their_columns_are_named() {
    let (app, mut conn) = crate::helpers::seeded().await;
    let admin = app.admin().await;
    let huge = "10000000000";
    let price = json!({"effective_from": "2020-01-01", "unit_price": huge});
    let problem = app
        .post_json(&admin, "/v1/offers/ticket/prices", None, &price)
        .await
        .problem(422, "invalid_request")
        .clone();
    assert_eq!(problem["errors"][0]["field"], "unit_price");
    let mut offer = serde_json::to_value(
        grandlivre::catalog::store::get(&mut conn, "service_plus_pack")
            .await
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    offer["code"] = json!("service_plus_huge");
    offer["entitlements"]["credits_per_term"] = json!(huge);
    let problem = app
        .post_json(&admin, "/v1/offers", None, &offer)
        .await
        .problem(422, "invalid_request")
        .clone();
    assert_eq!(
        problem["errors"][0]["field"],
        "entitlements.credits_per_term"
    );
    let customer = app
        .key(
            grandlivre::auth::Role::Customer,
            Some(grandlivre::demo::DEMO_CUSTOMER_1),
        )
        .await;
    let path = format!(
        "/v1/customers/{}/credit-purchases",
        grandlivre::demo::DEMO_CUSTOMER_1
    );
    let problem = app
        .post_json(&customer, &path, None, &json!({"credits": huge}))
        .await
        .problem(422, "invalid_request")
        .clone();
    assert_eq!(problem["errors"][0]["field"], "credits");
    assert_nothing_written(&app, &admin).await;
}

/// The `Bearer` scheme is case-insensitive (RFC 9110); another scheme is a 401.
#[actix_web::test]
async fn the_bearer_scheme_is_read_in_any_case() {
    let app = TestApp::spawn().await;
    let key = app.admin().await;
    for (scheme, status) in [("bearer", 200), ("BEARER", 200), ("Basic", 401)] {
        let req = TestRequest::get()
            .uri("/v1/offers")
            .insert_header(("Authorization", format!("{scheme} {key}")));
        assert_eq!(app.send(req).await.status, status, "{scheme}");
    }
}

/// Money and credit amounts in answers carry at least two decimals: `"100.00"`, never
/// `"100"`.
#[actix_web::test]
async fn prices_read_with_their_cents() {
    let (app, _conn) = crate::helpers::seeded().await;
    let key = app.admin().await;
    let prices = app.get(&key, "/v1/offers/ticket/prices").await;
    assert_eq!(prices.body[0]["unit_price"], "100.00", "{}", prices.text);
    let pack = app.get(&key, "/v1/offers/service_plus_pack").await;
    assert_eq!(
        pack.body["entitlements"]["credits_per_term"], "20.00",
        "{}",
        pack.text
    );
}

/// A known path asked with a method it does not take is a 405 listing the ones it does
/// (`Allow`); an unknown path stays a 404.
#[actix_web::test]
async fn a_method_a_path_does_not_take_is_405_with_allow() {
    let app = TestApp::spawn().await;
    let key = app.admin().await;
    let req = TestRequest::delete()
        .uri("/v1/offers")
        .insert_header(("Authorization", format!("Bearer {key}")));
    let reply = app.send(req).await;
    reply.problem(405, "method_not_allowed");
    assert_eq!(reply.header("allow"), Some("GET, POST"));
    let req = TestRequest::put()
        .uri(&format!("/v1/interventions/{}", uuid::Uuid::now_v7()))
        .insert_header(("Authorization", format!("Bearer {key}")));
    let reply = app.send(req).await;
    reply.problem(405, "method_not_allowed");
    assert_eq!(reply.header("allow"), Some("GET"));
    let req = TestRequest::get()
        .uri("/v1/nothing-here")
        .insert_header(("Authorization", format!("Bearer {key}")));
    app.send(req).await.problem(404, "not_found");
}
