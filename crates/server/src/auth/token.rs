//! Auth tokens: what Authenticate hands out and every later request presents.
//!
//! Simple tokens (`--auth-token simple`, etcd's default) are `<16 random letters>.<raft
//! index>`: the member serving Authenticate draws the letters, and every member, applying the
//! Authenticate entry at that index, records the token for the user. A token lives
//! `--auth-token-ttl` after its last use, and dies with its user's deletion or password
//! change, or when auth is disabled. A member that has not applied the index yet waits for it
//! before it judges the token.
//!
//! JWT tokens (`--auth-token jwt,...`, see [`super::jwt`]) carry the user and the auth
//! revision they were issued at, signed; nothing is recorded.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::Rng as _;

use super::jwt::{JwtError, JwtTokens};

/// Letters of a simple token's random part, and how many.
const SIMPLE_TOKEN_LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
const SIMPLE_TOKEN_LENGTH: usize = 16;

/// Purge expired simple tokens at most this often (on assignment): a lookup checks expiry
/// anyway, this only bounds memory.
const PURGE_EVERY: Duration = Duration::from_secs(1);

/// Who a valid token names, and at which auth revision (JWT: when issued; simple: unknown).
pub struct TokenInfo {
    pub username: String,
    pub revision: Option<u64>,
}

/// The token kind chosen with `--auth-token`.
pub enum TokenProvider {
    Simple(SimpleTokens),
    Jwt(JwtTokens),
}

impl TokenProvider {
    /// Parses `--auth-token` as etcd: `simple`, or `jwt,key=value,...`. `ttl` is
    /// `--auth-token-ttl`, for simple tokens.
    pub fn from_flag(opts: &str, ttl: Duration) -> Result<TokenProvider, String> {
        let mut parts = opts.split(',');
        let kind = parts.next().unwrap_or_default();
        let mut params = HashMap::new();
        for part in parts {
            let Some((k, v)) = part.split_once('=').filter(|(_, v)| !v.contains('=')) else {
                return Err(format!(
                    "invalid auth token option {opts:?}: auth: invalid auth options"
                ));
            };
            if params.insert(k.to_string(), v.to_string()).is_some() {
                return Err(format!("invalid auth token option {opts:?}, duplicated parameter {k:?}: auth: invalid auth options"));
            }
        }
        match kind {
            "simple" => {
                tracing::warn!("simple token is not cryptographically signed");
                Ok(TokenProvider::Simple(SimpleTokens::new(ttl)))
            }
            "jwt" => JwtTokens::from_options(&params).map(TokenProvider::Jwt),
            other => Err(format!(
                "unknown token type {other:?}: auth: invalid auth options"
            )),
        }
    }

    /// The random part of a simple token, drawn by the member serving Authenticate (JWT
    /// tokens have none).
    pub fn new_prefix(&self) -> String {
        if let TokenProvider::Jwt(_) = self {
            return String::new();
        }
        let mut rng = rand::rng();
        (0..SIMPLE_TOKEN_LENGTH)
            .map(|_| SIMPLE_TOKEN_LETTERS[rng.random_range(0..SIMPLE_TOKEN_LETTERS.len())] as char)
            .collect()
    }

    /// Issues a token for `username` (apply, at raft `index`).
    pub fn assign(
        &self,
        username: &str,
        revision: u64,
        prefix: &str,
        index: u64,
    ) -> Result<String, JwtError> {
        match self {
            TokenProvider::Simple(s) => Ok(s.assign(username, prefix, index)),
            TokenProvider::Jwt(j) => j.assign(username, revision),
        }
    }

    /// Who `token` names, if it is valid.
    pub fn info(&self, token: &str) -> Option<TokenInfo> {
        match self {
            TokenProvider::Simple(s) => s.user(token).map(|username| TokenInfo {
                username,
                revision: None,
            }),
            TokenProvider::Jwt(j) => j.info(token).map(|(username, revision)| TokenInfo {
                username,
                revision: Some(revision),
            }),
        }
    }

    /// The raft index a simple token was issued at: a member must have applied it before it
    /// can judge the token.
    pub fn issued_at(&self, token: &str) -> Option<u64> {
        match self {
            TokenProvider::Simple(_) => token.split_once('.').and_then(|(_, i)| i.parse().ok()),
            TokenProvider::Jwt(_) => None,
        }
    }

    /// Forgets every simple token of `username` (a JWT token outlives it until its auth
    /// revision is found old, as in etcd).
    pub fn invalidate_user(&self, username: &str) {
        if let TokenProvider::Simple(s) = self {
            s.invalidate_user(username);
        }
    }

    /// Forgets every simple token (auth disabled).
    pub fn invalidate_all(&self) {
        if let TokenProvider::Simple(s) = self {
            s.tokens.lock().unwrap().clear();
        }
    }
}

/// A simple token's user and when it expires unless used.
struct Issued {
    username: String,
    expires: Instant,
}

/// The simple tokens this member has recorded.
pub struct SimpleTokens {
    ttl: Duration,
    tokens: Mutex<HashMap<String, Issued>>,
    last_purge: Mutex<Instant>,
}

impl SimpleTokens {
    pub fn new(ttl: Duration) -> SimpleTokens {
        SimpleTokens {
            ttl,
            tokens: Mutex::new(HashMap::new()),
            last_purge: Mutex::new(Instant::now()),
        }
    }

    fn assign(&self, username: &str, prefix: &str, index: u64) -> String {
        let token = format!("{prefix}.{index}");
        let now = Instant::now();
        let mut tokens = self.tokens.lock().unwrap();
        {
            let mut last = self.last_purge.lock().unwrap();
            if now.duration_since(*last) >= PURGE_EVERY {
                tokens.retain(|_, t| t.expires > now);
                *last = now;
            }
        }
        tokens.insert(
            token.clone(),
            Issued {
                username: username.to_string(),
                expires: now + self.ttl,
            },
        );
        token
    }

    /// The token's user, renewing its lifetime; `None` when unknown or expired.
    fn user(&self, token: &str) -> Option<String> {
        let now = Instant::now();
        let mut tokens = self.tokens.lock().unwrap();
        let issued = tokens.get_mut(token)?;
        if issued.expires <= now {
            tracing::info!("user-name" = issued.username, "deleted a simple token");
            tokens.remove(token);
            return None;
        }
        issued.expires = now + self.ttl;
        Some(issued.username.clone())
    }

    fn invalidate_user(&self, username: &str) {
        self.tokens
            .lock()
            .unwrap()
            .retain(|_, t| t.username != username);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_tokens_expire_unless_used_and_die_with_their_user() {
        let p = TokenProvider::Simple(SimpleTokens::new(Duration::from_millis(200)));
        let prefix = p.new_prefix();
        assert_eq!(prefix.len(), SIMPLE_TOKEN_LENGTH);
        let t = p.assign("alice", 3, &prefix, 42).unwrap();
        assert_eq!(t, format!("{prefix}.42"));
        assert_eq!(p.issued_at(&t), Some(42));
        assert_eq!(p.info(&t).unwrap().username, "alice");
        std::thread::sleep(Duration::from_millis(120));
        assert!(p.info(&t).is_some(), "a use renews the token");
        std::thread::sleep(Duration::from_millis(120));
        assert!(p.info(&t).is_some());
        std::thread::sleep(Duration::from_millis(250));
        assert!(p.info(&t).is_none(), "expired");

        let t = p.assign("bob", 3, "x", 43).unwrap();
        p.invalidate_user("bob");
        assert!(p.info(&t).is_none());
        assert!(p.info("nonsense").is_none());
    }

    #[test]
    fn token_flag_parses_as_etcd() {
        assert!(matches!(
            TokenProvider::from_flag("simple", Duration::from_secs(300)),
            Ok(TokenProvider::Simple(_))
        ));
        assert!(TokenProvider::from_flag("bogus", Duration::from_secs(1)).is_err());
        assert!(TokenProvider::from_flag("simple,a", Duration::from_secs(1)).is_err());
        assert!(TokenProvider::from_flag("simple,a=1,a=2", Duration::from_secs(1)).is_err());
    }
}
