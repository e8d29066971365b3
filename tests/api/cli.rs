//! The binary itself: the embedded cluster's life cycle, and its refusal without binaries.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn grandlivre(data_dir: &std::path::Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_grandlivre"));
    cmd.env_remove("DATABASE_URL")
        .env("RUST_LOG", "info")
        .arg("--data-dir")
        .arg(data_dir);
    cmd
}

fn scratch(name: &str) -> PathBuf {
    let target = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target");
    grandlivre::pg_cluster::scratch_dir(
        &target,
        &format!("{name}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]),
    )
}

/// Removes a (stopped) scratch cluster and the lock file beside it.
fn remove_cluster(dir: &std::path::Path) {
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_file(dir.with_extension("lock"));
}

fn http_get(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    stream.read_to_string(&mut out).ok()?;
    Some(out)
}

fn cluster_running(dir: &std::path::Path) -> bool {
    dir.join("postmaster.pid").exists()
}

#[test]
fn without_server_binaries_it_explains_what_to_install() {
    let dir = scratch("pg-nobin");
    let out = grandlivre(&dir)
        .env("GRANDLIVRE_PG_BIN", "/nonexistent")
        .arg("migrate")
        .output()
        .expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("No PostgreSQL server binaries were found"),
        "{stderr}"
    );
    assert!(stderr.contains("apt-get install postgresql"), "{stderr}");
    remove_cluster(&dir);
}

#[test]
fn serve_creates_reuses_and_stops_its_embedded_cluster() {
    let dir = scratch("pg-cli");
    // first use: initdb, start, migrate; a short command stops what it started
    let out = grandlivre(&dir).arg("migrate").output().expect("migrate");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let migrations =
        std::fs::read_dir(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("migrations"))
            .unwrap()
            .count();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("{migrations} migration(s) run; the database is current")
    );
    assert!(dir.join("PG_VERSION").exists());
    assert!(
        !cluster_running(&dir),
        "migrate left the cluster it started running"
    );

    // serve reuses the cluster, answers /readyz, and stops it on SIGTERM
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = grandlivre(&dir)
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--log-format",
            "json",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("serve");
    let deadline = Instant::now() + Duration::from_secs(60);
    let ready = loop {
        if let Some(reply) = http_get(port, "/readyz") {
            break reply;
        }
        assert!(Instant::now() < deadline, "serve did not answer");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    assert!(
        ready.to_ascii_lowercase().contains("x-request-id:"),
        "{ready}"
    );
    assert!(cluster_running(&dir));
    let (exit, logs) = stop(server);
    assert!(exit, "{logs}");
    assert!(
        !cluster_running(&dir),
        "the cluster outlived the server: {logs}"
    );
    let role = logs
        .lines()
        .find(|l| l.contains("the service's database role"))
        .expect(&logs);
    assert!(
        role.contains(grandlivre::db::SERVICE_ROLE),
        "the service runs as its own role: {role}"
    );
    let first = logs
        .lines()
        .find(|l| l.contains("grandlivre listening"))
        .expect(&logs);
    let json: serde_json::Value =
        serde_json::from_str(first).expect("--log-format json writes JSON lines");
    assert_eq!(json["level"], "INFO");
    remove_cluster(&dir);
}

/// `serve` on `url` (with the owner's URL for migrations) until /readyz answers or it exits;
/// returns the exit status (None: it was serving, and was stopped) and its logs.
fn serve_on(url: &str, owner_url: &str, extra: &[&str]) -> (Option<bool>, String) {
    let (exited, logs, _) = serve_and_get(url, owner_url, extra, &[], &[]);
    (exited, logs)
}

/// [`serve_on`] with `env` set, which once ready also answers a GET of each of `paths`
/// (the raw responses, headers included, in order).
fn serve_and_get(
    url: &str,
    owner_url: &str,
    extra: &[&str],
    env: &[(&str, &str)],
    paths: &[&str],
) -> (Option<bool>, String, Vec<String>) {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = Command::new(env!("CARGO_BIN_EXE_grandlivre"))
        .env("DATABASE_URL", url)
        .env("GRANDLIVRE_OWNER_DATABASE_URL", owner_url)
        .env("RUST_LOG", "info")
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(extra)
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("serve");
    let deadline = Instant::now() + Duration::from_secs(60);
    let exited = loop {
        if let Some(status) = server.try_wait().expect("wait") {
            break Some(status.success());
        }
        if http_get(port, "/readyz").is_some_and(|r| r.starts_with("HTTP/1.1 200")) {
            let replies = paths
                .iter()
                .map(|p| http_get(port, p).unwrap_or_default())
                .collect();
            return (None, stop(server).1, replies);
        }
        assert!(
            Instant::now() < deadline,
            "serve neither answered nor exited"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    (exited, logs(server), Vec::new())
}

/// Stops a running server with SIGTERM: whether it exited cleanly, and its logs.
fn stop(mut server: std::process::Child) -> (bool, String) {
    let status = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = server.wait().expect("wait");
    (exit.success(), logs(server))
}

/// What an exited server wrote on stderr.
fn logs(mut server: std::process::Child) -> String {
    let mut logs = String::new();
    server
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    logs
}

#[actix_web::test]
async fn serve_refuses_a_superuser_connection_unless_allowed() {
    let db = crate::helpers::TestDb::new().await;
    let superuser = db.superuser_url();
    let (exited, logs) = serve_on(&superuser, &db.owner_url, &[]);
    assert_eq!(exited, Some(false), "{logs}");
    assert!(
        logs.contains("a PostgreSQL superuser") && logs.contains("--allow-superuser"),
        "{logs}"
    );
    let (exited, logs) = serve_on(&superuser, &db.owner_url, &["--allow-superuser"]);
    assert_eq!(exited, None, "serves when allowed: {logs}");
    assert!(
        logs.contains("WARN") && logs.contains("--allow-superuser"),
        "{logs}"
    );
    // its own role: no refusal, no warning
    let (exited, logs) = serve_on(&db.url, &db.owner_url, &[]);
    assert_eq!(exited, None, "{logs}");
    assert!(!logs.contains("WARN"), "{logs}");
}

/// `apikey create --role customer --customer <id>` refuses a customer that does not exist;
/// `jobs run` with an unknown name lists every job, `intervention-release` included.
#[actix_web::test]
async fn the_cli_refuses_unknown_customers_and_names_every_job() {
    let db = crate::helpers::TestDb::new().await;
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_grandlivre"))
            .env("DATABASE_URL", &db.url)
            .env("GRANDLIVRE_OWNER_DATABASE_URL", &db.owner_url)
            .args(args)
            .output()
            .expect("run grandlivre");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let unknown = uuid::Uuid::now_v7().to_string();
    let (ok, stderr) = run(&[
        "apikey",
        "create",
        "--role",
        "customer",
        "--customer",
        &unknown,
    ]);
    assert!(
        !ok && stderr.contains(&format!("customer {unknown} does not exist")),
        "{stderr}"
    );
    let (ok, stderr) = run(&["jobs", "run", "no-such-job"]);
    assert!(!ok && stderr.contains("intervention-release"), "{stderr}");
}

/// The embedded cluster logs errors without their DETAIL: a constraint violation's
/// "Failing row contains (…)" would put customer data in the server log.
#[actix_web::test]
async fn the_embedded_cluster_logs_no_row_data() {
    use diesel_async::RunQueryDsl;
    if std::env::var("TEST_DATABASE_URL").is_ok() {
        eprintln!("TEST_DATABASE_URL is set: its server's logging is not ours to check");
        return;
    }
    let db = crate::helpers::TestDb::new().await;
    let mut conn = db.conn().await;
    let marker = format!("marker-{}", uuid::Uuid::now_v7());
    let refused = diesel::sql_query(format!(
        "INSERT INTO customers (id, legal_name, siren, billing_email, street, postcode, town, \
         country, status, created_at, updated_at) VALUES ('{}', '{marker}', '900000019', \
         'a@b.fr', 'Rue', '75001', 'Paris', 'FR', 'weird', now(), now())",
        uuid::Uuid::now_v7()
    ))
    .execute(&mut conn)
    .await;
    assert!(refused.is_err(), "the CHECK refuses the row");
    let dir = grandlivre::pg_cluster::scratch_dir(
        &std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"),
        "pg-test",
    );
    let log = std::fs::read_to_string(dir.join("server.log")).expect("the cluster's log");
    assert!(
        log.contains("violates check constraint"),
        "the error is logged"
    );
    assert!(!log.contains(&marker), "the row's data is not");
}

/// `serve --test-clock` (here through its environment variables) runs on a test clock that
/// starts where told and stamps every response; without the flag the test clock's
/// endpoints do not exist and no response carries the header. `jobs run` runs for the test
/// clock's time by default; `--test-clock-start` alone is refused.
#[actix_web::test]
async fn the_test_clock_is_a_setting_of_serve_and_jobs_run() {
    let db = crate::helpers::TestDb::new().await;
    let clock = [
        ("GRANDLIVRE_TEST_CLOCK", "true"),
        ("GRANDLIVRE_TEST_CLOCK_START", "2027-01-31T00:00:00+01:00"),
    ];
    let (exited, logs, replies) = serve_and_get(
        &db.url,
        &db.owner_url,
        &[],
        &clock,
        &["/healthz", "/v1/test-clock", "/v1/nowhere"],
    );
    assert_eq!(exited, None, "{logs}");
    assert!(logs.contains("running on a test clock"), "{logs}");
    let lower: Vec<String> = replies.iter().map(|r| r.to_ascii_lowercase()).collect();
    assert!(lower[0].starts_with("http/1.1 200"), "{}", replies[0]);
    assert!(
        lower[1].starts_with("http/1.1 401"),
        "it exists: {}",
        replies[1]
    );
    assert!(lower[2].starts_with("http/1.1 404"), "{}", replies[2]);
    for reply in &lower {
        assert!(
            reply.contains("\r\ntest-clock: 2027-01-30t23:00:00z\r\n"),
            "{reply}"
        );
    }

    let (exited, logs, replies) =
        serve_and_get(&db.url, &db.owner_url, &[], &[], &["/v1/test-clock"]);
    assert_eq!(exited, None, "{logs}");
    let reply = replies[0].to_ascii_lowercase();
    assert!(reply.starts_with("http/1.1 404"), "{reply}");
    assert!(!reply.contains("test-clock:"), "{reply}");

    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_grandlivre"))
            .env("DATABASE_URL", &db.url)
            .env("GRANDLIVRE_OWNER_DATABASE_URL", &db.owner_url)
            .args(args)
            .output()
            .expect("run grandlivre");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, stdout, stderr) = run(&[
        "jobs",
        "run",
        "credit-expiry",
        "--test-clock",
        "--test-clock-start",
        "2030-01-01T00:00:00Z",
    ]);
    assert!(ok, "{stderr}");
    let job: serde_json::Value = serde_json::from_str(&stdout).expect(&stdout);
    assert_eq!(job["as_of"], "2030-01-01T00:00:00Z");
    let (ok, _, stderr) = run(&[
        "jobs",
        "run",
        "credit-expiry",
        "--test-clock-start",
        "2030-01-01T00:00:00Z",
    ]);
    assert!(!ok && stderr.contains("--test-clock"), "{stderr}");
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Spawns `serve` on a free port and waits until /readyz answers 200.
fn serve_ready(mut cmd: Command) -> (std::process::Child, u16) {
    let port = free_port();
    let mut server = cmd
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("serve");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !http_get(port, "/readyz").is_some_and(|r| r.starts_with("HTTP/1.1 200")) {
        if let Some(status) = server.try_wait().expect("wait") {
            panic!("serve exited ({status}): {}", logs(server));
        }
        assert!(Instant::now() < deadline, "serve did not become ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    (server, port)
}

/// The pid of the cluster's postmaster, from its `postmaster.pid`.
fn postmaster_pid(dir: &std::path::Path) -> Option<u32> {
    std::fs::read_to_string(dir.join("postmaster.pid"))
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

/// `grandlivre db status|stop`: what it printed on stdout.
fn db_command(data_dir: &std::path::Path, command: &str) -> String {
    let out = grandlivre(data_dir)
        .args(["db", command])
        .output()
        .expect("db");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Issue 11, item 20: a `kill -9` of the postmaster while the service runs; the service
/// restarts its cluster and is ready again, without being restarted itself.
#[test]
fn serve_restarts_its_cluster_when_the_postmaster_dies() {
    let dir = scratch("pg-watch");
    let (server, port) = serve_ready(grandlivre(&dir));
    let killed = postmaster_pid(&dir).expect("a running postmaster");
    let status = Command::new("kill")
        .args(["-KILL", &killed.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let restarted = postmaster_pid(&dir).is_some_and(|pid| pid != killed);
        if restarted && http_get(port, "/readyz").is_some_and(|r| r.starts_with("HTTP/1.1 200")) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not ready again 30 s after the postmaster died"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (exit, logs) = stop(server);
    assert!(exit, "{logs}");
    assert!(
        logs.contains("postmaster died; restarting it")
            && logs.contains("restarted the embedded PostgreSQL cluster"),
        "each attempt is logged: {logs}"
    );
    assert!(
        !cluster_running(&dir),
        "the restarted cluster outlived the server: {logs}"
    );
    remove_cluster(&dir);
}

/// A `kill -9` of the service cannot stop its cluster; `grandlivre db stop` does.
#[test]
fn db_stop_stops_the_cluster_a_killed_service_left_running() {
    let dir = scratch("pg-left");
    let (mut server, _) = serve_ready(grandlivre(&dir));
    server.kill().expect("SIGKILL");
    server.wait().expect("wait");
    let canonical = dir.canonicalize().unwrap();
    assert_eq!(
        db_command(&dir, "status"),
        format!("{}: running", canonical.display())
    );
    assert_eq!(
        db_command(&dir, "stop"),
        format!("{}: stopped", canonical.display())
    );
    assert!(!cluster_running(&dir));
    assert_eq!(
        db_command(&dir, "status"),
        format!("{}: stopped", canonical.display())
    );
    assert_eq!(
        db_command(&dir, "stop"),
        format!("{}: was not running", canonical.display())
    );
    let nothing = scratch("pg-none");
    assert_eq!(
        db_command(&nothing, "stop"),
        format!("{}: no cluster", nothing.display())
    );
    assert!(!nothing.exists(), "db stop creates nothing");
    remove_cluster(&dir);
}

/// Issue 11, item 23: the README's stop command for the test cluster,
/// `grandlivre --data-dir target/pg-test db stop`, names the cluster the tests use, even
/// when that lives in the temporary directory (`target/pg-test` is then a link to it).
#[actix_web::test]
async fn the_readmes_stop_command_finds_the_test_cluster() {
    if std::env::var("TEST_DATABASE_URL").is_ok() {
        eprintln!("TEST_DATABASE_URL is set: the tests use no cluster of their own");
        return;
    }
    let _db = crate::helpers::TestDb::new().await;
    let target = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target");
    let used = grandlivre::pg_cluster::scratch_dir(&target, "pg-test");
    assert_eq!(
        db_command(&target.join("pg-test"), "status"),
        format!("{}: running", used.canonicalize().unwrap().display())
    );
}

/// Issue 11, item 19: as root, from a checkout the `postgres` user cannot enter (a clone
/// in /root), the README's run command works: the cluster goes to /var/lib/grandlivre,
/// and the log says so.
#[test]
fn as_root_a_private_checkout_gets_its_cluster_under_var_lib() {
    let is_root = std::fs::metadata("/proc/self").is_ok_and(|m| {
        use std::os::unix::fs::MetadataExt;
        m.uid() == 0
    });
    if !is_root {
        eprintln!("not root: the cluster runs as this user, who can enter the checkout");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let private = std::env::temp_dir().join(format!("gl-private-{}", uuid::Uuid::new_v4()));
    let checkout = private.join("clone");
    std::fs::create_dir_all(&checkout).unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_grandlivre"));
    cmd.env_remove("DATABASE_URL")
        .env_remove("GRANDLIVRE_DATA_DIR")
        .env("RUST_LOG", "info")
        .current_dir(&checkout);
    let (server, _) = serve_ready(cmd);
    let (exit, logs) = stop(server);
    assert!(exit, "{logs}");
    let said = logs
        .lines()
        .find(|l| l.contains("the embedded PostgreSQL cluster lives in"))
        .expect(&logs);
    let fallback = said
        .split("lives in ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .map(PathBuf::from)
        .expect(said);
    assert!(
        fallback.starts_with("/var/lib/grandlivre") && said.contains("--data-dir"),
        "{said}"
    );
    assert!(fallback.join("PG_VERSION").exists(), "{logs}");
    assert!(
        !checkout.join("var").exists(),
        "nothing under the checkout: {logs}"
    );
    assert!(!cluster_running(&fallback), "{logs}");
    remove_cluster(&fallback);
    let _ = std::fs::remove_dir_all(private);
}

/// The README's "Try it" walkthrough, as written, against a fresh service: every call
/// succeeds, and pasting it all again creates nothing (creations are replayed).
#[actix_web::test]
async fn the_readmes_walkthrough_runs_and_is_safe_to_paste_again() {
    let db = crate::helpers::TestDb::new().await;
    let binary = || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_grandlivre"));
        cmd.env("DATABASE_URL", &db.url)
            .env("GRANDLIVRE_OWNER_DATABASE_URL", &db.owner_url);
        cmd
    };
    let seeded = binary().arg("seed-demo").output().expect("seed-demo");
    let printed = String::from_utf8_lossy(&seeded.stdout).into_owned();
    let key = |role: &str| {
        printed
            .split_whitespace()
            .find(|w| w.starts_with(&format!("gl_{role}_")))
            .unwrap_or_else(|| panic!("no {role} key in {printed}"))
            .to_string()
    };
    let (server, port) = serve_ready(binary());
    let readme = include_str!("../../README.md");
    let try_it = &readme[readme.find("## Try it").expect("a Try it section")..];
    let start = try_it.find("```sh\n").expect("its commands") + 6;
    let block = &try_it[start..start + try_it[start..].find("```").expect("their end")];
    assert!(block.contains("ADMIN=gl_admin_…") && block.contains("TK=gl_ticketing_…"));
    let script = block
        .replace("cargo run --release -q -- seed-demo", "true")
        .replace("ADMIN=gl_admin_…", &format!("ADMIN={}", key("admin")))
        .replace("TK=gl_ticketing_…", &format!("TK={}", key("ticketing")))
        .replace("localhost:8080", &format!("localhost:{port}"))
        .replace("curl -s ", "curl -s -o /dev/null -w '%{http_code}\\n' ");
    let run = || {
        let out = Command::new("bash")
            .args(["-euc", &script])
            .output()
            .expect("bash");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let first = run();
    let second = run();
    let (_, logs) = stop(server);
    assert!(first.len() >= 10, "{first:?}");
    assert!(
        first.iter().all(|s| s == "200" || s == "201"),
        "{first:?}\n{logs}"
    );
    assert_eq!(first.iter().filter(|s| *s == "201").count(), 4, "{first:?}");
    assert!(
        second.iter().all(|s| s == "200"),
        "the second paste creates nothing: {second:?}"
    );
}
