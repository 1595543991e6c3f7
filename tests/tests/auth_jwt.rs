//! Issue 10: `--auth-token jwt,...`. The same key pair on real etcd 3.4 and oxcd: a token
//! either one issues is accepted by the other, refused by both once the auth revision moved,
//! and a member given only the public key verifies tokens but cannot issue them. RS256 with
//! etcd's own e2e key pair, and ES512 (P-521, which oxcd signs apart from its other methods).

mod http_support;

use oxcd_e2e::{fixture, server_bin, Member, Oracle};
use serde_json::Value;

const ROOT: &str = "root:rootpw";

/// `--auth-token` for etcd's own e2e key pair (an RSA key and its certificate), RS256.
fn rs256_flag(private: bool) -> String {
    let mut flag = format!(
        "jwt,pub-key={},sign-method=RS256,ttl=60s",
        fixture("server.crt").display()
    );
    if private {
        flag.push_str(&format!(
            ",priv-key={}",
            fixture("server.key.insecure").display()
        ));
    }
    flag
}

/// A P-521 key pair from `openssl ecparam -name secp521r1 -genkey -noout` (SEC1, the form etcd
/// 3.4 reads) and `openssl ec -pubout`.
const P521_PRIVATE: &str = "-----BEGIN EC PRIVATE KEY-----
MIHcAgEBBEIAvAxnaQOkv7AxS+INEb3DVIXKTngZFtx//qjIoDZXKz6X+rlBuFe+
uB9flODt+73TjmVpla8SPN3z5rSeenzCQ1SgBwYFK4EEACOhgYkDgYYABAHFi7r8
q4pVYPZ6pu1GeAE3cU0oRABgFq/myonHBmx6Z8CmLHiKGsfQXrFj9S2u/UJsl2KG
0qFOMNrNHMA4EfVrowE2vsAVfoDHZSdCx6yXovxiIek3k8S5e8PsTxNNZcAN9fsd
ERNQvH555u0GwkckMj22xS1JCWDHdYzygWJx0WaMgg==
-----END EC PRIVATE KEY-----
";
const P521_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MIGbMBAGByqGSM49AgEGBSuBBAAjA4GGAAQBxYu6/KuKVWD2eqbtRngBN3FNKEQA
YBav5sqJxwZsemfApix4ihrH0F6xY/Utrv1CbJdihtKhTjDazRzAOBH1a6MBNr7A
FX6Ax2UnQsesl6L8YiHpN5PEuXvD7E8TTWXADfX7HRETULx+eebtBsJHJDI9tsUt
SQlgx3WM8oFicdFmjII=
-----END PUBLIC KEY-----
";

/// `--auth-token` for the P-521 pair written into `dir`, ES512.
fn es512_flag(dir: &std::path::Path, private: bool) -> String {
    let (public_file, private_file) = (dir.join("p521.pub"), dir.join("p521.key"));
    std::fs::write(&public_file, P521_PUBLIC).unwrap();
    std::fs::write(&private_file, P521_PRIVATE).unwrap();
    let mut flag = format!(
        "jwt,pub-key={},sign-method=ES512,ttl=60s",
        public_file.display()
    );
    if private {
        flag.push_str(&format!(",priv-key={}", private_file.display()));
    }
    flag
}

/// The same users, roles and permissions (hence the same auth revision) everywhere.
const SETUP: &[&[&str]] = &[
    &["user", "add", ROOT],
    &["role", "add", "root"],
    &["user", "grant-role", "root", "root"],
    &["user", "add", "alice:apw"],
    &["role", "add", "r1"],
    &[
        "role",
        "grant-permission",
        "--prefix",
        "r1",
        "readwrite",
        "a/",
    ],
    &["user", "grant-role", "alice", "r1"],
    &["auth", "enable"],
];

fn addr(member: &Member) -> String {
    format!("127.0.0.1:{}", member.client_port())
}

/// Authenticate through the gateway: the token, or the error body.
fn authenticate(member: &Member, name: &str, password: &str) -> Result<String, Value> {
    let body = format!(r#"{{"name":"{name}","password":"{password}"}}"#);
    let resp = http_support::post(&addr(member), "/v3/auth/authenticate", &body).json();
    match resp["token"].as_str() {
        Some(token) => Ok(token.to_string()),
        None => Err(resp),
    }
}

/// Puts `a/k` with `token` through the gateway: `Ok` or etcd's error message.
fn put_with(member: &Member, token: &str) -> Result<(), String> {
    let resp = http_support::request(
        &addr(member),
        "POST",
        "/v3/kv/put",
        &[("Authorization", token)],
        br#"{"key":"YS9r","value":"dg=="}"#,
    );
    let json = resp.json();
    match json.get("error").or_else(|| json.get("message")) {
        Some(msg) => Err(msg.as_str().unwrap_or_default().to_string()),
        None => Ok(()),
    }
}

#[test]
fn rs256_tokens_cross_between_etcd_and_oxcd_with_the_same_keys() {
    tokens_cross_between_etcd_and_oxcd(&rs256_flag(true), &rs256_flag(false));
}

#[test]
fn es512_tokens_cross_between_etcd_and_oxcd_with_the_same_keys() {
    let keys = tempfile::tempdir().unwrap();
    let from_oxcd = tokens_cross_between_etcd_and_oxcd(
        &es512_flag(keys.path(), true),
        &es512_flag(keys.path(), false),
    );
    // JWS ES512: the signature is r||s, 66 bytes each (176 base64url characters).
    let signature = from_oxcd.rsplit('.').next().unwrap();
    assert_eq!(signature.len(), 176, "{from_oxcd}");
}

/// The whole exchange with `flag` on etcd and oxcd, then a verify-only oxcd member started
/// with `public_only`; returns a token oxcd issued.
fn tokens_cross_between_etcd_and_oxcd(flag: &str, public_only: &str) -> String {
    let oracle = Oracle::start_with(&["--bcrypt-cost", "4", "--auth-token", flag]);
    oracle.check_all(SETUP);
    let (etcd, oxcd) = (oracle.reference(), oracle.subject());

    let from_etcd = authenticate(etcd, "alice", "apw").unwrap();
    let from_oxcd = authenticate(oxcd, "alice", "apw").unwrap();
    assert_eq!(from_oxcd.split('.').count(), 3, "a JWT: {from_oxcd}");
    for (member, token) in [(oxcd, &from_etcd), (etcd, &from_oxcd), (oxcd, &from_oxcd)] {
        put_with(member, token).unwrap_or_else(|e| panic!("token refused: {e}"));
    }
    // A forged signature is refused by both, alike.
    // (A character inside the signature: the last one carries padding bits Go ignores.)
    let at = from_etcd.len() - 10;
    let swap = if &from_etcd[at..=at] == "A" { "B" } else { "A" };
    let forged = format!("{}{swap}{}", &from_etcd[..at], &from_etcd[at + 1..]);
    assert_eq!(put_with(oxcd, &forged), put_with(etcd, &forged));
    assert!(put_with(oxcd, &forged)
        .unwrap_err()
        .contains("invalid auth token"));
    // Any auth change makes older tokens old on both.
    oracle.check(&["--user", ROOT, "user", "add", "carol:c"]);
    for member in [etcd, oxcd] {
        for token in [&from_etcd, &from_oxcd] {
            assert_eq!(
                put_with(member, token).unwrap_err(),
                "etcdserver: revision of auth store is old"
            );
        }
    }
    // etcdctl authenticates again by itself.
    oracle.check_all(&[
        &["--user", "alice:apw", "put", "a/x", "1"],
        &["--user", "alice:apw", "get", "a/x"],
    ]);
    assert_eq!(
        authenticate(oxcd, "alice", "bad").unwrap_err(),
        authenticate(etcd, "alice", "bad").unwrap_err()
    );

    // A member with only the public key judges tokens but issues none.
    let mut verifier = Member::builder()
        .bin(server_bin())
        .args(["--bcrypt-cost", "4", "--auth-token", public_only])
        .spawn();
    verifier.wait_ready();
    for cmd in SETUP {
        assert!(verifier.etcdctl(cmd).success(), "{cmd:?}");
    }
    // Its auth revision is behind the token's: newer is fine.
    let err = authenticate(&verifier, "alice", "apw").unwrap_err();
    assert_eq!(
        err["message"], "auth: token signing attempted with verify-only key",
        "{err}"
    );
    let from_etcd = authenticate(etcd, "alice", "apw").unwrap();
    put_with(&verifier, &from_etcd).unwrap();
    from_oxcd
}
