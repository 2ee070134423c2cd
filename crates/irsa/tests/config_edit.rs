//! Edits of irsa.yaml (`bind`, `unbind`, `keys rotate`) never lose another
//! edit, write through a symlink and keep the file's mode.
//!
//! A named pipe given as `bind --policy-file` holds `bind` between reading
//! irsa.yaml and writing it, so the tests change the file at exactly that
//! moment, without sleeps.
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;

const POLICY: &str = r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "*"}]}"#;

fn init(dir: &Path) {
    let out = run_in(
        dir,
        &[
            "init",
            "--cluster",
            "prod",
            "--issuer",
            "https://oidc.example.com/prod",
            "--dir",
            ".",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn bindings(path: &Path) -> Vec<String> {
    irsa_core::IrsaConfig::from_yaml(&fs::read_to_string(path).unwrap())
        .unwrap()
        .bindings
        .iter()
        .map(|b| format!("{}/{}", b.namespace, b.service_account))
        .collect()
}

/// `irsa bind -n app -s SA` reading its policy from a new named pipe.
fn bind_through_pipe(dir: &Path, sa: &str) -> (Child, PathBuf) {
    let pipe = dir.join(format!("{sa}-policy.json"));
    let made = Command::new("mkfifo").arg(&pipe).status().unwrap();
    assert!(made.success(), "mkfifo");
    let child = irsa()
        .current_dir(dir)
        .args(["bind", "-n", "app", "-s", sa, "--no-plan", "--policy-file"])
        .arg(&pipe)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    (child, pipe)
}

/// Opens the pipe for writing, which returns once `bind` opened it for
/// reading, that is once it has read irsa.yaml. Bounded wait.
fn wait_until_read(pipe: &Path) -> fs::File {
    let (tx, rx) = mpsc::channel();
    let path = pipe.to_path_buf();
    std::thread::spawn(move || {
        let _ = tx.send(fs::OpenOptions::new().write(true).open(path));
    });
    rx.recv_timeout(Duration::from_secs(30))
        .expect("bind never opened its policy file")
        .unwrap()
}

fn finish(mut writer: fs::File, child: Child) -> Output {
    writer.write_all(POLICY.as_bytes()).unwrap();
    drop(writer);
    child.wait_with_output().unwrap()
}

/// Regression: `bind` read irsa.yaml, then wrote its edit over whatever was
/// there by then, so a change made in between was silently lost.
#[test]
fn a_change_made_while_bind_runs_is_kept_and_bind_refuses() {
    let t = tempdir();
    let d = t.path();
    init(d);
    let (child, pipe) = bind_through_pipe(d, "first");
    let writer = wait_until_read(&pipe);
    // Someone edits irsa.yaml by hand meanwhile.
    let by_hand = fs::read_to_string(d.join("irsa.yaml")).unwrap().replace(
        "bindings: []",
        "bindings:\n- namespace: web\n  serviceAccount: site\n",
    );
    fs::write(d.join("irsa.yaml"), &by_hand).unwrap();
    let out = finish(writer, child);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("changed on disk since irsa read it") && err.contains("run the command again"),
        "{err}"
    );
    assert_eq!(
        fs::read_to_string(d.join("irsa.yaml")).unwrap(),
        by_hand,
        "the hand edit is kept as it was"
    );
    // Run again: applied on top of the hand edit.
    let out = run_in(
        d,
        &[
            "bind",
            "-n",
            "app",
            "-s",
            "first",
            "--no-plan",
            "--policy-arn",
            "arn:aws:iam::aws:policy/ReadOnlyAccess",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(bindings(&d.join("irsa.yaml")), ["web/site", "app/first"]);
}

/// Regression: two irsa commands editing irsa.yaml at once each wrote their
/// own version; the later write dropped the other's binding. Now the second
/// waits for the first (advisory lock) and edits its result.
#[test]
fn two_binds_at_once_keep_both_bindings() {
    let t = tempdir();
    let d = t.path();
    init(d);
    let (first, pipe) = bind_through_pipe(d, "first");
    let writer = wait_until_read(&pipe);
    let mut second = irsa()
        .current_dir(d)
        .args(["bind", "-n", "app", "-s", "second", "--no-plan"])
        .args(["--policy-arn", "arn:aws:iam::aws:policy/ReadOnlyAccess"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Give the second bind time to finish, were it not waiting for the first.
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline && second.try_wait().unwrap().is_none() {
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = finish(writer, first);
    assert!(out.status.success(), "first: {}", stderr(&out));
    let out = second.wait_with_output().unwrap();
    assert!(out.status.success(), "second: {}", stderr(&out));
    let mut seen = bindings(&d.join("irsa.yaml"));
    seen.sort();
    assert_eq!(seen, ["app/first", "app/second"], "no binding lost");
}

/// Regression: editing a symlinked irsa.yaml replaced the link with a
/// regular file, so the shared file it pointed at never saw the edit.
#[test]
fn a_symlinked_config_is_written_through_by_bind_unbind_and_rotate() {
    let t = tempdir();
    let d = t.path();
    fs::create_dir(d.join("shared")).unwrap();
    init(&d.join("shared"));
    fs::create_dir(d.join("b")).unwrap();
    std::os::unix::fs::symlink("../shared/irsa.yaml", d.join("b/irsa.yaml")).unwrap();
    fs::create_dir(d.join("b/keys")).unwrap();
    for f in ["sa-signer.key", "sa-signer.pub"] {
        fs::copy(d.join("shared/keys").join(f), d.join("b/keys").join(f)).unwrap();
    }
    let link = d.join("b/irsa.yaml");
    let target = d.join("shared/irsa.yaml");
    let still_linked = |step: &str| {
        let meta = fs::symlink_metadata(&link).unwrap();
        assert!(
            meta.file_type().is_symlink(),
            "{step}: the link was replaced"
        );
        assert_eq!(
            fs::read_link(&link).unwrap(),
            Path::new("../shared/irsa.yaml"),
            "{step}"
        );
    };
    let arn = "arn:aws:iam::aws:policy/ReadOnlyAccess";
    let args = [
        "bind",
        "-f",
        "b/irsa.yaml",
        "-n",
        "app",
        "-s",
        "x",
        "--no-plan",
    ];
    let out = run_in(d, &[&args[..], &["--policy-arn", arn]].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    still_linked("bind");
    assert_eq!(bindings(&target), ["app/x"]);

    let out = run_in(
        d,
        &["keys", "rotate", "--stage", "publish", "-f", "b/irsa.yaml"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    still_linked("keys rotate");
    assert!(
        fs::read_to_string(&target).unwrap().contains("state: next"),
        "the target holds the next key"
    );

    let out = run_in(
        d,
        &[
            "unbind",
            "-f",
            "b/irsa.yaml",
            "-n",
            "app",
            "-s",
            "x",
            "--no-plan",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    still_linked("unbind");
    assert!(bindings(&target).is_empty());
    for dir in ["b", "shared"] {
        let left: Vec<String> = fs::read_dir(d.join(dir))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("irsa-tmp"))
            .collect();
        assert!(left.is_empty(), "temporary files left in {dir}: {left:?}");
    }
}

/// Regression: every edit rewrote irsa.yaml with mode 0644, whatever the
/// owner had set (e.g. 0600 or 0640 for a config kept private).
#[test]
fn edits_keep_the_config_mode() {
    let t = tempdir();
    let d = t.path();
    init(d);
    let config = d.join("irsa.yaml");
    fs::set_permissions(&config, fs::Permissions::from_mode(0o640)).unwrap();
    let out = run_in(
        d,
        &[
            "bind",
            "-n",
            "app",
            "-s",
            "x",
            "--no-plan",
            "--policy-arn",
            "arn:aws:iam::aws:policy/ReadOnlyAccess",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(mode(&config), 0o640, "bind");
    fs::set_permissions(&config, fs::Permissions::from_mode(0o600)).unwrap();
    let out = run_in(d, &["keys", "rotate", "--stage", "publish"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(mode(&config), 0o600, "keys rotate");
    let out = run_in(d, &["unbind", "-n", "app", "-s", "x", "--no-plan"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(mode(&config), 0o600, "unbind");
}

/// `bind --account` takes a 12-digit account ID: a malformed one is refused,
/// naming the problem, before irsa.yaml is touched (it used to be written
/// into the printed role ARN as given). Without an account, the ARN shows
/// the placeholder for the user to fill in.
#[test]
fn bind_refuses_a_malformed_account_and_shows_the_placeholder() {
    let t = tempdir();
    let d = t.path();
    init(d);
    let before = fs::read_to_string(d.join("irsa.yaml")).unwrap();
    let bad = run_in(
        d,
        &[
            "bind",
            "-n",
            "app",
            "-s",
            "web",
            "--no-plan",
            "--account",
            "1234",
        ],
    );
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    assert!(
        stderr(&bad).contains("\"1234\" is not a 12-digit AWS account ID"),
        "{}",
        stderr(&bad)
    );
    assert_eq!(fs::read_to_string(d.join("irsa.yaml")).unwrap(), before);
    let good = run_in(d, &["bind", "-n", "app", "-s", "web", "--no-plan"]);
    assert!(good.status.success(), "{}", stderr(&good));
    assert!(
        stdout(&good).contains(
            "eks.amazonaws.com/role-arn: arn:aws:iam::<AWS_ACCOUNT_ID>:role/irsa/prod/prod-app-web"
        ),
        "{}",
        stdout(&good)
    );
}

/// Holds irsa.yaml's advisory lock (util-linux `flock`, the same flock(2)
/// lock irsa takes) until the returned child's stdin is closed.
fn hold_lock(dir: &Path) -> common::testbed::Killed {
    let holder = common::testbed::Killed(
        Command::new("flock")
            .arg(dir.join(".irsa.yaml.lock"))
            .arg("cat")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let free = Command::new("flock")
            .args(["-n"])
            .arg(dir.join(".irsa.yaml.lock"))
            .arg("true")
            .status()
            .unwrap();
        if !free.success() {
            return holder;
        }
        assert!(Instant::now() < deadline, "flock never took the lock");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn unbind_waits_for_an_edit_in_progress_and_keeps_it() {
    let t = tempdir();
    let d = t.path();
    init(d);
    let out = run_in(
        d,
        &["bind", "-n", "app", "-s", "first", "--no-plan"]
            .into_iter()
            .chain(["--policy-arn", "arn:aws:iam::aws:policy/ReadOnlyAccess"])
            .collect::<Vec<_>>(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    // Another edit holds the lock; unbind starts meanwhile.
    let mut holder = hold_lock(d);
    let unbind = irsa()
        .current_dir(d)
        .args(["unbind", "-n", "app", "-s", "first", "--no-plan"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The other edit writes its change, then releases the lock.
    let text = fs::read_to_string(d.join("irsa.yaml")).unwrap();
    let edited = text.replace(
        "bindings:\n",
        "bindings:\n- namespace: web\n  serviceAccount: site\n",
    );
    assert_ne!(edited, text, "the edit applies to {text}");
    fs::write(d.join("irsa.yaml"), &edited).unwrap();
    drop(holder.0.stdin.take());
    holder.0.wait().unwrap();
    let out = unbind.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        bindings(&d.join("irsa.yaml")),
        ["web/site"],
        "unbind edited the file as the other edit left it"
    );
}

#[test]
#[cfg_attr(
    not(feature = "online"),
    ignore = "reads the served JWKS over HTTPS: a full-build command"
)]
fn keys_rotate_refuses_a_file_changed_while_it_checked_the_jwks() {
    // init's issuer host, reached on 127.0.0.1 through --resolve.
    const HOST: &str = "oidc.example.com";
    let t = tempdir();
    let d = t.path();
    init(d);
    let out = run_in(d, &["keys", "rotate", "--stage", "publish"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // The issuer host serves the JWKS with the next key.
    let site = d.join("site");
    fs::create_dir_all(site.join("prod/openid/v1")).unwrap();
    fs::copy(
        d.join("issuer/openid/v1/jwks"),
        site.join("prod/openid/v1/jwks"),
    )
    .unwrap();
    let server = common::https::serve(site, &[HOST]);
    // --ca-cert is a named pipe: the switch reads it after it has read
    // irsa.yaml and before it writes its edit.
    let pipe = d.join("ca.pem");
    assert!(Command::new("mkfifo")
        .arg(&pipe)
        .status()
        .unwrap()
        .success());
    let switch = irsa()
        .current_dir(d)
        .args(["keys", "rotate", "--stage", "switch", "--ca-cert", "ca.pem"])
        .args(["--resolve", &format!("{HOST}={}", server.addr)])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let writer = wait_until_read(&pipe);
    let by_hand = format!(
        "# ops: rotate yearly\n{}",
        fs::read_to_string(d.join("irsa.yaml")).unwrap()
    );
    fs::write(d.join("irsa.yaml"), &by_hand).unwrap();
    let mut writer = writer;
    writer.write_all(server.ca_pem.as_bytes()).unwrap();
    drop(writer);
    let out = switch.wait_with_output().unwrap();
    assert!(
        stdout(&out).contains("publishes the next key"),
        "the check itself passed: {}{}",
        stdout(&out),
        stderr(&out)
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("changed on disk since irsa read it"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        fs::read_to_string(d.join("irsa.yaml")).unwrap(),
        by_hand,
        "the hand edit is kept and no key was switched"
    );
}
