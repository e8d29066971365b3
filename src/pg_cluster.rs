//! The embedded default database: a private PostgreSQL cluster that the binary creates
//! (`initdb`), starts and stops with the server binaries found on the machine. It listens
//! only on a unix socket inside its data directory, so it never clashes with a server that
//! already runs on the machine. PostgreSQL refuses to run as root: when this process is
//! root, the cluster runs as the `postgres` system user.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sha2::Digest;

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
        if data_dir.join(".s.PGSQL.5432").as_os_str().len() > MAX_SOCKET_PATH {
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
    if reachable && preferred.join(".s.PGSQL.5432").as_os_str().len() <= MAX_SOCKET_PATH {
        return preferred;
    }
    let digest = sha2::Sha256::digest(target.to_string_lossy().as_bytes());
    std::env::temp_dir().join(format!("grandlivre-{name}-{}", hex::encode(&digest[..6])))
}

/// Where the embedded cluster lives when no data directory is given: `relative` under the
/// current directory, unless this process is root and the `postgres` user could not reach
/// it (a checkout in root's home): then under `/var/lib/grandlivre`, named after that
/// path, so that every command run from the same directory finds the same cluster.
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
    match (current_uid(), postgres_user()) {
        (Some(0), Some((uid, _))) if !reachable(uid) => {
            let digest = sha2::Sha256::digest(preferred.to_string_lossy().as_bytes());
            PathBuf::from("/var/lib/grandlivre")
                .join(format!("postgres-{}", hex::encode(&digest[..6])))
        }
        _ => preferred,
    }
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
