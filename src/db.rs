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

use crate::pg_cluster::{Cluster, ClusterWatch, Durability};

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");
pub const DATABASE_NAME: &str = "grandlivre";

pub type DbPool = Pool<AsyncPgConnection>;
pub type DbConn = Object<AsyncPgConnection>;

/// The role that owns the schema: it runs the migrations and owns the ledger functions.
pub const OWNER_ROLE: &str = "grandlivre_owner";
/// The role the service connects as: it owns nothing, writes the domain tables, and may
/// change the ledger only by executing the ledger functions.
pub const SERVICE_ROLE: &str = "grandlivre_service";

/// Where the database is: URLs given by the user, or the embedded cluster.
#[derive(Debug)]
pub struct Database {
    /// The service's connection (as [`SERVICE_ROLE`] on the embedded cluster).
    pub url: String,
    /// The schema owner's connection, for migrations (as [`OWNER_ROLE`] on the embedded
    /// cluster; the service's URL when the user gave no other).
    pub owner_url: String,
    cluster: Option<Cluster>,
    started_cluster: bool,
}

impl Database {
    /// With a URL, uses it (and `owner_url` for migrations, if given). Without, starts
    /// (creating it first if needed) the embedded cluster under `data_dir`, with the
    /// schema owner and service roles and the `grandlivre` database owned by the former.
    pub async fn open(
        url: Option<String>,
        owner_url: Option<String>,
        data_dir: &Path,
    ) -> anyhow::Result<Database> {
        if let Some(url) = url {
            return Ok(Database {
                owner_url: owner_url.unwrap_or_else(|| url.clone()),
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
        let data_dir = cluster.data_dir().display();
        if started {
            tracing::info!(%data_dir, "started the embedded PostgreSQL cluster");
        } else {
            tracing::info!(%data_dir, "the embedded PostgreSQL cluster was running already");
        }
        let mut maintenance = connect(&cluster.connection_string("postgres")).await?;
        ensure_roles(&mut maintenance).await?;
        create_database_on(&mut maintenance, DATABASE_NAME, None).await?;
        // a database created before the roles existed (the service ran as superuser)
        adopt(&mut connect(&cluster.connection_string(DATABASE_NAME)).await?).await?;
        Ok(Database {
            url: cluster.connection_string_as(SERVICE_ROLE, DATABASE_NAME),
            owner_url: cluster.connection_string_as(OWNER_ROLE, DATABASE_NAME),
            cluster: Some(cluster),
            started_cluster: started,
        })
    }

    /// For the server: restarts the embedded cluster (if any) when its postmaster dies,
    /// until the watch is stopped.
    pub fn watch_cluster(&self) -> Option<ClusterWatch> {
        self.cluster.clone().map(ClusterWatch::spawn)
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

async fn connect(url: &str) -> anyhow::Result<AsyncPgConnection> {
    AsyncPgConnection::establish(url)
        .await
        .with_context(|| format!("connecting to {url}"))
}

/// Creates the schema owner and the service role unless they exist (as a superuser, or
/// a role with CREATEROLE). Both may log in; neither is a superuser.
pub async fn ensure_roles(conn: &mut AsyncPgConnection) -> anyhow::Result<()> {
    for role in [OWNER_ROLE, SERVICE_ROLE] {
        let sql = format!(
            "DO $$ BEGIN
               IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') THEN
                 CREATE ROLE {role} LOGIN;
               END IF;
             END $$"
        );
        match diesel::sql_query(sql).execute(conn).await {
            // a concurrent creator got there first
            Ok(_) | Err(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) => {}
            Err(e) => return Err(e).with_context(|| format!("creating the role {role}")),
        }
    }
    Ok(())
}

/// `CREATE DATABASE name OWNER` the schema owner `[TEMPLATE template]`, tolerating a
/// concurrent creator. As a superuser, once the roles exist ([`ensure_roles`]).
pub async fn create_database_on(
    conn: &mut AsyncPgConnection,
    name: &str,
    template: Option<&str>,
) -> anyhow::Result<()> {
    let mut sql = format!("CREATE DATABASE \"{name}\" OWNER {OWNER_ROLE}");
    if let Some(t) = template {
        sql.push_str(&format!(" TEMPLATE \"{t}\""));
    }
    match diesel::sql_query(sql).execute(conn).await {
        Ok(_) | Err(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) => Ok(()),
        Err(DieselError::DatabaseError(_, info)) if info.message().contains("already exists") => {
            Ok(())
        }
        Err(e) => Err(e).with_context(|| format!("creating database {name}")),
    }
}

/// Hands the connected database and every table, view and function of its `public`
/// schema to the schema owner (a database migrated by an earlier version, as superuser).
/// As a superuser; changes nothing when the owner has them already.
pub async fn adopt(conn: &mut AsyncPgConnection) -> anyhow::Result<()> {
    diesel::sql_query(format!(
        "DO $$
         DECLARE r record;
         BEGIN
           IF (SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()) <> '{OWNER_ROLE}' THEN
             EXECUTE format('ALTER DATABASE %I OWNER TO {OWNER_ROLE}', current_database());
           END IF;
           FOR r IN SELECT c.oid::regclass AS name, c.relkind FROM pg_class c
                      JOIN pg_namespace n ON n.oid = c.relnamespace
                     WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm')
                       AND pg_get_userbyid(c.relowner) <> '{OWNER_ROLE}' LOOP
             EXECUTE format('ALTER %s %s OWNER TO {OWNER_ROLE}',
                            CASE r.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'TABLE' END,
                            r.name);
           END LOOP;
           FOR r IN SELECT p.oid::regprocedure AS name FROM pg_proc p
                      JOIN pg_namespace n ON n.oid = p.pronamespace
                     WHERE n.nspname = 'public' AND pg_get_userbyid(p.proowner) <> '{OWNER_ROLE}' LOOP
             EXECUTE format('ALTER FUNCTION %s OWNER TO {OWNER_ROLE}', r.name);
           END LOOP;
         END $$"
    ))
    .execute(conn)
    .await
    .context("handing the database to the schema owner")?;
    Ok(())
}

/// Refuses a service connection as a superuser (it could write the ledger tables
/// directly) unless `allow_superuser`, and then only warns.
pub async fn check_service_role(
    conn: &mut AsyncPgConnection,
    allow_superuser: bool,
) -> anyhow::Result<()> {
    #[derive(diesel::QueryableByName)]
    struct Me {
        #[diesel(sql_type = diesel::sql_types::Text)]
        name: String,
        #[diesel(sql_type = diesel::sql_types::Bool)]
        superuser: bool,
    }
    let me: Me = diesel::sql_query(
        "SELECT current_user::text AS name, rolsuper AS superuser FROM pg_roles WHERE rolname = current_user",
    )
    .get_result(conn)
    .await
    .context("reading the service's database role")?;
    tracing::info!(role = %me.name, "the service's database role");
    if !me.superuser {
        return Ok(());
    }
    if !allow_superuser {
        anyhow::bail!(
            "the service connects as `{}`, a PostgreSQL superuser, which bypasses the ledger's \
             privileges; connect as a role that owns nothing (the embedded cluster uses \
             `{SERVICE_ROLE}`, see the README), or pass --allow-superuser to run anyway",
            me.name
        );
    }
    tracing::warn!(role = %me.name, "running as a PostgreSQL superuser (--allow-superuser): the ledger's privileges do not apply to this connection");
    Ok(())
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

/// Whether PostgreSQL asks for the failed transaction to be run again: a serialization
/// failure (SQLSTATE 40001) or a deadlock (40P01), recognised by SQLSTATE, never by the
/// message text (the patched diesel-async reports both as `SerializationFailure`, see
/// vendor/README.md).
pub fn is_retryable(e: &DieselError) -> bool {
    matches!(
        e,
        DieselError::DatabaseError(DatabaseErrorKind::SerializationFailure, _)
    )
}

/// Errors that may say "run the transaction again".
pub trait Retryable {
    fn is_retryable(&self) -> bool;
}
