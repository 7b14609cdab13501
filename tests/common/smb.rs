//! A real Samba for the tests: `smbd` on a loopback port serving users'
//! FUSE mounts with the configuration `markbase share` writes, its
//! accounts, and `smbclient` to drive it. Needs Samba (`.ci/run` installs
//! it) and root.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::*;

pub const PASSWORD: &str = "markbase-test";

/// `smbd` serving a configuration, stopped (with every process it started)
/// when dropped; a client of it through `Deref`.
pub struct Smbd {
    child: Child,
    client: SmbClient,
}

/// `smbclient` of an `smbd` on a loopback port.
pub struct SmbClient {
    pub conf: PathBuf,
    pub port: u16,
}

impl Smbd {
    pub fn start(conf: &Path, port: u16) -> Smbd {
        use std::os::unix::process::CommandExt;
        let smbd = installed("smbd")
            .or_else(|| Some(PathBuf::from("/usr/sbin/smbd")).filter(|p| p.is_file()))
            .expect("smbd is not installed: apt-get install samba smbclient");
        let child = Command::new(smbd)
            .args(["--foreground", "--no-process-group", "--configfile"])
            .arg(conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // A process group of its own, so that drop stops its helpers too.
            .process_group(0)
            .spawn()
            .expect("start smbd");
        let s = Smbd {
            child,
            client: SmbClient {
                conf: conf.to_path_buf(),
                port,
            },
        };
        let until = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < until, "smbd did not listen on {port}");
            std::thread::sleep(Duration::from_millis(100));
        }
        s
    }
}

impl Smbd {
    /// Have `smbd` read its configuration again, and wait until `share`
    /// answers `account`.
    pub fn reload(&self, share: &str, account: &str) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::SIGHUP).expect("SIGHUP smbd");
        let until = Instant::now() + Duration::from_secs(30);
        while !self.client(share, account, "ls").status.success() {
            assert!(Instant::now() < until, "{share} did not appear");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl std::ops::Deref for Smbd {
    type Target = SmbClient;

    fn deref(&self) -> &SmbClient {
        &self.client
    }
}

impl SmbClient {
    /// Run `commands` in `share` as `account`.
    pub fn client(&self, share: &str, account: &str, commands: &str) -> Output {
        Command::new(installed("smbclient").expect("smbclient is not installed"))
            .arg(format!("//127.0.0.1/{share}"))
            .args(["-p", &self.port.to_string(), "-m", "SMB3", "-U"])
            .arg(format!("{account}%{PASSWORD}"))
            .arg("--configfile")
            .arg(&self.conf)
            .args(["-c", commands])
            .output()
            .expect("run smbclient")
    }

    /// As [`SmbClient::client`], and it must succeed.
    pub fn ok(&self, share: &str, account: &str, commands: &str) -> String {
        let out = self.client(share, account, commands);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && !text.contains("NT_STATUS_"),
            "smbclient {share} {commands:?}: {text}"
        );
        text
    }
}

impl Drop for Smbd {
    fn drop(&mut self) {
        let pgid = nix::unistd::Pid::from_raw(-(self.child.id() as i32));
        let _ = nix::sys::signal::kill(pgid, nix::sys::signal::SIGTERM);
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = nix::sys::signal::kill(pgid, nix::sys::signal::SIGKILL);
        let _ = self.child.wait();
    }
}

/// A Samba account for `account` (a system account) in `conf`'s database.
pub fn add_account(conf: &Path, account: &str) {
    let mut c = Command::new(installed("smbpasswd").expect("smbpasswd is not installed"))
        .arg("-c")
        .arg(conf)
        .args(["-a", "-s", account])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run smbpasswd");
    c.stdin
        .take()
        .expect("stdin")
        .write_all(format!("{PASSWORD}\n{PASSWORD}\n").as_bytes())
        .expect("password");
    let out = c.wait_with_output().expect("smbpasswd");
    assert_success(&out);
}

/// Libraries mounted with --allow-other under one folder and shared by
/// smbd with `markbase share`'s configuration: `users` are (user, Samba
/// account), the first made from the fixture. Fields drop in order: Samba
/// stops, then the mounts go, then the folder.
pub struct Studio {
    pub smbd: Smbd,
    _mounts: MountBase,
    pub base: PathBuf,
    pub lib: TestLib,
}

pub fn studio(users: &[(&str, &str)]) -> Studio {
    let lib = TestLib::fixture(users[0].0, Some(60), false);
    let mut toml = String::new();
    for (i, (user, account)) in users.iter().enumerate() {
        if i > 0 {
            make_library(&lib.data, user, Some(60), false);
        }
        toml.push_str(&format!("[users.{user}]\nsmb_users = [\"{account}\"]\n"));
    }
    std::fs::write(lib.data.join("markbase.toml"), toml).expect("markbase.toml");
    let base = lib.tmp.path().join("drives");
    std::fs::create_dir_all(&base).expect("mkdir");
    let mounts = MountBase { dir: base.clone() };
    let b = base.to_string_lossy().into_owned();
    assert_success(&lib.markbase(&["fuse", "--mount", "--all", "--allow-other", "--dir", &b]));
    let port = free_port();
    let state = lib.tmp.path().join("samba");
    let out = lib.markbase(&[
        "share",
        "--all",
        "--dir",
        &b,
        "--smb-port",
        &port.to_string(),
        "--state-dir",
        &state.to_string_lossy(),
    ]);
    assert_success(&out);
    let said = String::from_utf8_lossy(&out.stdout);
    let names: Vec<String> = users.iter().map(|(u, _)| format!("MarkBase_{u}")).collect();
    assert!(said.contains(&names.join(", ")), "{said}");
    let conf = state.join("smb.conf");
    for (_, account) in users {
        add_account(&conf, account);
    }
    let smbd = Smbd::start(&conf, port);
    Studio {
        smbd,
        _mounts: mounts,
        base,
        lib,
    }
}

impl Studio {
    /// Stop Samba, then unmount (each mount flushing first); the library.
    pub fn stop(self) -> TestLib {
        let Studio {
            smbd, _mounts, lib, ..
        } = self;
        drop(smbd);
        drop(_mounts);
        lib
    }

    pub fn drive(&self, user: &str) -> PathBuf {
        self.base.join(format!("MarkBase_{user}"))
    }

    /// Write `bytes` to `remote` (a file or `file:stream`) in alice's share,
    /// over SMB.
    pub fn put_alice(&self, bytes: &[u8], remote: &str) {
        let local = self.lib.tmp.path().join("put.in");
        std::fs::write(&local, bytes).expect("write");
        let put = format!("put {} {remote}", local.display());
        self.smbd.ok("MarkBase_alice", "root", &put);
    }

    /// Read `remote` (a file or `file:stream`) from alice's share, over SMB.
    pub fn get_alice(&self, remote: &str) -> Vec<u8> {
        let local = self.lib.tmp.path().join("get.out");
        let get = format!("get {remote} {}", local.display());
        self.smbd.ok("MarkBase_alice", "root", &get);
        std::fs::read(&local).expect("read")
    }
}
