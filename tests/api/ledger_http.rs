//! The ledger over HTTP: adjustments, balances, postings pages, reversals, verify.

use serde_json::json;

use crate::helpers::TestApp;

const SUSPENSE: &str = "00000000-0000-4000-8000-000000000471";
const BANK: &str = "00000000-0000-4000-8000-000000000512";

fn fee(amount: &str, effective_at: Option<&str>) -> serde_json::Value {
    let mut body = json!({
        "description": "Bank fee",
        "metadata": {"statement": "2026-10"},
        "postings": [
            {"account_id": SUSPENSE, "side": "debit", "amount": amount},
            {"account_id": BANK, "side": "credit", "amount": amount}
        ]
    });
    if let Some(at) = effective_at {
        body["effective_at"] = json!(at);
    }
    body
}

#[actix_web::test]
async fn adjustments_move_balances_and_can_be_read_back() {
    let app = TestApp::spawn().await;
    let key = app.key(grandlivre::auth::Role::Finance, None).await;
    let posted = app
        .post_json(
            &key,
            "/v1/ledger/transactions",
            Some("fee-1"),
            &fee("12.50", None),
        )
        .await;
    assert_eq!(posted.status, 201, "{}", posted.text);
    assert_eq!(posted.body["kind"], "manual_adjustment");
    assert_eq!(posted.body["metadata"]["statement"], "2026-10");
    assert_eq!(posted.body["postings"][0]["amount"], "12.50");
    let id = posted.body["id"].as_str().unwrap().to_string();

    let bank = app.get(&key, &format!("/v1/ledger/accounts/{BANK}")).await;
    assert_eq!(bank.body["balance"]["posted_credits"], "12.50");
    assert_eq!(
        bank.body["balance"]["posted"], "-12.50",
        "bank is debit-normal"
    );
    let suspense = app
        .get(&key, &format!("/v1/ledger/accounts/{SUSPENSE}"))
        .await;
    assert_eq!(suspense.body["balance"]["posted"], "12.50");

    let fetched = app
        .get(&key, &format!("/v1/ledger/transactions/{id}"))
        .await;
    assert_eq!(fetched.status, 200);
    assert_eq!(fetched.body["postings"].as_array().unwrap().len(), 2);
    app.get(
        &key,
        "/v1/ledger/transactions/0193e0a0-0000-7000-8000-000000000009",
    )
    .await
    .problem(404, "not_found");
}

#[actix_web::test]
async fn postings_are_paged_with_cursors() {
    let app = TestApp::spawn().await;
    let key = app.admin().await;
    for i in 1..=5 {
        let reply = app
            .post_json(
                &key,
                "/v1/ledger/transactions",
                Some(&format!("p{i}")),
                &fee(&format!("{i}.00"), None),
            )
            .await;
        assert_eq!(reply.status, 201);
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/ledger/accounts/{BANK}/postings?limit=2&cursor={c}"),
            None => format!("/v1/ledger/accounts/{BANK}/postings?limit=2"),
        };
        let page = app.get(&key, &path).await;
        assert_eq!(page.status, 200, "{}", page.text);
        for p in page.body["items"].as_array().unwrap() {
            seen.push(p["amount"].as_str().unwrap().to_string());
        }
        match page.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, ["1.00", "2.00", "3.00", "4.00", "5.00"]);
    let accounts = app.get(&key, "/v1/ledger/accounts?limit=4").await;
    assert_eq!(accounts.body["items"].as_array().unwrap().len(), 4);
    let next = accounts.body["next_cursor"].as_str().unwrap();
    let rest = app
        .get(&key, &format!("/v1/ledger/accounts?cursor={next}"))
        .await;
    assert_eq!(
        rest.body["items"].as_array().unwrap().len(),
        2,
        "6 platform accounts in all"
    );
    assert!(rest.body["next_cursor"].is_null());
}

#[actix_web::test]
async fn reversal_mirrors_the_transaction_once() {
    let app = TestApp::spawn().await;
    let key = app.admin().await;
    let posted = app
        .post_json(
            &key,
            "/v1/ledger/transactions",
            Some("r"),
            &fee("40.00", None),
        )
        .await;
    let id = posted.body["id"].as_str().unwrap();
    let path = format!("/v1/ledger/transactions/{id}/reverse");
    app.clock.set("2026-12-01T08:00:00Z".parse().unwrap());
    let reversal = app
        .post_json(&key, &path, None, &json!({"description": "entered twice"}))
        .await;
    assert_eq!(reversal.status, 201, "{}", reversal.text);
    assert_eq!(reversal.body["reverses"], id);
    assert_eq!(reversal.body["description"], "entered twice");
    assert_eq!(
        reversal.body["effective_at"], "2026-12-01T08:00:00Z",
        "effective at the injected clock's now"
    );
    assert_eq!(reversal.body["postings"][0]["side"], "credit");
    let again = app
        .send(
            actix_web::test::TestRequest::post()
                .uri(&path)
                .insert_header(("Authorization", format!("Bearer {key}"))),
        )
        .await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(again.body["id"], reversal.body["id"]);
    let original = app
        .get(&key, &format!("/v1/ledger/transactions/{id}"))
        .await;
    assert_eq!(original.body["reversed_by"], reversal.body["id"]);
    let bank = app.get(&key, &format!("/v1/ledger/accounts/{BANK}")).await;
    assert_eq!(bank.body["balance"]["posted"], "0.00");
    assert_eq!(bank.body["balance"]["posted_debits"], "40.00");
    app.post_json(
        &key,
        "/v1/ledger/transactions/0193e0a0-0000-7000-8000-000000000009/reverse",
        None,
        &json!({}),
    )
    .await
    .problem(404, "not_found");
}

#[actix_web::test]
async fn balances_as_of_a_past_instant() {
    let app = TestApp::spawn().await;
    let key = app.admin().await;
    app.post_json(
        &key,
        "/v1/ledger/transactions",
        Some("a"),
        &fee("10.00", Some("2026-01-15T10:00:00Z")),
    )
    .await;
    app.post_json(
        &key,
        "/v1/ledger/transactions",
        Some("b"),
        &fee("5.00", Some("2026-02-15T10:00:00Z")),
    )
    .await;
    let at = |when: &str| format!("/v1/ledger/accounts/{BANK}?as_of={when}");
    let jan = app.get(&key, &at("2026-01-31T23:59:59Z")).await;
    assert_eq!(
        jan.body["balance"]["posted_credits"], "10.00",
        "{}",
        jan.text
    );
    assert_eq!(jan.body["balance"]["as_of"], "2026-01-31T23:59:59Z");
    let before = app.get(&key, &at("2026-01-15T09:59:59Z")).await;
    assert_eq!(before.body["balance"]["posted_credits"], "0.00");
    let exactly = app.get(&key, &at("2026-02-15T10:00:00Z")).await;
    assert_eq!(exactly.body["balance"]["posted_credits"], "15.00");
    app.get(&key, &at("yesterday"))
        .await
        .problem(400, "invalid_parameter");
}

#[actix_web::test]
async fn verify_reports_a_consistent_ledger_and_finds_tampering() {
    let app = TestApp::spawn().await;
    let key = app.admin().await;
    let posted = app
        .post_json(
            &key,
            "/v1/ledger/transactions",
            Some("v"),
            &fee("7.00", None),
        )
        .await;
    let tx = posted.body["id"]
        .as_str()
        .expect("transaction id")
        .to_string();
    let report = app.get(&key, "/v1/ledger/verify").await;
    assert_eq!(report.body["mismatches"], json!([]));
    assert_eq!(report.body["unbalanced_transactions"], json!([]));
    assert_eq!(report.body["transactions_checked"], 1);
    // tamper behind the ledger's back, as only the tables' owner can (the service may
    // not write them): a stored balance, a posting added to the transaction, and a
    // posting of a transaction that does not exist
    let mut conn = app.db.owner_conn().await;
    let ghost = uuid::Uuid::nil();
    for sql in [
        format!(
            "INSERT INTO postings (transaction_id, account_id, side, amount, unit) \
             VALUES ('{ghost}', '{BANK}', 'credit', 0.01, 'EUR')"
        ),
        format!("UPDATE balances SET posted_credits = 8 WHERE account_id = '{BANK}'"),
        format!(
            "INSERT INTO postings (transaction_id, account_id, side, amount, unit) \
             VALUES ('{tx}', '{BANK}', 'debit', 1, 'EUR')"
        ),
    ] {
        diesel_async::RunQueryDsl::execute(diesel::sql_query(sql), &mut conn)
            .await
            .unwrap();
    }
    let report = app.get(&key, "/v1/ledger/verify").await;
    assert_eq!(
        report.body["mismatches"],
        json!([
            {"account_id": BANK, "field": "posted_credits", "stored": "8", "recomputed": "7.01"},
            {"account_id": BANK, "field": "posted_debits", "stored": "0", "recomputed": "1"}
        ])
    );
    let mut unbalanced = vec![tx, ghost.to_string()];
    unbalanced.sort();
    assert_eq!(report.body["unbalanced_transactions"], json!(unbalanced));
}
