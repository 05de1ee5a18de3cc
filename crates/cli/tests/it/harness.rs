//! Running the real `trib` binary: commands, and nodes as child processes.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;
use trib_node::ledger::{Action, SignedTransaction, Transaction};
use trib_node::types::{Address, Amount, Canonical, SecretKey};

/// The binary under test.
pub const TRIB: &str = env!("CARGO_BIN_EXE_trib");

/// A temporary node home.
pub struct TestHome {
    _dir: tempfile::TempDir,
    pub root: PathBuf,
}

impl TestHome {
    /// Writes the tiny model to `<home>/models/tiny.gguf` and makes it the
    /// node's served base model (`base_model` in config.toml); returns it.
    pub fn serve_tiny_model(&self) -> PathBuf {
        use std::io::Write;
        let models = self.root.join("models");
        std::fs::create_dir_all(&models).unwrap();
        let model = models.join("tiny.gguf");
        crate::factory::tiny_model(&model);
        let mut cfg = File::options()
            .append(true)
            .open(self.root.join("config.toml"))
            .unwrap();
        writeln!(cfg, "base_model = {:?}", model.to_str().unwrap()).unwrap();
        model
    }

    /// Writes the tiny model to `<home>/models/tiny.gguf` (node jobs read
    /// base models only from the models directory) unless it is there;
    /// returns the name a job's `model.base` gives it.
    pub fn jobs_model(&self) -> &'static Path {
        let model = self.root.join("models").join("tiny.gguf");
        if !model.exists() {
            std::fs::create_dir_all(model.parent().unwrap()).unwrap();
            crate::factory::tiny_model(&model);
        }
        Path::new("tiny.gguf")
    }

    /// Lets node jobs train on files under `dir` (`[jobs] data_dirs`,
    /// appended to config.toml: make it the last edit of the file).
    pub fn allow_job_data(&self, dir: &Path) {
        use std::io::Write;
        let mut cfg = File::options()
            .append(true)
            .open(self.root.join("config.toml"))
            .unwrap();
        let dir = dir.canonicalize().unwrap();
        writeln!(cfg, "\n[jobs]\ndata_dirs = [{:?}]", dir.to_str().unwrap()).unwrap();
    }

    /// Registers `<home>/models/tiny.gguf` on the ledger as `tiny` (MIT),
    /// signed by the producer.
    pub fn register_tiny(&self, n: [&str; 2]) {
        self.ok(&[
            "models",
            "register",
            "tiny",
            "--model",
            "tiny.gguf",
            "--licence",
            "MIT",
            "--key",
            "producer",
            n[0],
            n[1],
        ]);
    }

    /// A fresh directory (not yet initialised).
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("home");
        TestHome { _dir: dir, root }
    }

    /// A home initialised with a development genesis.
    pub fn init_dev() -> Self {
        let h = TestHome::new();
        h.ok(&["init", "--dev"]);
        h
    }

    /// `trib --home <root> args…`, with no inherited TRIB_* variables.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(TRIB);
        c.arg("--home").arg(&self.root).args(args);
        c.env_remove("TRIB_HOME")
            .env_remove("TRIB_NODE")
            .env_remove("TRIB_LISTEN")
            .env("TRIB_LOG", "warn");
        c.stdin(Stdio::null());
        c
    }

    /// Runs a command that must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cmd(args).output().unwrap();
        assert!(
            out.status.success(),
            "trib {args:?} failed:\nstdout: {}\nstderr: {}",
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    /// Runs a command that must fail; returns its stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.cmd(args).output().unwrap();
        assert!(
            !out.status.success(),
            "trib {args:?} unexpectedly succeeded:\n{}",
            text(&out.stdout)
        );
        text(&out.stderr)
    }

    /// Runs a command with `--json` that must succeed; parses stdout.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.push("--json");
        let s = self.ok(&a);
        serde_json::from_str(&s)
            .unwrap_or_else(|e| panic!("trib {args:?} --json printed non-JSON ({e}): {s}"))
    }

    /// A keystore key, loaded directly (for hand-crafted transactions).
    pub fn key(&self, name: &str) -> SecretKey {
        trib_node::Keystore::open(self.root.join("keys"))
            .unwrap()
            .load(name, None)
            .unwrap()
    }

    /// The address of a keystore key.
    pub fn address(&self, name: &str) -> Address {
        self.key(name).address()
    }
}

/// Lossy UTF-8.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Output of a finished command.
#[allow(dead_code)]
pub fn output(c: &mut Command) -> Output {
    c.output().unwrap()
}

/// A `trib node` child process on a free port.
pub struct NodeProc {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
}

impl NodeProc {
    /// Starts `trib node` on 127.0.0.1:0 and waits for its "listening on" line.
    pub fn start(home: &TestHome, block_interval_ms: u64) -> Self {
        let log = File::options()
            .create(true)
            .append(true)
            .open(home.root.join("node.log"))
            .unwrap();
        let mut child = home
            .cmd(&[
                "node",
                "--listen",
                "127.0.0.1:0",
                "--block-interval-ms",
                &block_interval_ms.to_string(),
            ])
            .env("TRIB_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            for _ in lines {} // keep draining
        });
        let line = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                let log = std::fs::read_to_string(home.root.join("node.log")).unwrap_or_default();
                panic!("node did not start; log:\n{log}");
            }
        };
        let url = line
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        NodeProc { child, url }
    }

    /// SIGKILL, and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM (graceful shutdown); returns whether the node exited with 0.
    pub fn terminate(&mut self) -> bool {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success());
        self.child.wait().unwrap().success()
    }

    /// `--node <url>` arguments.
    pub fn node_args(&self) -> [&str; 2] {
        ["--node", &self.url]
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A blocking HTTP client with a short timeout.
pub fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// `method url` with `body`, signed by `key` (the `x-trib-*` headers over
/// the method, the URL's path and query and the body); returns (status,
/// body as JSON, or as a JSON string when it is not JSON).
pub fn signed(method: &str, url: &str, body: &[u8], key: &SecretKey) -> (u16, Value) {
    signed_with_type(method, url, None, body, key)
}

/// [`signed`] with a JSON body (sent as `application/json`, which the
/// node's JSON routes require).
pub fn signed_json(method: &str, url: &str, body: &Value, key: &SecretKey) -> (u16, Value) {
    let bytes = serde_json::to_vec(body).unwrap();
    signed_with_type(method, url, Some("application/json"), &bytes, key)
}

fn signed_with_type(
    method: &str,
    url: &str,
    content_type: Option<&str>,
    body: &[u8],
    key: &SecretKey,
) -> (u16, Value) {
    let parsed = reqwest::Url::parse(url).unwrap();
    let path = match parsed.query() {
        Some(q) => format!("{}?{q}", parsed.path()),
        None => parsed.path().to_string(),
    };
    let mut req = http()
        .request(method.parse().unwrap(), url)
        .body(body.to_vec());
    if let Some(t) = content_type {
        req = req.header("content-type", t);
    }
    for (k, v) in
        trib_client::signed_read::sign(key, method, &path, body, trib_client::signed_read::now())
    {
        req = req.header(k, v);
    }
    let r = req.send().unwrap();
    let status = r.status().as_u16();
    let text = r.text().unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// GET a JSON document; returns (status, body).
pub fn get_json(url: &str) -> (u16, Value) {
    let r = http().get(url).send().unwrap();
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}

/// POSTs the hex of a signed transaction; returns (status, body).
pub fn post_tx(node_url: &str, stx: &SignedTransaction) -> reqwest::Result<(u16, Value)> {
    let r = http()
        .post(format!("{node_url}/v1/tx"))
        .header("content-type", "text/plain")
        .body(hex::encode(stx.encode()))
        .send()?;
    let status = r.status().as_u16();
    Ok((status, r.json().unwrap_or(Value::Null)))
}

/// A signed transfer of `amount` from `key` with `nonce` on the dev chain.
pub fn transfer(key: &SecretKey, nonce: u64, to: Address, amount: Amount) -> SignedTransaction {
    Transaction {
        chain_id: "tributary-dev".into(),
        sender: key.public_key(),
        nonce,
        fee: Amount::parse_open("0.001").unwrap(),
        action: Action::Transfer { to, amount },
    }
    .sign(key)
}

/// Base units of an amount in a JSON document.
pub fn units(v: &Value) -> u128 {
    v.as_str()
        .unwrap_or_else(|| panic!("not an amount: {v}"))
        .parse()
        .unwrap()
}

/// Whether `path` has mode 0600.
#[cfg(unix)]
pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}
