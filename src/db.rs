//! Connections: the pool, embedded migrations, and where the database comes from
//! (`DATABASE_URL`, or the embedded cluster).

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::pooled_connection::deadpool::{Object, Pool};
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use futures_util::FutureExt;

use crate::pg_cluster::{Cluster, Durability};

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");
pub const DATABASE_NAME: &str = "grandlivre";

pub type DbPool = Pool<AsyncPgConnection>;
pub type DbConn = Object<AsyncPgConnection>;

/// Where the database is: a URL given by the user, or the embedded cluster.
#[derive(Debug)]
pub struct Database {
    pub url: String,
    cluster: Option<Cluster>,
    started_cluster: bool,
}

impl Database {
    /// With a URL, uses it. Without, starts (creating it first if needed) the embedded
    /// cluster under `data_dir` and makes sure the `grandlivre` database exists.
    pub async fn open(url: Option<String>, data_dir: &Path) -> anyhow::Result<Database> {
        if let Some(url) = url {
            return Ok(Database {
                url,
                cluster: None,
                started_cluster: false,
            });
        }
        let data_dir = data_dir.to_path_buf();
        let (cluster, started) = tokio::task::spawn_blocking(move || {
            let cluster = Cluster::locate(&data_dir, Durability::Durable)?;
            let started = cluster.ensure_running()?;
            Ok::<_, crate::pg_cluster::ClusterError>((cluster, started))
        })
        .await??;
        if started {
            tracing::info!(data_dir = %cluster.data_dir().display(), "started the embedded PostgreSQL cluster");
        }
        create_database(&cluster.connection_string("postgres"), DATABASE_NAME).await?;
        Ok(Database {
            url: cluster.connection_string(DATABASE_NAME),
            cluster: Some(cluster),
            started_cluster: started,
        })
    }

    /// Stops the embedded cluster: always when `owner` (the server), otherwise only when
    /// this process started it (a short CLI command).
    pub async fn close(self, owner: bool) -> anyhow::Result<()> {
        if let Some(cluster) = self.cluster {
            if owner || self.started_cluster {
                tokio::task::spawn_blocking(move || cluster.stop()).await??;
                tracing::info!("stopped the embedded PostgreSQL cluster");
            }
        }
        Ok(())
    }
}

/// Creates `name` on the server at `maintenance_url` unless it exists.
pub async fn create_database(maintenance_url: &str, name: &str) -> anyhow::Result<()> {
    let mut conn = AsyncPgConnection::establish(maintenance_url)
        .await
        .with_context(|| format!("connecting to {maintenance_url}"))?;
    create_database_on(&mut conn, name, None).await
}

/// `CREATE DATABASE name [TEMPLATE template]`, tolerating a concurrent creator.
pub async fn create_database_on(
    conn: &mut AsyncPgConnection,
    name: &str,
    template: Option<&str>,
) -> anyhow::Result<()> {
    let sql = match template {
        Some(t) => format!("CREATE DATABASE \"{name}\" TEMPLATE \"{t}\""),
        None => format!("CREATE DATABASE \"{name}\""),
    };
    match diesel::sql_query(sql).execute(conn).await {
        Ok(_) => Ok(()),
        Err(DieselError::DatabaseError(_, info)) if info.message().contains("already exists") => {
            Ok(())
        }
        Err(e) => Err(e).with_context(|| format!("creating database {name}")),
    }
}

/// Runs the embedded migrations that have not run yet; returns how many ran.
pub async fn run_migrations(url: &str) -> anyhow::Result<usize> {
    let url = url.to_string();
    tokio::task::spawn_blocking(move || {
        let mut conn =
            <AsyncConnectionWrapper<AsyncPgConnection> as diesel::Connection>::establish(&url)
                .context("connecting to run migrations")?;
        let ran = conn
            .run_pending_migrations(MIGRATIONS)
            .map_err(|e| anyhow::anyhow!("running migrations: {e}"))?;
        Ok(ran.len())
    })
    .await?
}

/// The version of the newest migration built into this binary.
pub fn latest_migration() -> String {
    use diesel::migration::MigrationSource;
    let migrations: Vec<_> =
        MigrationSource::<diesel::pg::Pg>::migrations(&MIGRATIONS).unwrap_or_default();
    migrations
        .iter()
        .map(|m| m.name().version().to_string())
        .max()
        .unwrap_or_default()
}

/// Whether the database has run every migration this binary knows.
pub async fn migrations_current(conn: &mut AsyncPgConnection) -> Result<bool, DieselError> {
    #[derive(diesel::QueryableByName)]
    struct V {
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
        version: Option<String>,
    }
    let v: V = diesel::sql_query("SELECT max(version) AS version FROM __diesel_schema_migrations")
        .get_result(conn)
        .await?;
    Ok(v.version.as_deref() == Some(latest_migration().as_str()))
}

/// A pool whose connections carry an application name and a statement timeout.
pub fn pool(url: &str, size: usize) -> anyhow::Result<DbPool> {
    let mut config = ManagerConfig::default();
    config.custom_setup = Box::new(|url| {
        async move {
            let mut conn = AsyncPgConnection::establish(url).await?;
            diesel::sql_query("SET application_name = 'grandlivre'")
                .execute(&mut conn)
                .await
                .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
            diesel::sql_query("SET statement_timeout = '15s'")
                .execute(&mut conn)
                .await
                .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
            Ok(conn)
        }
        .boxed()
    });
    let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(url, config);
    Pool::builder(manager)
        .max_size(size)
        .wait_timeout(Some(Duration::from_secs(5)))
        .create_timeout(Some(Duration::from_secs(5)))
        .runtime(deadpool::Runtime::Tokio1)
        .build()
        .context("building the connection pool")
}

/// Whether PostgreSQL asks for the failed statement or transaction to be retried.
pub fn is_retryable(e: &DieselError) -> bool {
    match e {
        DieselError::DatabaseError(DatabaseErrorKind::SerializationFailure, _) => true,
        DieselError::DatabaseError(_, info) => info.message().contains("deadlock detected"),
        _ => false,
    }
}

/// Errors that may say "run the transaction again".
pub trait Retryable {
    fn is_retryable(&self) -> bool;
}
