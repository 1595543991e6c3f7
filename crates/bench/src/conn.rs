//! Connections to the cluster, shared by the clients as etcd's benchmark shares them: `--conns`
//! HTTP/2 connections, `--clients` clients spread over them round-robin, endpoints taken in
//! turn per connection.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use oxcd_api::etcdserverpb::auth_client::AuthClient;
use oxcd_api::etcdserverpb::maintenance_client::MaintenanceClient;
use oxcd_api::etcdserverpb::{AuthenticateRequest, MemberListRequest, StatusRequest};
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Request, Status};

use crate::Global;

/// A connection with the auth token, if any, put on every request.
pub type Conn = InterceptedService<Channel, Token>;

/// Adds `token` to each request, as etcd clients do once authenticated.
#[derive(Clone)]
pub struct Token(Option<MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for Token {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        if let Some(token) = &self.0 {
            req.metadata_mut().insert("token", token.clone());
        }
        Ok(req)
    }
}

/// Opens connections; remembers the leader's endpoints with `--target-leader`.
pub struct Dialer {
    global: Global,
    tls: Option<ClientTlsConfig>,
    dialed: usize,
    leader: Option<Vec<String>>,
}

impl Dialer {
    pub async fn new(global: &Global) -> Result<Dialer, String> {
        let tls = if global.cacert.is_some() || global.cert.is_some() {
            let mut tls = ClientTlsConfig::new();
            if let Some(ca) = &global.cacert {
                let pem = std::fs::read(ca).map_err(|e| format!("bad tls config: {ca}: {e}"))?;
                tls = tls.ca_certificate(Certificate::from_pem(pem));
            }
            if let (Some(cert), Some(key)) = (&global.cert, &global.key) {
                let cert = std::fs::read(cert).map_err(|e| format!("bad tls config: {e}"))?;
                let key = std::fs::read(key).map_err(|e| format!("bad tls config: {e}"))?;
                tls = tls.identity(Identity::from_pem(cert, key));
            }
            Some(tls)
        } else {
            None
        };
        let mut dialer = Dialer {
            global: global.clone(),
            tls,
            dialed: 0,
            leader: None,
        };
        if global.target_leader {
            let conn = dialer.conn().await?;
            dialer.leader = Some(leader_endpoints(conn).await?);
        }
        Ok(dialer)
    }

    /// One new connection, to the next endpoint in turn (or the leader's).
    pub async fn conn(&mut self) -> Result<Conn, String> {
        let endpoints = self.leader.clone().unwrap_or_else(|| {
            let ep = self.global.endpoints[self.dialed % self.global.endpoints.len()].clone();
            self.dialed += 1;
            vec![ep]
        });
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let mut eps = Vec::new();
        for ep in &endpoints {
            let url = if ep.contains("://") {
                ep.clone()
            } else {
                format!("{scheme}://{ep}")
            };
            let mut e = Endpoint::from_shared(url.clone()).map_err(|e| format!("{url}: {e}"))?;
            if let Some(tls) = &self.tls {
                e = e
                    .tls_config(tls.clone())
                    .map_err(|e| format!("bad tls config: {e}"))?;
            }
            if let Some(timeout) = self.global.dial_timeout {
                e = e.connect_timeout(timeout);
            }
            eps.push(e);
        }
        let channel = if eps.len() == 1 {
            eps[0]
                .connect()
                .await
                .map_err(|e| format!("dial error: {e}"))?
        } else {
            Channel::balance_list(eps.into_iter())
        };
        let token = match &self.global.user {
            Some(user) => Some(authenticate(channel.clone(), user).await?),
            None => None,
        };
        Ok(InterceptedService::new(channel, Token(token)))
    }

    /// `clients` clients over `conns` new connections.
    pub async fn clients(&mut self, clients: usize, conns: usize) -> Result<Vec<Conn>, String> {
        let mut opened = Vec::with_capacity(conns);
        for _ in 0..conns.max(1) {
            opened.push(self.conn().await?);
        }
        Ok((0..clients)
            .map(|i| opened[i % opened.len()].clone())
            .collect())
    }
}

/// `user:password` → a token from the Auth service.
async fn authenticate(
    channel: Channel,
    user: &str,
) -> Result<MetadataValue<tonic::metadata::Ascii>, String> {
    let Some((name, password)) = user.split_once(':') else {
        return Err(format!(
            "bad user information: {user} (give --user as name:password; prompting is not supported)"
        ));
    };
    let resp = AuthClient::new(channel)
        .authenticate(AuthenticateRequest {
            name: name.to_owned(),
            password: password.to_owned(),
        })
        .await
        .map_err(|e| format!("authentication failed: {}", e.message()))?;
    resp.into_inner()
        .token
        .parse()
        .map_err(|e| format!("bad token: {e}"))
}

/// The leader's client URLs, found through the member list and any member's status.
async fn leader_endpoints(conn: Conn) -> Result<Vec<String>, String> {
    let mut m = MaintenanceClient::new(conn.clone());
    let leader = m
        .status(StatusRequest {})
        .await
        .map_err(|e| format!("failed to get a status: {}", e.message()))?
        .into_inner()
        .leader;
    let members = oxcd_api::etcdserverpb::cluster_client::ClusterClient::new(conn)
        .member_list(MemberListRequest {
            linearizable: false,
        })
        .await
        .map_err(|e| format!("failed to get a member list: {}", e.message()))?
        .into_inner()
        .members;
    members
        .into_iter()
        .find(|m| m.id == leader)
        .map(|m| m.client_ur_ls)
        .ok_or_else(|| "failed to find a leader endpoint".to_owned())
}

/// Paces requests to at most `rate` per second across all clients (`--rate`; 0 = no
/// limit), as a token bucket of one.
pub struct Limiter {
    start: Instant,
    /// Nanoseconds between requests; 0 when unlimited.
    interval: u64,
    /// The next free slot, in nanoseconds since `start`.
    next: AtomicU64,
}

impl Limiter {
    pub fn new(rate: u64) -> Limiter {
        Limiter {
            start: Instant::now(),
            interval: 1_000_000_000u64.checked_div(rate).unwrap_or(0),
            next: AtomicU64::new(0),
        }
    }

    /// Waits for this request's slot.
    pub async fn wait(&self) {
        if self.interval == 0 {
            return;
        }
        let now = self.start.elapsed().as_nanos() as u64;
        let mut slot = self.next.load(Ordering::Relaxed);
        loop {
            let mine = slot.max(now);
            match self.next.compare_exchange_weak(
                slot,
                mine + self.interval,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    slot = mine;
                    break;
                }
                Err(seen) => slot = seen,
            }
        }
        if slot > now {
            tokio::time::sleep(Duration::from_nanos(slot - now)).await;
        }
    }
}
