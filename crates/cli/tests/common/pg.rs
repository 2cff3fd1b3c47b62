//! A throwaway PostgreSQL 15: initdb in a temporary directory, a free
//! loopback port, run as the `postgres` user when the tests run as root.
//! Stopped (immediate mode) and removed when dropped.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub const PGBIN: &str = "/usr/lib/postgresql/15/bin";

pub struct Pg {
    pub dir: tempfile::TempDir,
    pub port: u16,
    /// The server's log file (pgAudit writes there).
    pub log: PathBuf,
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// Runs a PostgreSQL program, as `postgres` when we are root.
fn pg_cmd(program: &str) -> Command {
    let path = format!("{PGBIN}/{program}");
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", &path]);
        c
    } else {
        Command::new(path)
    }
}

fn check(out: Output, what: &str) -> Output {
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Pg {
    /// Starts a cluster with `conf` lines appended to postgresql.conf. The
    /// superuser `postgres` logs in by trust over the Unix socket only;
    /// TCP logins need SCRAM passwords.
    pub fn start(conf: &[&str]) -> Pg {
        Pg::start_tls(conf, None)
    }

    /// Like `start`, with the login role `svc` (password `svc-pw`) owning
    /// the database `app`, as a gateway's service credential.
    pub fn start_app(conf: &[&str]) -> Pg {
        let pg = Pg::start(conf);
        pg.exec("postgres", "create role svc login password 'svc-pw'");
        pg.exec("postgres", "create database app owner svc");
        pg
    }

    /// Like `start`, with TLS from a PEM certificate and key.
    pub fn start_tls(conf: &[&str], tls: Option<(&str, &str)>) -> Pg {
        Pg::start_full(conf, tls, None, &[])
    }

    /// Like `start_tls`, also trusting client certificates from the CA
    /// bundle `client_ca` (`ssl_ca_file`), with `hba` lines put first in
    /// pg_hba.conf (such as `hostssl all svc 127.0.0.1/32 cert`).
    pub fn start_client_certs(conf: &[&str], cert: &str, key: &str, client_ca: &str, hba: &[&str]) -> Pg {
        Pg::start_full(conf, Some((cert, key)), Some(client_ca), hba)
    }

    fn start_full(conf: &[&str], tls: Option<(&str, &str)>, client_ca: Option<&str>, hba: &[&str]) -> Pg {
        assert!(Path::new(PGBIN).exists(), "PostgreSQL 15 is not installed (apt-get install postgresql-15)");
        let dir = tempfile::Builder::new().prefix("custos-pg").tempdir_in("/tmp").unwrap();
        if is_root() {
            check(Command::new("chown").args(["postgres"]).arg(dir.path()).output().unwrap(), "chown");
        }
        let data = dir.path().join("data");
        check(
            pg_cmd("initdb")
                .args(["-A", "trust", "--auth-host=scram-sha-256", "-U", "postgres", "-D"])
                .arg(&data)
                .output()
                .unwrap(),
            "initdb",
        );
        let port = free_port();
        let mut lines = vec![
            format!("port = {port}"),
            "listen_addresses = '127.0.0.1'".into(),
            format!("unix_socket_directories = '{}'", dir.path().display()),
            "log_line_prefix = '%m [%p] app=%a user=%u '".into(),
            "fsync = on".into(),
        ];
        lines.extend(conf.iter().map(|s| s.to_string()));
        if let Some((cert, key)) = tls {
            let ca = client_ca.map(|ca| (ca, "client-ca.crt"));
            for (from, to) in [(cert, "server.crt"), (key, "server.key")].into_iter().chain(ca) {
                let dest = data.join(to);
                std::fs::copy(from, &dest).unwrap();
                check(Command::new("chmod").arg("600").arg(&dest).output().unwrap(), "chmod");
                if is_root() {
                    check(Command::new("chown").arg("postgres").arg(&dest).output().unwrap(), "chown");
                }
            }
            lines.push("ssl = on".into());
            if client_ca.is_some() {
                lines.push("ssl_ca_file = 'client-ca.crt'".into());
            }
        }
        if !hba.is_empty() {
            let hba_path = data.join("pg_hba.conf");
            let old = std::fs::read_to_string(&hba_path).unwrap();
            std::fs::write(&hba_path, format!("{}\n{old}", hba.join("\n"))).unwrap();
        }
        let conf_path = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf_path).unwrap();
        text.push('\n');
        text.push_str(&lines.join("\n"));
        text.push('\n');
        std::fs::write(&conf_path, text).unwrap();
        let log = dir.path().join("server.log");
        check(
            pg_cmd("pg_ctl")
                .args(["-w", "-t", "60", "-D"])
                .arg(&data)
                .arg("-l")
                .arg(&log)
                .arg("start")
                .output()
                .unwrap(),
            "pg_ctl start",
        );
        let pg = Pg { dir, port, log };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !pg.psql_super("postgres", "select 1").status.success() {
            assert!(Instant::now() < deadline, "PostgreSQL never accepted connections");
            std::thread::sleep(Duration::from_millis(50));
        }
        pg
    }

    /// Runs SQL as the superuser over the Unix socket.
    pub fn psql_super(&self, db: &str, sql: &str) -> Output {
        Command::new(format!("{PGBIN}/psql"))
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(self.dir.path())
            .args(["-p", &self.port.to_string(), "-U", "postgres", "-d", db, "-c", sql])
            .output()
            .unwrap()
    }

    /// Like `psql_super`, failing the test on error.
    pub fn exec(&self, db: &str, sql: &str) {
        check(self.psql_super(db, sql), sql);
    }

    /// The server log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        let _ = pg_cmd("pg_ctl")
            .args(["-m", "immediate", "-w", "-D"])
            .arg(self.dir.path().join("data"))
            .arg("stop")
            .output();
    }
}

/// Adds people (name, password, roles) to a gateway users file with the
/// CLI; returns the file.
pub fn gateway_users(dir: &Path, people: &[(&str, &str, &[&str])]) -> PathBuf {
    use std::io::Write;
    let path = dir.join("users.json");
    for (name, password, roles) in people {
        let mut c = Command::new(crate::common::bin());
        c.args(["gateway", "user", name, "--users"]).arg(&path);
        for r in *roles {
            c.args(["--role", r]);
        }
        let mut child = c.stdin(std::process::Stdio::piped()).stderr(std::process::Stdio::null()).spawn().unwrap();
        child.stdin.take().unwrap().write_all(format!("{password}\n").as_bytes()).unwrap();
        assert!(child.wait().unwrap().success());
    }
    path
}

/// A config file in `dir` for `custos serve` with one gateway inside it,
/// on a free port, to database `app` of `pg` as `svc` (password `svc-pw`),
/// recording into log `db`: the file and the gateway's port.
pub fn one_gateway_config(dir: &Path, pg: &Pg, users: &Path) -> (PathBuf, u16) {
    let port = free_port();
    let config = dir.join("custos.toml");
    std::fs::write(
        &config,
        format!(
            "[[gateway]]\nlisten = \"127.0.0.1:{port}\"\n\
             upstream = \"postgres://svc:svc-pw@127.0.0.1:{}/app?sslmode=disable\"\n\
             log = \"db\"\nusers = \"{}\"\n",
            pg.port,
            users.display()
        ),
    )
    .unwrap();
    (config, port)
}
