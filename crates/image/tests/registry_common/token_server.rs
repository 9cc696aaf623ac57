//! A token server for a registry in `auth: token` mode: answers
//! `GET /token?service=…&scope=…` with a JWT signed (ES256) by a [`Signer`], granting
//! anonymous users `pull` only and the one known user every action asked for.

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::pki::Signer;

/// One token request: who asked (`None` for anonymous) and what was granted.
#[derive(Debug, Clone)]
pub struct Grant {
    pub account: Option<String>,
    pub scopes: Vec<String>,
}

pub struct TokenServer {
    pub realm: String,
    pub grants: Arc<Mutex<Vec<Grant>>>,
}

pub const SERVICE: &str = "strata-test-registry";
pub const ISSUER: &str = "strata-test-issuer";

impl TokenServer {
    /// Serves tokens for `user`/`password`, signed by `signer`.
    pub async fn start(signer: &Signer, user: &str, password: &str) -> TokenServer {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let realm = format!("http://{}/token", l.local_addr().unwrap());
        let grants = Arc::new(Mutex::new(Vec::new()));
        let key = EncodingKey::from_ec_pem(signer.key_pem.as_bytes()).unwrap();
        let x5c = base64::engine::general_purpose::STANDARD.encode(&signer.cert_der);
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        let ctx = Arc::new((key, x5c, basic, user.to_string(), grants.clone()));
        tokio::spawn(async move {
            while let Ok((c, _)) = l.accept().await {
                let ctx = ctx.clone();
                tokio::spawn(async move {
                    let (key, x5c, basic, user, grants) = &*ctx;
                    let _ = serve(c, key, x5c, basic, user, grants).await;
                });
            }
        });
        TokenServer { realm, grants }
    }

    pub fn grants(&self) -> Vec<Grant> {
        self.grants.lock().unwrap().clone()
    }
}

fn query_values(target: &str, key: &str) -> Vec<String> {
    query_pairs(target)
        .into_iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v)
        .collect()
}

/// The decoded query pairs of a request target.
fn query_pairs(target: &str) -> Vec<(String, String)> {
    let q = target.split_once('?').map(|(_, q)| q).unwrap_or_default();
    q.split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let h = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("00");
                out.push(u8::from_str_radix(h, 16).unwrap_or(b'?'));
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `repository:name:pull,push` → the JSON access entry granting `allowed` of the asked
/// actions.
fn access(scope: &str, anonymous: bool) -> serde_json::Value {
    let mut parts = scope.splitn(3, ':');
    let (kind, name, actions) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let granted: Vec<&str> = actions
        .split(',')
        .filter(|a| !anonymous || *a == "pull")
        .collect();
    serde_json::json!({"type": kind, "name": name, "actions": granted})
}

async fn serve(
    mut c: TcpStream,
    key: &EncodingKey,
    x5c: &str,
    basic: &str,
    user: &str,
    grants: &Mutex<Vec<Grant>>,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = c.read(&mut tmp).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&tmp[..n]);
    }
    let head = String::from_utf8_lossy(&buf).to_string();
    let mut first = head.lines().next().unwrap_or_default().split(' ');
    let (method, target) = (
        first.next().unwrap_or_default(),
        first.next().unwrap_or_default(),
    );
    let auth = head
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("authorization:"))
        .map(|l| l[14..].trim().to_string());
    let (status, body) = if method != "GET" {
        // No OAuth2 endpoint: clients fall back to GET with basic auth.
        ("404 Not Found", "{}".to_string())
    } else {
        match auth.as_deref() {
            Some(a) if a != format!("Basic {basic}") => ("401 Unauthorized", "{}".to_string()),
            a => {
                let account = a.map(|_| user.to_string());
                let scopes = query_values(target, "scope");
                let token = sign(
                    key,
                    x5c,
                    &account,
                    &scopes,
                    &query_values(target, "service"),
                );
                grants.lock().unwrap().push(Grant { account, scopes });
                (
                    "200 OK",
                    serde_json::json!({"token": token, "expires_in": 300}).to_string(),
                )
            }
        }
    };
    let resp = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    c.write_all(resp.as_bytes()).await?;
    c.shutdown().await
}

fn sign(
    key: &EncodingKey,
    x5c: &str,
    account: &Option<String>,
    scopes: &[String],
    service: &[String],
) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = serde_json::json!({
        "iss": ISSUER,
        "sub": account.clone().unwrap_or_default(),
        "aud": service.first().cloned().unwrap_or_else(|| SERVICE.to_string()),
        "exp": now + 300,
        "nbf": now - 10,
        "iat": now,
        "jti": format!("{now}-{}", scopes.len()),
        "access": scopes.iter().map(|s| access(s, account.is_none())).collect::<Vec<_>>(),
    });
    let mut header = Header::new(Algorithm::ES256);
    header.x5c = Some(vec![x5c.to_string()]);
    jsonwebtoken::encode(&header, &claims, key).unwrap()
}
