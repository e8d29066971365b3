//! The embedded default database: a private PostgreSQL cluster that the binary creates
//! (`initdb`), starts and stops with the server binaries found on the machine. It listens
//! only on a unix socket inside its data directory, so it never clashes with a server that
//! already runs on the machine. PostgreSQL refuses to run as root: when this process is
//! root, the cluster runs as the `postgres` system user. While the service runs, [`watch`]
//! restarts the cluster when its postmaster dies.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use sha2::Digest;
use tokio::sync::watch as signal;

/// The socket's port number only names the socket file; nothing listens on TCP.
const PORT: u16 = 5432;
/// Unix socket paths are limited to 107 bytes on Linux.
const MAX_SOCKET_PATH: usize = 107;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(
        "No PostgreSQL server binaries were found (looked for `pg_ctl` and `initdb` on PATH and in \
         /usr/lib/postgresql/*/bin).\n\nWith DATABASE_URL unset, grandlivre runs its own private \
         PostgreSQL cluster and needs the server binaries, version 13 or later. Install them, for \
         example on Debian or Ubuntu with `apt-get install postgresql` (the `postgresql-15` or any \
         newer package), or on macOS with `brew install postgresql@16`, or set GRANDLIVRE_PG_BIN to \
         the directory holding `pg_ctl`. Alternatively point DATABASE_URL at an existing server."
    )]
    NoBinaries,
    #[error(
        "this process runs as root and PostgreSQL refuses to run as root, but there is no \
         `postgres` system user to run the private cluster as; create one (`useradd --system postgres`) \
         or run grandlivre as an ordinary user"
    )]
    NoPostgresUser,
    #[error(
        "the data directory {0} cannot be reached by the `postgres` system user (a parent directory \
         is closed to other users); choose a --data-dir under a directory others may enter, e.g. /var/lib/grandlivre"
    )]
    Unreachable(PathBuf),
    #[error("the data directory path {0} is too long for a unix socket (at most {MAX_SOCKET_PATH} bytes with the socket name); choose a shorter --data-dir")]
    PathTooLong(PathBuf),
    #[error("{what} failed: {detail}")]
    Command { what: String, detail: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> ClusterError {
    let context = context.into();
    move |source| ClusterError::Io { context, source }
}

/// How the cluster trades durability for speed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// PostgreSQL's defaults: every commit is flushed to disk.
    Durable,
    /// For throw-away test clusters only: no fsync at all.
    Throwaway,
}

/// What became of a cluster's postmaster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Running,
    /// Shut down (`pg_ctl stop`, `grandlivre db stop`): left so.
    Stopped,
    /// Gone without shutting down: [`watch`] restarts it.
    Died,
}

#[derive(Debug, Clone)]
pub struct Cluster {
    data_dir: PathBuf,
    bin_dir: PathBuf,
    run_as: Option<(u32, u32)>,
    durability: Durability,
}

impl Cluster {
    /// Finds the server binaries and the user to run them as. Creates nothing yet.
    pub fn locate(data_dir: &Path, durability: Durability) -> Result<Self, ClusterError> {
        let bin_dir = find_bin_dir().ok_or(ClusterError::NoBinaries)?;
        let run_as = if current_uid() == Some(0) {
            Some(postgres_user().ok_or(ClusterError::NoPostgresUser)?)
        } else {
            None
        };
        fs::create_dir_all(data_dir).map_err(io(format!("creating {}", data_dir.display())))?;
        let data_dir = data_dir
            .canonicalize()
            .map_err(io(format!("resolving {}", data_dir.display())))?;
        if !socket_fits(&data_dir) {
            return Err(ClusterError::PathTooLong(data_dir));
        }
        if let Some((uid, _)) = run_as {
            if !reachable_by(uid, &data_dir) {
                return Err(ClusterError::Unreachable(data_dir));
            }
        }
        Ok(Cluster {
            data_dir,
            bin_dir,
            run_as,
            durability,
        })
    }

    /// The cluster `initdb` made under `data_dir`, if any; creates nothing.
    pub fn existing(data_dir: &Path) -> Result<Option<Self>, ClusterError> {
        if !data_dir.join("PG_VERSION").exists() {
            return Ok(None);
        }
        Cluster::locate(data_dir, Durability::Durable).map(Some)
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Where the server binaries (and client tools such as `pgbench`) are.
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// A libpq-style connection string for `dbname` on this cluster's socket, as the
    /// bootstrap superuser `postgres`.
    pub fn connection_string(&self, dbname: &str) -> String {
        self.connection_string_as("postgres", dbname)
    }

    /// The same, as `role` (trust authentication: the socket is reachable by the
    /// cluster's system user only).
    pub fn connection_string_as(&self, role: &str, dbname: &str) -> String {
        format!(
            "host={} port={PORT} user={role} dbname={dbname}",
            self.data_dir.display()
        )
    }

    /// Creates the cluster if it does not exist and starts it if it is not running.
    /// Returns true when this call started it. Serialised across processes by a lock file.
    pub fn ensure_running(&self) -> Result<bool, ClusterError> {
        let _lock = self.lock()?;
        if !self.data_dir.join("PG_VERSION").exists() {
            self.init()?;
        }
        if self.is_running()? {
            return Ok(false);
        }
        let log = self.data_dir.join("server.log");
        let out = self.run(
            "pg_ctl",
            &[
                "-D".as_ref(),
                self.data_dir.as_os_str(),
                "-l".as_ref(),
                log.as_os_str(),
                "-w".as_ref(),
                "-t".as_ref(),
                "120".as_ref(),
                // errors are logged without their DETAIL, which holds row contents and
                // key values ("Failing row contains (…)"), nor the statement, which may
                // hold literal values: customer data stays out of the server's log
                "-o".as_ref(),
                "-c log_error_verbosity=terse -c log_min_error_statement=panic".as_ref(),
                "start".as_ref(),
            ],
        )?;
        if !out.status.success() {
            let tail = fs::read_to_string(&log)
                .map(|s| {
                    s.lines()
                        .rev()
                        .take(15)
                        .collect::<Vec<_>>()
                        .into_iter()
                        .rev()
                        .collect::<Vec<_>>()
                        .join("\n")
                })
                .unwrap_or_default();
            return Err(ClusterError::Command {
                what: "pg_ctl start".into(),
                detail: format!("{}\n{tail}", String::from_utf8_lossy(&out.stderr)),
            });
        }
        Ok(true)
    }

    pub fn is_running(&self) -> Result<bool, ClusterError> {
        let out = self.run(
            "pg_ctl",
            &["-D".as_ref(), self.data_dir.as_os_str(), "status".as_ref()],
        )?;
        Ok(out.status.success())
    }

    /// Running, shut down, or dead: a postmaster that shuts down removes its
    /// `postmaster.pid`; one that was killed (`kill -9`, the OOM killer) leaves it.
    pub fn state(&self) -> Result<State, ClusterError> {
        Ok(if self.is_running()? {
            State::Running
        } else if self.data_dir.join("postmaster.pid").exists() {
            State::Died
        } else {
            State::Stopped
        })
    }

    /// Stops the cluster (fast shutdown: open sessions are ended, committed work is kept).
    pub fn stop(&self) -> Result<(), ClusterError> {
        let _lock = self.lock()?;
        if !self.is_running()? {
            return Ok(());
        }
        let out = self.run(
            "pg_ctl",
            &[
                "-D".as_ref(),
                self.data_dir.as_os_str(),
                "-m".as_ref(),
                "fast".as_ref(),
                "-w".as_ref(),
                "stop".as_ref(),
            ],
        )?;
        if !out.status.success() {
            return Err(ClusterError::Command {
                what: "pg_ctl stop".into(),
                detail: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        Ok(())
    }

    fn init(&self) -> Result<(), ClusterError> {
        if let Some((uid, gid)) = self.run_as {
            std::os::unix::fs::chown(&self.data_dir, Some(uid), Some(gid)).map_err(io(format!(
                "giving {} to the postgres user",
                self.data_dir.display()
            )))?;
        }
        fs::set_permissions(&self.data_dir, fs::Permissions::from_mode(0o700))
            .map_err(io(format!("restricting {}", self.data_dir.display())))?;
        let out = self.run(
            "initdb",
            &[
                "-D".as_ref(),
                self.data_dir.as_os_str(),
                "-U".as_ref(),
                "postgres".as_ref(),
                "-A".as_ref(),
                "trust".as_ref(),
                "-E".as_ref(),
                "UTF8".as_ref(),
                "--no-locale".as_ref(),
                "--no-instructions".as_ref(),
            ],
        )?;
        if !out.status.success() {
            return Err(ClusterError::Command {
                what: "initdb".into(),
                detail: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        // The socket lives in the data directory, which only the cluster's owner may enter:
        // trust authentication on it admits that user (and root) only.
        let mut settings = format!(
            "\n# grandlivre embedded cluster\nlisten_addresses = ''\nunix_socket_directories = '{}'\nport = {PORT}\nmax_connections = 200\n",
            self.data_dir.display()
        );
        if self.durability == Durability::Throwaway {
            settings.push_str("fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n");
        }
        let conf = self.data_dir.join("postgresql.conf");
        OpenOptions::new()
            .append(true)
            .open(&conf)
            .and_then(|mut f| f.write_all(settings.as_bytes()))
            .map_err(io(format!("writing {}", conf.display())))
    }

    fn lock(&self) -> Result<File, ClusterError> {
        let path = self.data_dir.with_extension("lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io(format!("opening {}", path.display())))?;
        file.lock()
            .map_err(io(format!("locking {}", path.display())))?;
        Ok(file)
    }

    fn run(&self, program: &str, args: &[&std::ffi::OsStr]) -> Result<Output, ClusterError> {
        let mut cmd = Command::new(self.bin_dir.join(program));
        cmd.args(args)
            .env("LC_ALL", "C")
            .current_dir(&self.data_dir)
            // its own process group: a Ctrl-C in the terminal stops grandlivre, which then
            // stops the cluster after draining requests, rather than both at once
            .process_group(0);
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid).gid(gid).env("HOME", &self.data_dir);
        }
        cmd.output().map_err(io(format!("running {program}")))
    }
}

/// A directory for a throw-away cluster named `name`: under `target` when the cluster's
/// user can reach it and the socket path fits, else in the temporary directory (a checkout
/// in a private directory, run as root), named after `target` so runs do not collide.
pub fn scratch_dir(target: &Path, name: &str) -> PathBuf {
    let preferred = target.join(name);
    let reachable = match (current_uid(), postgres_user()) {
        (Some(0), Some((uid, _))) => reachable_by(uid, &preferred),
        _ => true,
    };
    if reachable && socket_fits(&preferred) {
        return preferred;
    }
    let digest = sha2::Sha256::digest(target.to_string_lossy().as_bytes());
    std::env::temp_dir().join(format!("grandlivre-{name}-{}", hex::encode(&digest[..6])))
}

/// Where the embedded cluster lives when no data directory is given: `relative` under the
/// current directory, unless this process is root and the `postgres` user could not use
/// it (a checkout in root's home, or a path too long for the socket): then under
/// `/var/lib/grandlivre`, named after that path, so that every command run from the same
/// directory finds the same cluster. The choice is logged.
pub fn default_data_dir(relative: &Path) -> PathBuf {
    let preferred = std::env::current_dir()
        .map(|d| d.join(relative))
        .unwrap_or_else(|_| relative.to_path_buf());
    // directories still to be created get the default mode, open to others
    let reachable = |uid: u32| {
        preferred.ancestors().skip(1).all(|a| {
            fs::metadata(a).map_or(true, |m| {
                m.uid() == uid || m.permissions().mode() & 0o001 != 0
            })
        })
    };
    let Some((uid, _)) = current_uid()
        .filter(|&u| u == 0)
        .and_then(|_| postgres_user())
    else {
        return preferred;
    };
    if reachable(uid) && socket_fits(&preferred) {
        return preferred;
    }
    let digest = sha2::Sha256::digest(preferred.to_string_lossy().as_bytes());
    let fallback = PathBuf::from("/var/lib/grandlivre")
        .join(format!("postgres-{}", hex::encode(&digest[..6])));
    tracing::info!(
        data_dir = %fallback.display(),
        "the embedded PostgreSQL cluster lives in {} since the `postgres` system user cannot use \
         {} (a parent directory is closed to others, or the path is too long for its socket); \
         --data-dir chooses another directory",
        fallback.display(),
        preferred.display()
    );
    fallback
}

fn socket_fits(data_dir: &Path) -> bool {
    data_dir.join(".s.PGSQL.5432").as_os_str().len() <= MAX_SOCKET_PATH
}

/// How often the service checks its embedded cluster.
const WATCH_EVERY: Duration = Duration::from_secs(1);
/// Restart attempts for one outage, 1, 2, 4 then 8 s apart.
const RESTART_ATTEMPTS: u32 = 5;
/// A restarted cluster that stays up this long ends the outage: a later death gets its
/// own attempts, while a cluster that keeps dying sooner uses up the same ones.
const STABLE_AFTER: Duration = Duration::from_secs(60);

/// The service's watch over its embedded cluster, until [`ClusterWatch::stop`].
pub struct ClusterWatch {
    stop: signal::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl ClusterWatch {
    pub fn spawn(cluster: Cluster) -> ClusterWatch {
        let (stop, stopped) = signal::channel(false);
        ClusterWatch {
            stop,
            task: tokio::spawn(watch(cluster, stopped)),
        }
    }

    /// Ends the watch, after any restart under way, so that stopping the cluster next
    /// cannot race with a restart.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Checks the cluster every [`WATCH_EVERY`]; when its postmaster has died, restarts it
/// (at most [`RESTART_ATTEMPTS`] times per outage, with backoff), logging each attempt. A
/// cluster shut down on purpose (`grandlivre db stop`) is left stopped.
pub async fn watch(cluster: Cluster, mut stop: signal::Receiver<bool>) {
    let mut attempts = 0;
    let mut restarted_at: Option<Instant> = None;
    let mut stopped_noted = false;
    loop {
        if stopped_during(&mut stop, WATCH_EVERY).await {
            return;
        }
        let state = blocking(&cluster, Cluster::state).await;
        match state {
            Ok(State::Running) => {
                stopped_noted = false;
                if restarted_at.is_some_and(|t| t.elapsed() >= STABLE_AFTER) {
                    attempts = 0;
                    restarted_at = None;
                }
                continue;
            }
            Ok(State::Stopped) => {
                if !stopped_noted {
                    tracing::warn!(
                        data_dir = %cluster.data_dir().display(),
                        "the embedded PostgreSQL cluster was shut down by another process; \
                         it stays down (/readyz answers 503) until started again"
                    );
                    stopped_noted = true;
                }
                continue;
            }
            Ok(State::Died) => {}
            Err(e) => tracing::error!(error = %e, "cannot check the embedded PostgreSQL cluster"),
        }
        loop {
            if attempts == RESTART_ATTEMPTS {
                tracing::error!(
                    attempts,
                    data_dir = %cluster.data_dir().display(),
                    "gave up restarting the embedded PostgreSQL cluster; /readyz answers 503 \
                     until the service is restarted"
                );
                return;
            }
            attempts += 1;
            tracing::warn!(
                attempt = attempts,
                of = RESTART_ATTEMPTS,
                data_dir = %cluster.data_dir().display(),
                "the embedded PostgreSQL cluster's postmaster died; restarting it"
            );
            match blocking(&cluster, Cluster::ensure_running).await {
                Ok(_) => {
                    tracing::info!(
                        attempt = attempts,
                        "restarted the embedded PostgreSQL cluster"
                    );
                    restarted_at = Some(Instant::now());
                    break;
                }
                Err(e) => {
                    tracing::error!(attempt = attempts, error = %e, "restarting the embedded PostgreSQL cluster failed");
                    let backoff = Duration::from_secs(1 << (attempts - 1).min(3));
                    if attempts < RESTART_ATTEMPTS && stopped_during(&mut stop, backoff).await {
                        return;
                    }
                }
            }
        }
    }
}

/// Sleeps for `pause`; true when told to stop (or when the watch's owner is gone) first.
async fn stopped_during(stop: &mut signal::Receiver<bool>, pause: Duration) -> bool {
    tokio::select! {
        biased;
        _ = stop.wait_for(|stop| *stop) => true,
        _ = tokio::time::sleep(pause) => false,
    }
}

/// Runs a `pg_ctl` step off the async workers.
async fn blocking<T: Send + 'static>(
    cluster: &Cluster,
    step: fn(&Cluster) -> Result<T, ClusterError>,
) -> Result<T, ClusterError> {
    let cluster = cluster.clone();
    tokio::task::spawn_blocking(move || step(&cluster))
        .await
        .unwrap_or_else(|e| {
            Err(ClusterError::Command {
                what: "checking the cluster".into(),
                detail: e.to_string(),
            })
        })
}

fn find_bin_dir() -> Option<PathBuf> {
    bin_dir_among(
        std::env::var_os("GRANDLIVRE_PG_BIN").map(PathBuf::from),
        std::env::var_os("PATH").unwrap_or_default(),
        Path::new("/usr/lib/postgresql"),
    )
}

/// The directory with `pg_ctl` and `initdb`: the override when given (and nothing else),
/// else the first on `path`, else the newest `<versions>/N/bin`.
fn bin_dir_among(
    overridden: Option<PathBuf>,
    path: std::ffi::OsString,
    versions: &Path,
) -> Option<PathBuf> {
    let has_tools = |d: &Path| d.join("pg_ctl").is_file() && d.join("initdb").is_file();
    if let Some(dir) = overridden {
        return has_tools(&dir).then_some(dir);
    }
    let on_path = std::env::split_paths(&path)
        .filter_map(|d| d.join("pg_ctl").canonicalize().ok())
        .filter_map(|p| p.parent().map(Path::to_path_buf))
        .find(|d| has_tools(d));
    on_path.or_else(|| {
        let mut found: Vec<(u32, PathBuf)> = fs::read_dir(versions)
            .ok()?
            .filter_map(Result::ok)
            .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
            .filter(|(_, d)| has_tools(d))
            .collect();
        found.sort();
        found.pop().map(|(_, d)| d)
    })
}

/// The effective uid of this process (the owner of /proc/self).
fn current_uid() -> Option<u32> {
    fs::metadata("/proc/self").ok().map(|m| m.uid())
}

fn postgres_user() -> Option<(u32, u32)> {
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        if fields.next()? != "postgres" {
            return None;
        }
        let uid = fields.nth(1)?.parse().ok()?;
        let gid = fields.next()?.parse().ok()?;
        Some((uid, gid))
    })
}

/// Whether `uid` may walk down to `dir`: every ancestor must be owned by it or open to others.
fn reachable_by(uid: u32, dir: &Path) -> bool {
    dir.ancestors().skip(1).all(|a| {
        fs::metadata(a).is_ok_and(|m| m.uid() == uid || m.permissions().mode() & 0o001 != 0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_bin(dir: &Path) {
        fs::create_dir_all(dir).unwrap();
        for tool in ["pg_ctl", "initdb"] {
            fs::write(dir.join(tool), "").unwrap();
        }
    }

    #[test]
    fn finds_binaries_by_override_path_or_newest_version() {
        let root = std::env::temp_dir().join(format!("gl-bin-{}", uuid::Uuid::new_v4()));
        let versions = root.join("lib");
        fake_bin(&versions.join("13/bin"));
        fake_bin(&versions.join("16/bin"));
        fs::create_dir_all(versions.join("17/bin")).unwrap(); // no tools: skipped
        fake_bin(&root.join("onpath"));
        let none = std::ffi::OsString::new();
        assert_eq!(
            bin_dir_among(None, none.clone(), &versions),
            Some(versions.join("16/bin"))
        );
        let path = std::env::join_paths([root.join("empty"), root.join("onpath")]).unwrap();
        assert_eq!(
            bin_dir_among(None, path, &versions),
            Some(root.join("onpath").canonicalize().unwrap())
        );
        assert_eq!(
            bin_dir_among(Some(root.join("13-missing")), none.clone(), &versions),
            None
        );
        assert_eq!(
            bin_dir_among(Some(versions.join("13/bin")), none.clone(), &versions),
            Some(versions.join("13/bin"))
        );
        assert_eq!(bin_dir_among(None, none, &root.join("nothing")), None);
        fs::remove_dir_all(root).unwrap();
    }
}
