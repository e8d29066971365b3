//! Customers over HTTP: identifiers checked and named, structured addresses, scoping.

use grandlivre::auth::Role;
use serde_json::{json, Value};

use crate::helpers::TestApp;

fn dupont() -> Value {
    json!({
        "legal_name": "Atelier Dupont SARL",
        "siret": "73282932000074",
        "vat_number": "FR 44 732829320",
        "billing_email": "compta@atelier-dupont.fr",
        "address": {"street_number": "12", "street": "Rue de la Paix", "postcode": "75002", "town": "Paris", "country": "FR"}
    })
}

#[actix_web::test]
async fn customers_are_created_with_checked_identifiers() {
    let app = TestApp::spawn().await;
    let finance = app.key(Role::Finance, None).await;
    let created = app
        .post_json(&finance, "/v1/customers", Some("c1"), &dupont())
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.body["siren"], "732829320", "derived from the SIRET");
    assert_eq!(created.body["vat_number"], "FR44732829320");
    assert_eq!(created.body["status"], "active");
    let replay = app
        .post_json(&finance, "/v1/customers", Some("c1"), &dupont())
        .await;
    assert_eq!(
        (replay.status, &replay.body["id"]),
        (200, &created.body["id"])
    );
    let mut other = dupont();
    other["legal_name"] = json!("Someone else");
    app.post_json(&finance, "/v1/customers", Some("c1"), &other)
        .await
        .problem(409, "idempotency_conflict");

    let id = created.body["id"].as_str().unwrap();
    let fetched = app.get(&finance, &format!("/v1/customers/{id}")).await;
    assert_eq!(fetched.body["address"]["town"], "Paris");
    let patched = app
        .send(
            actix_web::test::TestRequest::patch()
                .uri(&format!("/v1/customers/{id}"))
                .insert_header(("Authorization", format!("Bearer {finance}")))
                .insert_header(("Content-Type", "application/json"))
                .set_payload(json!({"billing_email": "factures@dupont.fr", "vat_number": "", "status": "suspended"}).to_string()),
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.text);
    assert_eq!(patched.body["billing_email"], "factures@dupont.fr");
    assert!(patched.body["vat_number"].is_null());
    assert_eq!(patched.body["status"], "suspended");
    let listed = app.get(&finance, "/v1/customers?limit=1").await;
    assert_eq!(listed.body["items"][0]["id"], id);
}

#[actix_web::test]
async fn bad_identifiers_are_named() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let cases = [
        ("siret", json!("73282932000075"), "siret"),
        ("siren", json!("732829321"), "siren"),
        ("vat_number", json!("FR45732829320"), "vat_number"),
        ("billing_email", json!("compta at dupont"), "billing_email"),
    ];
    for (field, value, named) in cases {
        let mut body = dupont();
        if field == "siren" {
            body.as_object_mut().unwrap().remove("siret");
        }
        body[field] = value;
        let reply = app.post_json(&admin, "/v1/customers", None, &body).await;
        let fields: Vec<&str> = reply.problem(422, "invalid_request")["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap())
            .collect();
        assert!(fields.contains(&named), "{field}: {}", reply.text);
    }
    let mut unstructured = dupont();
    unstructured["address"] = json!("12 rue de la Paix, 75002 Paris");
    let reply = app
        .post_json(&admin, "/v1/customers", None, &unstructured)
        .await;
    assert_eq!(
        reply.problem(422, "invalid_request")["errors"][0]["field"],
        "address"
    );
    let mut no_town = dupont();
    no_town["address"]["town"] = json!("");
    let reply = app.post_json(&admin, "/v1/customers", None, &no_town).await;
    assert_eq!(
        reply.problem(422, "invalid_request")["errors"][0]["field"],
        "address.town"
    );
    let report = app.get(&admin, "/v1/customers").await;
    assert_eq!(report.body["items"], json!([]), "nothing was written");
}

#[actix_web::test]
async fn customer_keys_see_their_own_customer_only() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let a = app
        .post_json(&admin, "/v1/customers", None, &dupont())
        .await
        .body["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut second = dupont();
    second["siret"] = json!("44306184100047");
    second["vat_number"] = json!("FR64443061841");
    let b = app.post_json(&admin, "/v1/customers", None, &second).await;
    assert_eq!(b.status, 201, "{}", b.text);
    let b = b.body["id"].as_str().unwrap().to_string();
    let key_a = app.key(Role::Customer, Some(a.parse().unwrap())).await;
    assert_eq!(
        app.get(&key_a, &format!("/v1/customers/{a}")).await.status,
        200
    );
    app.get(&key_a, &format!("/v1/customers/{b}"))
        .await
        .problem(404, "not_found");
    app.get(&key_a, "/v1/customers")
        .await
        .problem(403, "forbidden");
    app.post_json(&key_a, "/v1/customers", None, &dupont())
        .await
        .problem(403, "forbidden");
    let ticketing = app.key(Role::Ticketing, None).await;
    app.get(&ticketing, &format!("/v1/customers/{a}"))
        .await
        .problem(403, "forbidden");
    assert_eq!(
        app.get(&ticketing, "/v1/offers").await.status,
        200,
        "every role reads the catalog"
    );
}

/// Two patches of different fields that wait on the same customer both hold: each reads
/// the customer under its row lock, so the second applies its field to the first's result.
#[actix_web::test]
async fn concurrent_patches_of_different_fields_both_hold() {
    let app = TestApp::spawn().await;
    let finance = app.key(Role::Finance, None).await;
    let created = app
        .post_json(&finance, "/v1/customers", None, &dupont())
        .await;
    let id = created.body["id"].as_str().unwrap().to_string();
    let patch = |body: Value| {
        app.send(
            actix_web::test::TestRequest::patch()
                .uri(&format!("/v1/customers/{id}"))
                .insert_header(("Authorization", format!("Bearer {finance}")))
                .insert_header(("Content-Type", "application/json"))
                .set_payload(body.to_string()),
        )
    };
    // another session holds the customer's row while both patches arrive
    let (a, b) = app
        .while_rows_are_held(
            &format!("SELECT 1 FROM customers WHERE id = '{id}'"),
            2,
            async {
                futures_util::join!(
                    patch(json!({"legal_name": "Atelier Dupont SAS"})),
                    patch(json!({"billing_email": "factures@dupont.fr"})),
                )
            },
        )
        .await;
    assert_eq!((a.status, b.status), (200, 200), "{} {}", a.text, b.text);
    let now = app.get(&finance, &format!("/v1/customers/{id}")).await;
    assert_eq!(
        (&now.body["legal_name"], &now.body["billing_email"]),
        (&json!("Atelier Dupont SAS"), &json!("factures@dupont.fr")),
        "{}",
        now.text
    );
}

/// A stored status this build does not know is a read error, never a silent default.
#[actix_web::test]
async fn an_unknown_stored_status_is_an_error() {
    use diesel::IntoSql;
    use diesel_async::RunQueryDsl;
    use grandlivre::customers::CustomerStatus;
    let app = TestApp::spawn().await;
    let mut conn = app.db.conn().await;
    let read = |text: &'static str| diesel::select(text.into_sql::<diesel::sql_types::Text>());
    let known: CustomerStatus = read("closed").get_result(&mut conn).await.unwrap();
    assert_eq!(known, CustomerStatus::Closed);
    let unknown = read("archived")
        .get_result::<CustomerStatus>(&mut conn)
        .await;
    let error = format!("{:?}", unknown.expect_err("an unknown status is refused"));
    assert!(
        error.contains("`archived` is unknown to this build"),
        "{error}"
    );
}

/// A VAT number of any characters is refused with a problem naming it (it once panicked
/// the handler, slicing text by bytes).
#[actix_web::test]
async fn a_vat_number_of_any_characters_is_named() {
    let app = TestApp::spawn().await;
    let finance = app.key(Role::Finance, None).await;
    for vat in ["\u{200b}\u{200b}", "a\u{ffff}b"] {
        let mut body = dupont();
        body["vat_number"] = json!(vat);
        let refused = app.post_json(&finance, "/v1/customers", None, &body).await;
        let problem = refused.problem(422, "invalid_request");
        assert_eq!(problem["errors"][0]["field"], "vat_number");
    }
}

/// A closed customer is read-only: every write on its behalf is a 409 `customer_closed`
/// and every authorization is denied `account_closed`, while every read still answers.
/// Only an admin reopens it, and then it buys again.
#[actix_web::test]
async fn a_closed_customer_is_read_only_until_an_admin_reopens_it() {
    use grandlivre::demo::DEMO_CUSTOMER_1 as C1;
    let (app, mut conn) = crate::helpers::seeded().await;
    let sub = crate::helpers::subscribe(&mut conn, C1, "ip_access_fibre", "2026-01-31", None).await;
    let (admin, finance) = (app.admin().await, app.key(Role::Finance, None).await);
    let ticketing = app.key(Role::Ticketing, None).await;
    let own = app.key(Role::Customer, Some(C1)).await;
    let customer = format!("/v1/customers/{C1}");
    let closed = app
        .patch_json(&finance, &customer, &json!({"status": "closed"}))
        .await;
    assert_eq!(closed.status, 200, "{}", closed.text);
    assert_eq!(closed.body["status"], "closed");

    let tickets = format!("{customer}/ticket-purchases");
    for key in [&own, &finance] {
        app.post_json(key, &tickets, None, &json!({"quantity": 1}))
            .await
            .problem(409, "customer_closed");
    }
    app.post_json(
        &own,
        &format!("{customer}/credit-purchases"),
        None,
        &json!({"credits": "5"}),
    )
    .await
    .problem(409, "customer_closed");
    app.post_json(
        &finance,
        "/v1/subscriptions",
        None,
        &json!({"customer_id": C1, "offer_code": "ip_access_fibre"}),
    )
    .await
    .problem(409, "customer_closed");
    for action in ["cancel", "terminate"] {
        app.post_json(
            &finance,
            &format!("/v1/subscriptions/{sub}/{action}"),
            None,
            &json!({}),
        )
        .await
        .problem(409, "customer_closed");
    }
    app.patch_json(&finance, &customer, &json!({"legal_name": "Renamed SARL"}))
        .await
        .problem(409, "customer_closed");

    let request = crate::helpers::authorization_request(
        C1,
        "closed-1",
        "intervention",
        None,
        "euros",
        grandlivre::clock::Clock::now(&*app.clock),
    );
    let decided = app
        .post_json(
            &ticketing,
            "/v1/authorizations",
            None,
            &serde_json::to_value(&request).unwrap(),
        )
        .await;
    assert_eq!(decided.status, 201, "{}", decided.text);
    assert_eq!(
        (&decided.body["decision"], &decided.body["reason"]),
        (&json!("denied"), &json!("account_closed"))
    );

    // reads still answer, to the customer's own key too
    for path in [
        customer.clone(),
        format!("{customer}/balances"),
        format!("{customer}/credit-lots"),
        format!("{customer}/charges"),
        format!("/v1/subscriptions/{sub}"),
    ] {
        let reply = app.get(&own, &path).await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.text);
    }
    let tickets_now = app.get(&own, &format!("{customer}/balances")).await;
    assert_eq!(tickets_now.body["tickets"]["pending_payment"], 0);

    // only an admin reopens it; then it buys again
    app.patch_json(&finance, &customer, &json!({"status": "active"}))
        .await
        .problem(403, "forbidden");
    let reopened = app
        .patch_json(&admin, &customer, &json!({"status": "active"}))
        .await;
    assert_eq!(
        (reopened.status, &reopened.body["status"]),
        (200, &json!("active")),
        "{}",
        reopened.text
    );
    let bought = app
        .post_json(&own, &tickets, None, &json!({"quantity": 1}))
        .await;
    assert_eq!(bought.status, 201, "{}", bought.text);
}

/// A purchase that waits on a customer being closed sees it closed: the check is made
/// under the customer's row lock, inside the purchase's transaction.
#[actix_web::test]
async fn a_purchase_waiting_on_the_closing_sees_the_customer_closed() {
    use diesel_async::RunQueryDsl;
    use grandlivre::demo::DEMO_CUSTOMER_1 as C1;
    let (app, _conn) = crate::helpers::seeded().await;
    let own = app.key(Role::Customer, Some(C1)).await;
    // the closing: begun, the row locked, not yet committed
    let mut closing = app.db.conn().await;
    for sql in [
        "BEGIN".to_string(),
        format!("UPDATE customers SET status = 'closed' WHERE id = '{C1}'"),
    ] {
        diesel::sql_query(sql).execute(&mut closing).await.unwrap();
    }
    let (path, body) = (
        format!("/v1/customers/{C1}/ticket-purchases"),
        json!({"quantity": 1}),
    );
    let purchase = app.post_json(&own, &path, None, &body);
    let commit = async {
        let mut watcher = app.db.conn().await;
        #[derive(diesel::QueryableByName)]
        struct Waiting {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        for _ in 0..300 {
            let w: Waiting = diesel::sql_query(
                "SELECT count(*) AS n FROM pg_stat_activity \
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
            )
            .get_result(&mut watcher)
            .await
            .unwrap();
            if w.n >= 1 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        diesel::sql_query("COMMIT")
            .execute(&mut closing)
            .await
            .unwrap();
    };
    let (reply, ()) = futures_util::join!(purchase, commit);
    reply.problem(409, "customer_closed");
}
