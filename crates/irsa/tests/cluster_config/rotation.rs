//! `cluster config -o DIR --force` across a key rotation: the signing key's
//! file on the nodes keeps its name, so the kubeadm configuration does not
//! change (only the content of the key files does), and key files an
//! earlier rendering left in `DIR/pki` are named, not silently kept.

use std::fs;
use std::path::Path;

use super::common::*;
use super::{bundle, ok, TestBundle};

/// `keys rotate --stage STAGE` with no cluster to observe (the switch's
/// JWKS check and the retire's observation have their own tests).
fn rotate(b: &TestBundle, stage: &str) {
    let file = b.file();
    let mut args = vec!["keys", "rotate", "-f", &file, "--stage", stage];
    match stage {
        "switch" => args.push("--force"),
        "retire" => args.extend([
            "--assume-rolled-out",
            "--max-token-lifetime",
            "0",
            "--margin",
            "0",
        ]),
        _ => {}
    }
    let out = irsa()
        .current_dir(&b.dir)
        .args(&args)
        .env("KUBECONFIG", b.dir.join("no-such-kubeconfig"))
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .unwrap();
    assert!(out.status.success(), "{stage}: {}", stderr(&out));
}

/// The kid of the private key in `path`.
fn private_kid(path: &Path) -> String {
    let key = irsa_core::parse::parse_private_key(&fs::read(path).unwrap()).unwrap();
    key.public_key().kid().to_string()
}

fn active_private_kid(b: &TestBundle) -> String {
    let cfg = irsa_core::IrsaConfig::from_yaml(&fs::read_to_string(b.path("irsa.yaml")).unwrap())
        .unwrap();
    private_kid(&b.path(cfg.active_key().unwrap().private_key.as_ref().unwrap()))
}

#[test]
fn the_kubeadm_configuration_stays_the_same_across_a_rotation() {
    let t = tempdir();
    let b = bundle(t.path(), false);
    let out = b.dir.join("out");
    let out_arg = out.to_str().unwrap();
    let render = || {
        ok(&b, &["--flavour", "kubeadm", "-o", out_arg, "--force"]);
        fs::read_to_string(out.join("kubeadm-config.yaml")).unwrap()
    };
    let first = render();
    assert!(
        first.contains("/etc/kubernetes/pki/irsa/sa-signer.key"),
        "{first}"
    );
    for stage in ["publish", "switch", "retire"] {
        rotate(&b, stage);
        assert_eq!(render(), first, "kubeadm-config.yaml after {stage}");
        assert_eq!(
            private_kid(&out.join("pki/sa-signer.key")),
            active_private_kid(&b),
            "pki/sa-signer.key holds the active key after {stage}"
        );
        let notes = fs::read_to_string(out.join("NOTES.txt")).unwrap();
        assert!(
            notes.contains("this configuration stays the same")
                && notes.contains("switch: sa-signer.key"),
            "{notes}"
        );
    }
    let mut names: Vec<String> = fs::read_dir(out.join("pki"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["sa-signer.key", "service-account-keys.pem"],
        "no stale files"
    );
}

#[test]
fn a_re_render_names_the_key_files_it_no_longer_writes() {
    let t = tempdir();
    let b = bundle(t.path(), false);
    let out = b.dir.join("out");
    let out_arg = out.to_str().unwrap();
    let render = |args: &[&str]| {
        let mut all = vec!["--flavour", "flags", "-o", out_arg, "--force"];
        all.extend_from_slice(args);
        let o = super::cluster_config(&b, &all);
        assert!(o.status.success(), "{}", stderr(&o));
        stderr(&o)
    };
    render(&[]);
    // A signing key file named after its key, as an older irsa wrote it.
    fs::write(out.join("pki/sa-signer-20260101-000000.key"), "old").unwrap();
    for stage in ["publish", "switch", "retire"] {
        rotate(&b, stage);
    }
    let said = render(&[]);
    let notes = fs::read_to_string(out.join("NOTES.txt")).unwrap();
    for stale in ["sa-signer-20260101-000000.key", "sa-signer.pub"] {
        assert!(
            said.contains(&format!("pki/{stale} is not part of this rendering")),
            "{stale}: {said}"
        );
        assert!(
            notes.contains(&format!("  pki/{stale}\n")),
            "{stale}: {notes}"
        );
        assert!(out.join("pki").join(stale).exists(), "named, not deleted");
    }
    assert!(notes.contains("Do not copy them to the nodes"), "{notes}");
    let flags = fs::read_to_string(out.join("kube-apiserver.flags")).unwrap();
    assert!(
        flags.contains("--service-account-signing-key-file=/etc/kubernetes/pki/irsa/sa-signer.key"),
        "{flags}"
    );
    assert!(
        !flags.contains("pki/irsa/sa-signer.pub"),
        "retired key left out: {flags}"
    );
}
