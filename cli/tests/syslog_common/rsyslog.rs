//! A real rsyslogd for the tests: started in the foreground with a generated configuration,
//! fed through its imtcp input, forwarding with the action a test gives it.
//!
//! rsyslogd comes from the Debian packages `rsyslog` and `rsyslog-relp` (and `rsyslog-gnutls`
//! for TLS), which `scripts/test` installs. Without it the tests fail, saying so, unless
//! `MENISCUS_SKIP_RSYSLOG=1`.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::read_file;

const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The rsyslogd binary; `None` (after saying why) when it is missing and
/// `MENISCUS_SKIP_RSYSLOG=1` allows skipping.
pub fn rsyslogd() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|dir| dir.join("rsyslogd"))
        .find(|p| p.is_file());
    if found.is_none() {
        let why = "rsyslogd is not installed (Debian packages rsyslog, rsyslog-relp and \
                   rsyslog-gnutls; scripts/test installs them)";
        if std::env::var("MENISCUS_SKIP_RSYSLOG").as_deref() == Ok("1") {
            eprintln!("skipping: {why}; MENISCUS_SKIP_RSYSLOG=1");
            return None;
        }
        panic!("{why}. Install them, or set MENISCUS_SKIP_RSYSLOG=1 to skip this test.");
    }
    found
}

/// A port that was free a moment ago, for rsyslog's input.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding a free port");
    listener.local_addr().expect("its address").port()
}

/// A running `rsyslogd -n`; killed when dropped.
pub struct Rsyslog {
    child: Child,
    /// Its imtcp input: LF-framed syslog lines written here are forwarded.
    pub input: SocketAddr,
    /// Its stdout and stderr.
    pub log: PathBuf,
}

impl Rsyslog {
    /// Starts `rsyslogd` from `binary` in `dir/name`, loading `modules` (for example
    /// `module(load="omrelp")`), with an imtcp input whose messages go to `action`. The
    /// configuration is checked with `rsyslogd -N1` first, so a missing module fails at once.
    pub fn start(binary: &Path, dir: &Path, name: &str, modules: &str, action: &str) -> Rsyslog {
        let home = dir.join(name);
        let work = home.join("work");
        std::fs::create_dir_all(&work).expect("creating rsyslog's work directory");
        let port = free_port();
        let conf = home.join("rsyslog.conf");
        let text = format!(
            r#"global(workDirectory="{work}" maxMessageSize="8k")
main_queue(queue.size="300000")
module(load="imtcp")
{modules}
input(type="imtcp" port="{port}" address="127.0.0.1" ruleset="forward")
ruleset(name="forward") {{
{action}
}}
"#,
            work = work.display(),
        );
        std::fs::write(&conf, text).expect("writing rsyslog.conf");
        let check = Command::new(binary)
            .args(["-N1", "-f"])
            .arg(&conf)
            .output()
            .expect("running rsyslogd -N1");
        assert!(
            check.status.success(),
            "rsyslogd rejects its configuration (is rsyslog-relp/rsyslog-gnutls installed?):\n{}{}",
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );
        let log = home.join("rsyslogd.log");
        let out = File::create(&log).expect("creating rsyslogd.log");
        let child = Command::new(binary)
            .args(["-n", "-f"])
            .arg(&conf)
            .arg("-i")
            .arg(home.join("rsyslogd.pid"))
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log handle"))
            .stderr(out)
            .spawn()
            .expect("spawning rsyslogd");
        let rsyslog = Rsyslog {
            child,
            input: SocketAddr::from(([127, 0, 0, 1], port)),
            log,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        while TcpStream::connect(rsyslog.input).is_err() {
            assert!(
                Instant::now() < deadline,
                "rsyslogd's imtcp input did not open; its log:\n{}",
                rsyslog.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        rsyslog
    }

    /// rsyslogd's output so far.
    pub fn log(&self) -> String {
        read_file(&self.log)
    }
}

/// Writes `lines` to the imtcp input at `input`, each LF-terminated, on one connection.
pub fn send_lines<I, S>(input: SocketAddr, lines: I)
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let stream = TcpStream::connect(input).expect("connecting to rsyslog's imtcp");
    let mut writer = BufWriter::with_capacity(256 * 1024, stream);
    for line in lines {
        writer
            .write_all(line.as_ref().as_bytes())
            .expect("writing to rsyslog");
        writer.write_all(b"\n").expect("writing to rsyslog");
    }
    writer.flush().expect("writing to rsyslog");
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
