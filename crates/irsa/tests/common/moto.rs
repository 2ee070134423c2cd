//! A real AWS API emulator for tests: `moto_server` (PyPI `moto[server]`,
//! installed by scripts/test) on a free 127.0.0.1 port; killed on drop.
#![allow(dead_code, clippy::unwrap_used)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A running moto server.
pub struct Moto {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
}

impl Moto {
    /// Starts moto with AWS managed policies loaded.
    pub fn start() -> Self {
        Self::start_env(true, &[])
    }

    /// Starts moto; with `managed_policies`, IAM has AWS's managed policies
    /// (`MOTO_IAM_LOAD_MANAGED_POLICIES=true`), else none of them exists.
    pub fn start_with(managed_policies: bool) -> Self {
        Self::start_env(managed_policies, &[])
    }

    /// Starts moto recording every request (headers and form body) as JSON
    /// lines into `path` (moto's recorder).
    pub fn start_recording(path: &std::path::Path) -> Self {
        let path = path.display().to_string();
        Self::start_env(
            true,
            &[
                ("MOTO_RECORDER_FILEPATH", path.as_str()),
                ("MOTO_ENABLE_RECORDING", "true"),
            ],
        )
    }

    fn start_env(managed_policies: bool, env: &[(&str, &str)]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // `python3 -m moto.server` is moto_server without relying on PATH shims.
        let child = Command::new("python3")
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .env(
                "MOTO_IAM_LOAD_MANAGED_POLICIES",
                if managed_policies { "true" } else { "false" },
            )
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 runs (scripts/test installs moto[server])");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto_server did not start in 30 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        }
    }

    /// Environment for an irsa process talking to this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_REGION", "eu-west-1".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
            ("AWS_CONFIG_FILE", "/nonexistent".into()),
            ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent".into()),
        ]
    }

    /// Runs the irsa binary in `dir` with `args`, talking to this server.
    pub fn run_in(&self, dir: &std::path::Path, args: &[&str]) -> std::process::Output {
        let mut cmd = super::irsa();
        cmd.current_dir(dir).args(args).envs(self.env());
        cmd.output().unwrap()
    }
}

impl Moto {
    /// Stops moto now (an STS outage, for the tests that need one).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Out-of-band changes and checks, made with Python boto3 (installed with moto),
/// an implementation independent of irsa.
pub struct Ctl {
    endpoint: String,
}

impl Ctl {
    pub fn new(moto: &Moto) -> Self {
        Self {
            endpoint: moto.endpoint.clone(),
        }
    }

    pub fn py(&self, code: &str) -> String {
        let script = format!(
            "import boto3, json, sys\nkw = dict(endpoint_url='{}', region_name='eu-west-1', aws_access_key_id='testing', aws_secret_access_key='testing')\ns3 = boto3.client('s3', **kw)\niam = boto3.client('iam', **kw)\n{code}\n",
            self.endpoint
        );
        let out = std::process::Command::new("python3")
            .arg("-c")
            .arg(&script)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "python: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Forgets every resource: a fresh account.
    pub fn reset(&self) {
        self.py(&format!(
            "import urllib.request\nurllib.request.urlopen(urllib.request.Request('{}/moto-api/reset', method='POST')).read()",
            self.endpoint
        ));
    }

    /// Every bucket (with objects and tags), OIDC provider and role (with
    /// tags and policies) in the account, as one comparable text.
    pub fn inventory(&self) -> String {
        self.py(
            "out = {}\nfor b in s3.list_buckets()['Buckets']:\n    n = b['Name']\n    objs = sorted(o['Key'] for o in s3.list_objects_v2(Bucket=n).get('Contents', []))\n    tags = s3.get_bucket_tagging(Bucket=n)['TagSet']\n    out['s3:' + n] = [objs, sorted((t['Key'], t['Value']) for t in tags), s3.get_bucket_policy(Bucket=n)['Policy']]\nfor p in iam.list_open_id_connect_providers()['OpenIDConnectProviderList']:\n    d = iam.get_open_id_connect_provider(OpenIDConnectProviderArn=p['Arn'])\n    out['oidc:' + p['Arn']] = [sorted(d['ClientIDList']), sorted((t['Key'], t['Value']) for t in d.get('Tags', []))]\nfor r in iam.list_roles()['Roles']:\n    n = r['RoleName']\n    out['role:' + n] = [r['Path'], sorted(p['PolicyArn'] for p in iam.list_attached_role_policies(RoleName=n)['AttachedPolicies']), sorted(iam.list_role_policies(RoleName=n)['PolicyNames']), sorted((t['Key'], t['Value']) for t in iam.list_role_tags(RoleName=n)['Tags'])]\nprint(json.dumps(out, sort_keys=True))",
        )
    }

    pub fn put_object(&self, bucket: &str, key: &str, body: &str) {
        self.py(&format!("s3.put_object(Bucket='{bucket}', Key='{key}', Body={body:?}, ContentType='application/json')"));
    }

    pub fn foreign_trust(&self) -> String {
        r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]}"#.to_string()
    }

    pub fn iam(&self, args: &[&str]) {
        match args[0] {
            "detach-role-policy" => self.py(&format!(
                "iam.detach_role_policy(RoleName='{}', PolicyArn='{}')",
                args[1], args[2]
            )),
            "create-role" => self.py(&format!(
                "iam.create_role(RoleName='{}', AssumeRolePolicyDocument={:?})",
                args[1],
                self.foreign_trust()
            )),
            other => panic!("unknown {other}"),
        };
    }

    pub fn role_trust(&self, name: &str) -> String {
        let doc = self.py(&format!("print(json.dumps(iam.get_role(RoleName='{name}')['Role']['AssumeRolePolicyDocument']))"));
        let v: Value = serde_json::from_str(&doc).unwrap();
        let v = if let Value::String(s) = v {
            serde_json::from_str(&s).unwrap()
        } else {
            v
        };
        let expected: Value = serde_json::from_str(&self.foreign_trust()).unwrap();
        if v == expected {
            self.foreign_trust()
        } else {
            v.to_string()
        }
    }

    pub fn role_exists(&self, name: &str) -> bool {
        self.py(&format!(
            "print(any(r['RoleName'] == '{name}' for r in iam.list_roles()['Roles']))"
        )) == "True"
    }

    pub fn bucket_exists(&self, name: &str) -> bool {
        self.py(&format!(
            "print(any(b['Name'] == '{name}' for b in s3.list_buckets()['Buckets']))"
        )) == "True"
    }
}
