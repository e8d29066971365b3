//! The command line: `serve`, `migrate`, `openapi`, `seed-demo`, `jobs run`, `apikey
//! create|list|revoke`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use uuid::Uuid;

use crate::auth::{self, Role};
use crate::clock::{Clock, ServiceClock};
use crate::db::{self, Database};
use crate::telemetry::{self, LogFormat};

#[derive(Debug, Parser)]
#[command(
    name = "grandlivre",
    version,
    about = "Billing and credits ledger service"
)]
pub struct Cli {
    /// PostgreSQL to use, as the service's role (one that owns nothing). Unset: the
    /// embedded cluster under --data-dir.
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    pub database_url: Option<String>,
    /// With DATABASE_URL: the schema owner's URL, used to run the migrations (default:
    /// DATABASE_URL itself).
    #[arg(
        long,
        env = "GRANDLIVRE_OWNER_DATABASE_URL",
        global = true,
        hide_env_values = true
    )]
    pub owner_database_url: Option<String>,
    /// Let the service connect as a PostgreSQL superuser (refused otherwise: a superuser
    /// bypasses the ledger's privileges). Logs a warning.
    #[arg(long, env = "GRANDLIVRE_ALLOW_SUPERUSER", global = true)]
    pub allow_superuser: bool,
    /// Where the embedded cluster lives when DATABASE_URL is unset [default: var/postgres,
    /// or, as root in a directory the `postgres` user cannot enter, a directory of
    /// /var/lib/grandlivre named after it].
    #[arg(long, env = "GRANDLIVRE_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// Log lines as text or JSON.
    #[arg(
        long,
        env = "GRANDLIVRE_LOG_FORMAT",
        value_enum,
        default_value = "text",
        global = true
    )]
    pub log_format: LogFormat,
    /// Run on a test clock instead of the system's (`serve`, `jobs run`, `seed-demo`): it
    /// stands still until an admin moves it forward with `PUT /v1/test-clock`, and `serve`
    /// puts its time in a `Test-Clock` header on every response. Never in production.
    #[arg(long, env = "GRANDLIVRE_TEST_CLOCK", global = true)]
    pub test_clock: bool,
    /// Where the test clock starts (RFC 3339) [default: the system time].
    #[arg(
        long,
        env = "GRANDLIVRE_TEST_CLOCK_START",
        global = true,
        requires = "test_clock",
        value_parser = crate::input::parse_instant
    )]
    pub test_clock_start: Option<chrono::DateTime<chrono::Utc>>,
    /// The seller every invoice names, as JSON: {"legal_name", "siren", "vat_number",
    /// "address": {"street_number", "street", "postcode", "town", "country"}} [default: the
    /// demo seller, Grandlivre Services SAS].
    #[arg(long, env = "GRANDLIVRE_SELLER", global = true)]
    pub seller: Option<String>,
    /// The annual late-payment penalty rate invoices state, as a fraction [default: 0.1215,
    /// the ECB refinancing rate plus 10 points].
    #[arg(long, env = "GRANDLIVRE_LATE_PAYMENT_RATE", global = true)]
    pub late_payment_rate: Option<rust_decimal::Decimal>,
    /// The SEPA creditor collections name, as JSON: {"name", "address": {...as --seller},
    /// "iban", "bic", "creditor_id" (the French ICS), "prenotification_days" (optional, 1 to
    /// 14, default 14)} [default: the demo creditor].
    #[arg(long, env = "GRANDLIVRE_CREDITOR", global = true)]
    pub creditor: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP service (migrates first).
    Serve {
        /// Address to listen on.
        #[arg(long, env = "GRANDLIVRE_LISTEN", default_value = "127.0.0.1:8080")]
        listen: String,
        /// Worker threads (default: one per core).
        #[arg(long, env = "GRANDLIVRE_WORKERS")]
        workers: Option<usize>,
        /// Database connections in the pool.
        #[arg(long, env = "GRANDLIVRE_POOL_SIZE", default_value_t = 16)]
        pool_size: usize,
    },
    /// Run pending migrations and exit.
    Migrate,
    /// Print the OpenAPI contract.
    Openapi,
    /// Load the demo catalog, two demo customers, and print one API key per role.
    SeedDemo,
    /// Run a job for an instant.
    Jobs {
        #[command(subcommand)]
        command: JobsCommand,
    },
    /// Manage API keys.
    Apikey {
        #[command(subcommand)]
        command: ApikeyCommand,
    },
    /// Export the books.
    Export {
        #[command(subcommand)]
        command: ExportCommand,
    },
    /// The embedded cluster under --data-dir (whatever DATABASE_URL says).
    Db {
        #[command(subcommand)]
        command: DbCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Print the embedded cluster's directory and whether it runs.
    Status,
    /// Stop the embedded cluster, e.g. one left running by a killed service (fast
    /// shutdown: sessions end, committed work is kept).
    Stop,
}

#[derive(Debug, Subcommand)]
pub enum ExportCommand {
    /// The FEC (Fichier des Écritures Comptables) of a period to standard output, as
    /// `GET /v1/ledger/fec` sends it: `export fec --from 2026-01-01 --to 2026-12-31 > FEC.txt`.
    Fec {
        /// First day (Paris date, YYYY-MM-DD).
        #[arg(long, value_parser = crate::input::parse_date)]
        from: chrono::NaiveDate,
        /// Last day, included.
        #[arg(long, value_parser = crate::input::parse_date)]
        to: chrono::NaiveDate,
    },
}

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// Run one job: renewals, billing, hold-expiry, credit-expiry, assistance-period-close,
    /// intervention-release, invoicing.
    Run {
        name: String,
        /// RFC 3339 instant, e.g. 2026-12-01T00:00:00+01:00 (default: now, the test
        /// clock's with --test-clock).
        #[arg(long, value_parser = crate::input::parse_instant)]
        as_of: Option<chrono::DateTime<chrono::Utc>>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ApikeyCommand {
    /// Create a key and print it (shown once).
    Create {
        #[arg(long, value_enum)]
        role: Role,
        /// The customer a `customer` key is bound to.
        #[arg(long)]
        customer: Option<Uuid>,
        /// A note to recognise the key by.
        #[arg(long)]
        label: Option<String>,
    },
    /// List every key (id, role, customer, label, created, revoked), never its secret.
    List,
    /// Revoke a key: it stops working within a second everywhere. Revoking it again
    /// changes nothing.
    Revoke {
        /// The key's id (as `apikey list` shows it).
        id: Uuid,
    },
}

pub fn run(cli: Cli) -> ExitCode {
    telemetry::init(cli.log_format);
    if let Command::Openapi = cli.command {
        print!("{}", crate::openapi::document_json());
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    let seller =
        crate::invoicing::legal::Seller::from_config(cli.seller.as_deref(), cli.late_payment_rate)
            .map_err(anyhow::Error::msg)?;
    crate::invoicing::legal::configure(seller);
    let creditor = crate::sepa::creditor::Creditor::from_config(cli.creditor.as_deref())
        .map_err(anyhow::Error::msg)?;
    crate::sepa::creditor::configure(creditor);
    let data_dir = cli.data_dir.unwrap_or_else(|| {
        crate::pg_cluster::default_data_dir(std::path::Path::new("var/postgres"))
    });
    if let Command::Db { command } = cli.command {
        return embedded_cluster(&data_dir, command);
    }
    let database = Database::open(cli.database_url, cli.owner_database_url, &data_dir).await?;
    let owner = matches!(cli.command, Command::Serve { .. });
    let clock = ServiceClock::new(cli.test_clock, cli.test_clock_start);
    if let Some(test) = clock.test_clock() {
        tracing::warn!(now = %test.now(), "running on a test clock, not the system's");
    }
    let result = match cli.command {
        Command::Serve {
            listen,
            workers,
            pool_size,
        } => {
            serve(
                &database,
                &listen,
                workers,
                pool_size,
                cli.allow_superuser,
                clock,
            )
            .await
        }
        Command::Migrate => db::run_migrations(&database.owner_url).await.map(|n| {
            println!("{n} migration(s) run; the database is current");
        }),
        Command::Apikey {
            command:
                ApikeyCommand::Create {
                    role,
                    customer,
                    label,
                },
        } => create_key(&database, role, customer, label.as_deref()).await,
        Command::Apikey {
            command: ApikeyCommand::List,
        } => list_keys(&database).await,
        Command::Apikey {
            command: ApikeyCommand::Revoke { id },
        } => revoke_key(&database, id).await,
        Command::SeedDemo => seed_demo(&database, &clock).await,
        Command::Jobs {
            command: JobsCommand::Run { name, as_of },
        } => run_job(&database, &name, as_of, &clock).await,
        Command::Export {
            command: ExportCommand::Fec { from, to },
        } => export_fec(&database, from, to).await,
        Command::Openapi | Command::Db { .. } => Ok(()),
    };
    let closed = database.close(owner).await;
    result.and(closed)
}

async fn serve(
    database: &Database,
    listen: &str,
    workers: Option<usize>,
    pool_size: usize,
    allow_superuser: bool,
    clock: ServiceClock,
) -> anyhow::Result<()> {
    let mut conn = connect(database).await?;
    db::check_service_role(&mut conn, allow_superuser).await?;
    drop(conn);
    let pool = db::pool(&database.url, pool_size)?;
    let mut conn = pool.get().await?;
    let interrupted =
        crate::invoicing::store_runs::mark_interrupted(&mut conn, clock.now()).await?;
    if interrupted > 0 {
        tracing::warn!(
            interrupted,
            "invoice runs left running by a stopped process are marked interrupted"
        );
    }
    drop(conn);
    let state = crate::startup::state(pool, clock);
    let (server, addr) = crate::startup::build(state, listen, workers)?;
    tracing::info!(%addr, "grandlivre listening; Ctrl-C or SIGTERM stops it");
    let watch = database.watch_cluster();
    let served = server.await;
    if let Some(watch) = watch {
        watch.stop().await;
    }
    served?;
    tracing::info!("server stopped");
    Ok(())
}

/// `db status` and `db stop`: the embedded cluster, without creating or starting it.
fn embedded_cluster(data_dir: &std::path::Path, command: DbCommand) -> anyhow::Result<()> {
    use crate::pg_cluster::{Cluster, State};
    let Some(cluster) = Cluster::existing(data_dir)? else {
        println!("{}: no cluster", data_dir.display());
        return Ok(());
    };
    let dir = cluster.data_dir().display();
    match command {
        DbCommand::Status => {
            let state = match cluster.state()? {
                State::Running => "running",
                State::Stopped => "stopped",
                State::Died => "stopped (its postmaster died)",
            };
            println!("{dir}: {state}");
        }
        DbCommand::Stop if cluster.is_running()? => {
            cluster.stop()?;
            println!("{dir}: stopped");
        }
        DbCommand::Stop => println!("{dir}: was not running"),
    }
    Ok(())
}

async fn create_key(
    database: &Database,
    role: Role,
    customer: Option<Uuid>,
    label: Option<&str>,
) -> anyhow::Result<()> {
    let mut conn = connect(database).await?;
    let (view, key) = auth::create_key(&mut conn, role, customer, label).await?;
    eprintln!(
        "created {} key {}; it is shown once, keep it:",
        role.as_str(),
        view.id
    );
    println!("{key}");
    Ok(())
}

/// Pages of this many keys are read until the last.
const KEY_PAGE: i64 = 200;

async fn list_keys(database: &Database) -> anyhow::Result<()> {
    let mut conn = connect(database).await?;
    println!(
        "{:<36}  {:<9}  {:<36}  {:<20}  {:<20}  label",
        "id", "role", "customer", "created", "revoked"
    );
    let mut after = None;
    loop {
        let page = auth::list_keys(&mut conn, after, KEY_PAGE).await?;
        for k in &page {
            println!("{}", key_line(k));
        }
        match page.last() {
            Some(last) if page.len() as i64 == KEY_PAGE => after = Some(last.id),
            _ => return Ok(()),
        }
    }
}

fn key_line(k: &auth::KeyView) -> String {
    let instant = |at: Option<chrono::DateTime<chrono::Utc>>| {
        at.map_or("-".to_string(), |t| {
            t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        })
    };
    format!(
        "{:<36}  {:<9}  {:<36}  {:<20}  {:<20}  {}",
        k.id,
        k.role.as_str(),
        k.customer_id.map_or("-".to_string(), |c| c.to_string()),
        instant(Some(k.created_at)),
        instant(k.revoked_at),
        k.label.as_deref().unwrap_or("-"),
    )
}

async fn revoke_key(database: &Database, id: Uuid) -> anyhow::Result<()> {
    let mut conn = connect(database).await?;
    let key = auth::revoke_key(&mut conn, id).await?;
    println!("{}", key_line(&key));
    eprintln!("key {id} is revoked; it stops working within a second");
    Ok(())
}

/// Migrates (as the schema owner), then connects as the service.
/// Writes the FEC of `from`..=`to` to standard output, a chunk at a time.
async fn export_fec(
    database: &Database,
    from: chrono::NaiveDate,
    to: chrono::NaiveDate,
) -> anyhow::Result<()> {
    use std::io::Write;
    anyhow::ensure!(from <= to, "--to ({to}) is before --from ({from})");
    let conn = connect(database).await?;
    let mut chunks = std::pin::pin!(crate::ledger::store::fec::open(conn, from, to)
        .await?
        .into_stream());
    let mut out = std::io::stdout().lock();
    while let Some(chunk) = futures_util::StreamExt::next(&mut chunks).await {
        out.write_all(&chunk?)?;
    }
    out.flush()?;
    Ok(())
}

async fn connect(database: &Database) -> anyhow::Result<diesel_async::AsyncPgConnection> {
    let ran = db::run_migrations(&database.owner_url).await?;
    tracing::info!(ran, "migrations current");
    Ok(
        <diesel_async::AsyncPgConnection as diesel_async::AsyncConnection>::establish(
            &database.url,
        )
        .await?,
    )
}

async fn seed_demo(database: &Database, clock: &ServiceClock) -> anyhow::Result<()> {
    let mut conn = connect(database).await?;
    let seeded = crate::demo::seed(&mut conn, clock.now()).await?;
    println!(
        "demo catalog loaded ({} new offers); demo customers:",
        seeded.offers_added
    );
    println!(
        "  {}  Atelier Démo SARL (has a SEPA mandate)",
        crate::demo::DEMO_CUSTOMER_1
    );
    println!("  {}  Cabinet Exemple SAS", crate::demo::DEMO_CUSTOMER_2);
    println!("API keys (shown once):");
    for (role, key) in seeded.keys {
        println!("  {:<9} {key}", role.as_str());
    }
    Ok(())
}

async fn run_job(
    database: &Database,
    name: &str,
    as_of: Option<chrono::DateTime<chrono::Utc>>,
    clock: &ServiceClock,
) -> anyhow::Result<()> {
    let job = crate::jobs::Job::parse(name).ok_or_else(|| {
        let names: Vec<&str> = crate::jobs::Job::ALL.iter().map(|j| j.name()).collect();
        anyhow::anyhow!("no job `{name}` ({})", names.join(", "))
    })?;
    drop(connect(database).await?);
    let now = clock.now();
    let as_of = as_of.unwrap_or(now);
    crate::jobs::check_horizon(as_of, now)
        .map_err(|reason| anyhow::anyhow!("--as-of: {reason}"))?;
    // the run engine's workers, its lease, and one to spare
    let pool = db::pool(&database.url, crate::invoicing::store_runs::WORKERS + 2)?;
    let shown = JobProgress::new();
    let run = crate::jobs::run_on(&pool, job, as_of, clock, &|p| shown.show(p))
        .await
        .map_err(|e| anyhow::anyhow!("{}", e.detail))?;
    shown.finish();
    println!("{}", serde_json::to_string_pretty(&run)?);
    Ok(())
}

/// The progress of `jobs run invoicing` on stderr: a bar on a terminal, otherwise a plain
/// line at most every second (and the last one).
struct JobProgress {
    bar: Option<indicatif::ProgressBar>,
    last: std::sync::Mutex<(Option<std::time::Instant>, Option<String>)>,
}

impl JobProgress {
    fn new() -> JobProgress {
        use std::io::IsTerminal;
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "invoicing {bar:40} {pos}/{len} customers, {msg} ({eta})",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar
        });
        JobProgress {
            bar,
            last: std::sync::Mutex::new((None, None)),
        }
    }

    fn show(&self, p: &crate::invoicing::runs::Progress) {
        if let Some(bar) = &self.bar {
            bar.set_length(p.customers_total.max(0) as u64);
            bar.set_position(p.customers_done.max(0) as u64);
            bar.set_message(format!("{} invoices", p.invoices_issued));
            return;
        }
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let due = last
            .0
            .is_none_or(|at| at.elapsed() >= std::time::Duration::from_secs(1));
        if due {
            eprintln!("{}", p.line());
            *last = (Some(std::time::Instant::now()), None);
        } else {
            last.1 = Some(p.line());
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
        let last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(line) = &last.1 {
            eprintln!("{line}");
        }
    }
}
