//! API key management over HTTP and the CLI: a key's secret is shown once, lists never
//! show it, and a revoked key stops working within a second in every process.

use std::process::Command;
use std::time::{Duration, Instant};

use diesel_async::RunQueryDsl;
use grandlivre::auth::Role;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::helpers::{Reply, TestApp};

/// Polls `GET /v1/offers` with `key` on `app` every 20 ms until it answers 401, for at
/// most 2 s: how long that took (`None`: it kept working).
async fn refused_after(app: &TestApp, key: &str) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(2) {
        let reply = app.get(key, "/v1/offers").await;
        match reply.status {
            401 => return Some(start.elapsed()),
            200 => {}
            _ => panic!("unexpected answer: {}", reply.text),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

async fn create(app: &TestApp, admin: &str, body: Value) -> Reply {
    app.post_json(admin, "/v1/api-keys", None, &body).await
}

#[actix_web::test]
async fn keys_are_created_by_admins_and_listed_without_their_secrets() {
    let (app, _conn) = crate::helpers::seeded().await;
    let admin = app.admin().await;
    let created = create(
        &app,
        &admin,
        json!({"role": "finance", "label": " month-end close "}),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let secret = created.body["key"].as_str().unwrap().to_string();
    assert!(secret.starts_with("gl_finance_"), "{secret}");
    assert_eq!(
        (&created.body["role"], &created.body["label"]),
        (&json!("finance"), &json!("month-end close"))
    );
    assert!(created.body["revoked_at"].is_null() && created.body["customer_id"].is_null());
    assert_eq!(app.get(&secret, "/v1/customers").await.status, 200);

    let customer = create(
        &app,
        &admin,
        json!({"role": "customer", "customer_id": grandlivre::demo::DEMO_CUSTOMER_1}),
    )
    .await;
    assert_eq!(customer.status, 201, "{}", customer.text);
    assert_eq!(
        customer.body["customer_id"],
        json!(grandlivre::demo::DEMO_CUSTOMER_1)
    );

    // every key, page by page, and never a secret or its digest
    let digest = hex::encode(Sha256::digest(secret.as_bytes()));
    let mut ids = Vec::new();
    let mut path = "/v1/api-keys?limit=2".to_string();
    loop {
        let page = app.get(&admin, &path).await;
        assert_eq!(page.status, 200, "{}", page.text);
        assert!(!page.text.contains(&secret) && !page.text.contains(&digest));
        assert!(
            !page.text.contains("gl_"),
            "no secret at all: {}",
            page.text
        );
        for item in page.body["items"].as_array().unwrap() {
            let mut fields: Vec<&str> = item
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            fields.sort_unstable();
            assert_eq!(
                fields,
                [
                    "created_at",
                    "customer_id",
                    "id",
                    "label",
                    "revoked_at",
                    "role"
                ]
            );
            ids.push(item["id"].as_str().unwrap().to_string());
        }
        match page.body["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/api-keys?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    // 4 of seed-demo, the admin's, and the two made here, oldest first
    assert_eq!(ids.len(), 7, "{ids:?}");
    assert_eq!(ids[5], created.body["id"].as_str().unwrap());
    assert_eq!(ids[6], customer.body["id"].as_str().unwrap());

    // admin only
    app.get(&secret, "/v1/api-keys")
        .await
        .problem(403, "forbidden");
    app.post_json(&secret, "/v1/api-keys", None, &json!({"role": "admin"}))
        .await
        .problem(403, "forbidden");
}

#[actix_web::test]
async fn key_creation_names_what_is_wrong() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let unknown = uuid::Uuid::now_v7();
    for (body, field) in [
        (json!({"role": "customer"}), "customer_id"),
        (
            json!({"role": "finance", "customer_id": unknown}),
            "customer_id",
        ),
        (
            json!({"role": "customer", "customer_id": unknown}),
            "customer_id",
        ),
        (json!({"role": "finance", "label": " "}), "label"),
        (
            json!({"role": "finance", "label": "x".repeat(201)}),
            "label",
        ),
        (json!({"role": "root"}), "role"),
        (json!({"role": "finance", "key": "mine"}), "key"),
    ] {
        let reply = create(&app, &admin, body.clone()).await;
        let problem = reply.problem(422, "invalid_request");
        assert_eq!(
            problem["errors"][0]["field"], field,
            "{body}: {}",
            reply.text
        );
    }
    let listed = app.get(&admin, "/v1/api-keys").await;
    assert_eq!(
        listed.body["items"].as_array().map(Vec::len),
        Some(1),
        "nothing was created: {}",
        listed.text
    );
}

#[actix_web::test]
async fn a_revoked_key_answers_401_at_once_here_and_within_a_second_elsewhere() {
    let app = TestApp::spawn().await;
    let other = app.sibling().await;
    let admin = app.admin().await;
    let created = create(&app, &admin, json!({"role": "ticketing"})).await;
    let (id, key) = (
        created.body["id"].as_str().unwrap().to_string(),
        created.body["key"].as_str().unwrap().to_string(),
    );
    // both processes have seen the key valid (and cached it)
    assert_eq!(app.get(&key, "/v1/offers").await.status, 200);
    assert_eq!(other.get(&key, "/v1/offers").await.status, 200);

    let revoked = app
        .post_json(
            &admin,
            &format!("/v1/api-keys/{id}/revoke"),
            None,
            &json!({}),
        )
        .await;
    assert_eq!(revoked.status, 200, "{}", revoked.text);
    assert_eq!(revoked.body["id"], id);
    assert!(revoked.body["revoked_at"].is_string(), "{}", revoked.text);
    assert!(revoked.body.get("key").is_none());
    app.get(&key, "/v1/offers")
        .await
        .problem(401, "unauthorized");
    let elsewhere = refused_after(&other, &key).await;
    assert!(
        elsewhere.is_some(),
        "the other process still takes the key 2 s after its revocation"
    );

    // revoking again changes nothing; an unknown key is a 404
    let again = app
        .post_json(
            &admin,
            &format!("/v1/api-keys/{id}/revoke"),
            None,
            &json!({}),
        )
        .await;
    assert_eq!(
        (again.status, &again.body["revoked_at"]),
        (200, &revoked.body["revoked_at"])
    );
    let unknown = uuid::Uuid::now_v7();
    app.post_json(
        &admin,
        &format!("/v1/api-keys/{unknown}/revoke"),
        None,
        &json!({}),
    )
    .await
    .problem(404, "not_found");
    let listed = app.get(&admin, "/v1/api-keys").await;
    let item = listed.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == id)
        .cloned()
        .unwrap();
    assert_eq!(item["revoked_at"], revoked.body["revoked_at"]);
}

#[actix_web::test]
async fn a_key_revoked_in_the_database_stops_working_within_a_second() {
    let app = TestApp::spawn().await;
    let key = app.key(Role::Finance, None).await;
    assert_eq!(app.get(&key, "/v1/offers").await.status, 200);
    let mut conn = app.db.conn().await;
    diesel::sql_query("UPDATE api_keys SET revoked_at = now()")
        .execute(&mut conn)
        .await
        .unwrap();
    assert!(
        refused_after(&app, &key).await.is_some(),
        "a key revoked by SQL still works 2 s later"
    );
}

/// Runs the binary on the app's database; success, stdout and stderr.
fn cli(app: &TestApp, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_grandlivre"))
        .env("DATABASE_URL", &app.db.url)
        .env("GRANDLIVRE_OWNER_DATABASE_URL", &app.db.owner_url)
        .env("RUST_LOG", "warn")
        .args(args)
        .output()
        .expect("run grandlivre");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[actix_web::test]
async fn the_cli_lists_and_revokes_keys() {
    let app = TestApp::spawn().await;
    let (ok, stdout, stderr) = cli(
        &app,
        &[
            "apikey", "create", "--role", "finance", "--label", "cli-made",
        ],
    );
    assert!(ok, "{stderr}");
    let secret = stdout.trim().to_string();
    assert!(secret.starts_with("gl_finance_"), "{stdout}");
    assert_eq!(app.get(&secret, "/v1/offers").await.status, 200);

    let (ok, listed, stderr) = cli(&app, &["apikey", "list"]);
    assert!(ok, "{stderr}");
    assert!(
        !listed.contains(&secret) && !listed.contains("gl_"),
        "{listed}"
    );
    let line = listed
        .lines()
        .find(|l| l.contains("cli-made"))
        .unwrap_or_else(|| panic!("the key is listed: {listed}"));
    let id = line.split_whitespace().next().unwrap().to_string();
    assert!(line.contains("finance"), "{line}");
    assert_eq!(
        line.split_whitespace().nth(4),
        Some("-"),
        "not revoked: {line}"
    );

    let (ok, revoked, stderr) = cli(&app, &["apikey", "revoke", &id]);
    assert!(ok, "{stderr}");
    let revoked_at = revoked.split_whitespace().nth(4).unwrap().to_string();
    assert_ne!(revoked_at, "-", "{revoked}");
    assert!(
        refused_after(&app, &secret).await.is_some(),
        "a key revoked by the CLI still works 2 s later"
    );
    let (ok, again, stderr) = cli(&app, &["apikey", "revoke", &id]);
    assert!(ok, "{stderr}");
    assert_eq!(again, revoked, "revoking again changes nothing");
    let (_, listed, _) = cli(&app, &["apikey", "list"]);
    assert!(
        listed.contains(&format!("{revoked_at}  cli-made")),
        "{listed}"
    );

    let unknown = uuid::Uuid::now_v7().to_string();
    let (ok, _, stderr) = cli(&app, &["apikey", "revoke", &unknown]);
    assert!(
        !ok && stderr.contains(&format!("key {unknown} does not exist")),
        "{stderr}"
    );
}
