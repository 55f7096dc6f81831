//! Private RabbitMQ and PostgreSQL instances for the fault-injection suite.
//!
//! Scenarios that stop a broker or a database must never touch the shared ones (other tests use
//! them), so each starts its own: a RabbitMQ node with its own node name, ports, data and log
//! directories ([`RabbitNode`]), and a PostgreSQL cluster made by `initdb` with its own port and
//! socket directory ([`PgCluster`], run as the `postgres` user since PostgreSQL refuses root).
//! Both live in a temporary directory and are stopped and removed on drop, also when the test
//! panics.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port())
}

fn answers(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(500))
        .is_ok()
}

fn wait_port(port: u16, up: bool, timeout: Duration) -> std::io::Result<()> {
    let start = Instant::now();
    while answers(port) != up {
        if start.elapsed() > timeout {
            return Err(std::io::Error::other(format!(
                "port {port} not {} after {timeout:?}",
                if up { "open" } else { "closed" }
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

fn run(cmd: &mut Command, what: &str) -> std::io::Result<()> {
    let out = cmd.stdin(Stdio::null()).output()?;
    if !out.status.success() {
        return Err(std::io::Error::other(format!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(())
}

const RABBIT_BIN: &str = "/usr/lib/rabbitmq/bin";

/// A private RabbitMQ node on loopback.
pub struct RabbitNode {
    dir: tempfile::TempDir,
    child: Option<Child>,
    pub node: String,
    pub port: u16,
    /// The TLS (AMQPS) listener's port, on 127.0.0.1 and 127.0.0.2, when started with TLS.
    pub tls_port: Option<u16>,
}

/// TLS of a private node ([`RabbitNode::start_tls`]): PEM files, read where they are.
pub struct RabbitServerTls<'a> {
    pub cert: &'a Path,
    pub key: &'a Path,
    /// The server's intermediates and the CA of client certificates (RabbitMQ sends the chain
    /// it builds from this file, and verifies client certificates against it).
    pub cacert: &'a Path,
    /// Refuse clients without a certificate (`fail_if_no_peer_cert`).
    pub require_client_cert: bool,
}

impl RabbitNode {
    /// Whether a private node can be started here (the RabbitMQ scripts are installed).
    pub fn available() -> bool {
        Path::new(RABBIT_BIN).join("rabbitmq-server").exists()
    }

    /// Start a node named `gwfaults-<pid>-<port>@localhost` and wait until it serves AMQP.
    pub fn start() -> std::io::Result<RabbitNode> {
        Self::start_with(None)
    }

    /// [`RabbitNode::start`] with a second, TLS listener (`tls_port`) on 127.0.0.1 and
    /// 127.0.0.2 (an address the example server certificate does not name).
    pub fn start_tls(tls: &RabbitServerTls<'_>) -> std::io::Result<RabbitNode> {
        Self::start_with(Some(tls))
    }

    fn start_with(tls: Option<&RabbitServerTls<'_>>) -> std::io::Result<RabbitNode> {
        let dir = tempfile::Builder::new().prefix("gwfaults-rmq").tempdir()?;
        let port = free_port()?;
        let dist = free_port()?;
        let node = format!("gwfaults-{}-{port}@localhost", std::process::id());
        for d in ["home", "mnesia", "log"] {
            std::fs::create_dir_all(dir.path().join(d))?;
        }
        let mut conf = format!("listeners.tcp.local = 127.0.0.1:{port}\nloopback_users = none\n");
        let tls_port = match tls {
            None => None,
            Some(t) => {
                let p = free_port()?;
                conf.push_str(&format!(
                    "listeners.ssl.1 = 127.0.0.1:{p}\nlisteners.ssl.2 = 127.0.0.2:{p}\n\
                     ssl_options.cacertfile = {}\nssl_options.certfile = {}\n\
                     ssl_options.keyfile = {}\nssl_options.verify = verify_peer\n\
                     ssl_options.fail_if_no_peer_cert = {}\n",
                    t.cacert.display(),
                    t.cert.display(),
                    t.key.display(),
                    t.require_client_cert
                ));
                Some(p)
            }
        };
        std::fs::write(dir.path().join("rabbitmq.conf"), conf)?;
        let mut cmd = Command::new(Path::new(RABBIT_BIN).join("rabbitmq-server"));
        let d = dir.path();
        cmd.current_dir(d)
            .env("HOME", d.join("home"))
            .env("RABBITMQ_NODENAME", &node)
            .env("RABBITMQ_NODE_PORT", port.to_string())
            .env("RABBITMQ_DIST_PORT", dist.to_string())
            .env("RABBITMQ_MNESIA_BASE", d.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", d.join("log"))
            .env("RABBITMQ_CONFIG_FILE", d.join("rabbitmq"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", d.join("enabled_plugins"))
            .env("RABBITMQ_CONF_ENV_FILE", d.join("rabbitmq-env.conf"))
            .env("ERL_EPMD_ADDRESS", "127.0.0.1")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(d.join("server.out"))?)
            .stderr(std::fs::File::create(d.join("server.err"))?);
        let child = cmd.spawn()?;
        let mut n = RabbitNode {
            dir,
            child: Some(child),
            node,
            port,
            tls_port,
        };
        // The node registers with epmd a while after the start: until then the CLI cannot
        // reach it, so wait for the AMQP listener first (bounded), then for the full boot.
        let start = Instant::now();
        while !answers(port) {
            if let Some(Ok(Some(st))) = n.child.as_mut().map(Child::try_wait) {
                let out =
                    std::fs::read_to_string(n.dir.path().join("server.out")).unwrap_or_default();
                let tail: String = out
                    .chars()
                    .skip(out.chars().count().saturating_sub(2000))
                    .collect();
                return Err(std::io::Error::other(format!(
                    "rabbitmq-server exited ({st}): {tail}"
                )));
            }
            if start.elapsed() > Duration::from_secs(120) {
                return Err(std::io::Error::other(
                    "the private RabbitMQ node did not listen within 120 s",
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        n.ctl(&["await_startup", "--timeout", "90"])?;
        if let Some(p) = tls_port {
            wait_port(p, true, Duration::from_secs(30))?;
        }
        Ok(n)
    }

    fn ctl(&self, args: &[&str]) -> std::io::Result<()> {
        run(
            Command::new(Path::new(RABBIT_BIN).join("rabbitmqctl"))
                .env("HOME", self.dir.path().join("home"))
                .env("ERL_EPMD_ADDRESS", "127.0.0.1")
                .args(["-n", &self.node])
                .args(args),
            &format!("rabbitmqctl {}", args.join(" ")),
        )
    }

    /// The AMQP URL (user guest; the password goes in the gateway's config separately).
    pub fn url(&self) -> String {
        format!("amqp://guest@127.0.0.1:{}/%2f", self.port)
    }

    /// `rabbitmqctl stop_app`: the broker stops, connections drop, the node stays.
    pub fn stop_app(&self) -> std::io::Result<()> {
        self.ctl(&["stop_app"])?;
        wait_port(self.port, false, Duration::from_secs(30))
    }

    /// `rabbitmqctl start_app`, then wait for the listener.
    pub fn start_app(&self) -> std::io::Result<()> {
        self.ctl(&["start_app"])?;
        wait_port(self.port, true, Duration::from_secs(60))
    }
}

impl Drop for RabbitNode {
    fn drop(&mut self) {
        let _ = self.ctl(&["stop"]);
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn pg_bin() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("pg_ctl").exists())
        .collect();
    dirs.sort();
    dirs.pop()
}

/// A private PostgreSQL cluster on loopback (trust auth, database `test`).
pub struct PgCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
    /// `listen_addresses`: 127.0.0.1, plus 127.0.0.2 with TLS (an address the example server
    /// certificate does not name, for host-name checks).
    listen: &'static str,
}

/// TLS of a private cluster ([`PgCluster::start_tls`]): PEM files, copied into the cluster.
pub struct PgServerTls<'a> {
    /// The server certificate followed by its intermediates (concatenated in this order).
    pub cert_chain: &'a [&'a Path],
    pub key: &'a Path,
    /// CA of client certificates: when given, the role [`PgCluster::CERT_USER`] may log in
    /// only with a client certificate issued under it.
    pub client_ca: Option<&'a Path>,
}

impl PgCluster {
    /// Whether a private cluster can be made here (PostgreSQL's binaries, `runuser`, root).
    pub fn available() -> bool {
        pg_bin().is_some() && Path::new("/usr/sbin/runuser").exists() && is_root()
    }

    /// The role that must present a client certificate (with [`PgServerTls::client_ca`]).
    pub const CERT_USER: &'static str = "certuser";

    /// `initdb` a cluster, start it on a free port and create the database `test`.
    pub fn start() -> std::io::Result<PgCluster> {
        Self::start_with(None)
    }

    /// [`PgCluster::start`] with `ssl = on`: TCP connections must use TLS (`hostnossl` is
    /// rejected), on 127.0.0.1 and 127.0.0.2.
    pub fn start_tls(tls: &PgServerTls<'_>) -> std::io::Result<PgCluster> {
        Self::start_with(Some(tls))
    }

    fn start_with(tls: Option<&PgServerTls<'_>>) -> std::io::Result<PgCluster> {
        let bin = pg_bin().ok_or_else(|| std::io::Error::other("no PostgreSQL binaries"))?;
        let dir = tempfile::Builder::new().prefix("gwfaults-pg").tempdir()?;
        let status = Command::new("chown")
            .args(["-R", "postgres"])
            .arg(dir.path())
            .status()?;
        if !status.success() {
            return Err(std::io::Error::other("chown postgres failed"));
        }
        let port = free_port()?;
        let c = PgCluster {
            dir,
            bin,
            port,
            listen: if tls.is_some() {
                "127.0.0.1,127.0.0.2"
            } else {
                "127.0.0.1"
            },
        };
        c.as_postgres("initdb", |cmd| {
            cmd.arg("-D")
                .arg(c.data())
                .args(["-A", "trust", "-U", "postgres", "--no-sync"]);
        })?;
        if let Some(tls) = tls {
            c.configure_tls(tls)?;
        }
        c.start_server()?;
        // Through the socket: with TLS on, TCP would need it too.
        let socket = c.dir.path().display().to_string();
        c.as_postgres("createdb", |cmd| {
            cmd.args([
                "-h",
                &socket,
                "-p",
                &port.to_string(),
                "-U",
                "postgres",
                "test",
            ]);
        })?;
        if tls.is_some_and(|t| t.client_ca.is_some()) {
            c.as_postgres("psql", |cmd| {
                cmd.args(["-h", &socket, "-p", &port.to_string(), "-U", "postgres"])
                    .args(["-d", "test", "-v", "ON_ERROR_STOP=1", "-c"])
                    .arg(format!("CREATE ROLE {} LOGIN SUPERUSER", Self::CERT_USER));
            })?;
        }
        Ok(c)
    }

    /// Copy the certificate files into the data directory (owned by `postgres`, key 0600)
    /// and turn TLS on; `pg_hba.conf` refuses TCP without TLS.
    fn configure_tls(&self, tls: &PgServerTls<'_>) -> std::io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let data = self.data();
        let mut chain = Vec::new();
        for part in tls.cert_chain {
            chain.extend(std::fs::read(part)?);
        }
        std::fs::write(data.join("server.crt"), chain)?;
        std::fs::copy(tls.key, data.join("server.key"))?;
        std::fs::set_permissions(
            data.join("server.key"),
            std::fs::Permissions::from_mode(0o600),
        )?;
        let mut conf =
            String::from("\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
        let mut hba = String::from("local all all trust\n");
        if let Some(ca) = tls.client_ca {
            std::fs::copy(ca, data.join("client-ca.crt"))?;
            conf.push_str("ssl_ca_file = 'client-ca.crt'\n");
            hba.push_str(&format!(
                "hostssl all {} 127.0.0.0/8 trust clientcert=verify-ca\n",
                Self::CERT_USER
            ));
        }
        hba.push_str("hostssl all all 127.0.0.0/8 trust\nhostnossl all all 0.0.0.0/0 reject\n");
        let mut pg_conf = std::fs::read_to_string(data.join("postgresql.conf"))?;
        pg_conf.push_str(&conf);
        std::fs::write(data.join("postgresql.conf"), pg_conf)?;
        std::fs::write(data.join("pg_hba.conf"), hba)?;
        run(
            Command::new("chown").args(["-R", "postgres"]).arg(&data),
            "chown postgres",
        )
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn as_postgres(&self, tool: &str, f: impl FnOnce(&mut Command)) -> std::io::Result<()> {
        let mut cmd = Command::new("/usr/sbin/runuser");
        cmd.args(["-u", "postgres", "--"]).arg(self.bin.join(tool));
        f(&mut cmd);
        run(&mut cmd, tool)
    }

    fn start_server(&self) -> std::io::Result<()> {
        let opts = format!(
            "-p {} -k {} -c listen_addresses={} -c fsync=off",
            self.port,
            self.dir.path().display(),
            self.listen,
        );
        let log = self.dir.path().join("server.log");
        self.as_postgres("pg_ctl", |cmd| {
            cmd.arg("-D")
                .arg(self.data())
                .args(["-o", &opts, "-l"])
                .arg(&log)
                .args(["-w", "-t", "60", "start"]);
        })?;
        wait_port(self.port, true, Duration::from_secs(30))
    }

    /// The URL with `schema` (the gateway's PostgreSQL store URL form).
    pub fn url(&self, schema: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/test?schema={schema}",
            self.port
        )
    }

    /// Stop the server (`immediate`: like a crash, no checkpoint).
    pub fn stop(&self) -> std::io::Result<()> {
        self.as_postgres("pg_ctl", |cmd| {
            cmd.arg("-D")
                .arg(self.data())
                .args(["-m", "immediate", "-w", "-t", "60", "stop"]);
        })?;
        wait_port(self.port, false, Duration::from_secs(30))
    }

    /// Start it again after [`PgCluster::stop`].
    pub fn start_again(&self) -> std::io::Result<()> {
        self.start_server()
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}
