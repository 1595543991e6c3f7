//! An async Rust client for etcd's v3 API, for oxcd and etcd alike.
//!
//! [`Client::connect`] takes a list of endpoints and [`ConnectOptions`] (timeouts, TLS
//! with client certificates, user and password). From a client, one handle per service:
//!
//! | handle | service | highlights |
//! |---|---|---|
//! | [`Client::kv`] → [`Kv`] | KV | range, put, delete, txn, compact; [`prefix_end`] for `--prefix` ranges |
//! | [`Client::watch`] → [`Watch`] | Watch | a [`WatchStream`] that resumes after a lost connection without gap or duplicate |
//! | [`Client::lease`] → [`Lease`] | Lease | grant, revoke, TTL; [`KeepAlive`] renews a lease in the background |
//! | [`Client::cluster`] → [`Cluster`] | Cluster | membership |
//! | [`Client::maintenance`] → [`Maintenance`] | Maintenance | status, hashes, defragment, snapshot of one endpoint; alarms; move-leader |
//! | [`Client::auth`] → [`Auth`] | Auth | users, roles, permissions |
//! | [`Client::lock`], [`Client::election`] | v3lock, v3election | the server-side recipes |
//!
//! [`recipes`] holds [`Mutex`](recipes::Mutex), [`Election`](recipes::Election) and
//! [`Stm`](recipes::Stm) over a [`Session`](recipes::Session), wire-compatible with etcd's Go
//! `concurrency` package.
//!
//! Every request and response is etcd's protobuf message, re-exported as [`api`].
//!
//! # Failover and retries
//!
//! Requests go to one endpoint at a time. When it cannot be reached, the client moves to
//! the next and sends the request there; when it fails after the request was sent, reads
//! (and other requests that change nothing) are retried on the next endpoint, writes are
//! returned as errors (they may have been applied). With a user and password, a token is
//! fetched at connect time, sent as the `token` metadata, and fetched again when a member
//! answers `etcdserver: invalid auth token`.
//!
//! # Examples
//!
//! Three programs in `crates/client/examples/` run as they are against any member (`cargo
//! run --release -p oxcd-client --example NAME -- 127.0.0.1:2379`); CI runs each against a
//! fresh oxcd and checks what it prints (`tests/tests/ctl_client_examples.rs`):
//!
//! - `kv_watch`: put, get, delete, and a watch on a prefix that sees each change in order;
//! - `lease_keep_alive`: a key attached to a lease kept alive in the background, gone once
//!   the lease is revoked;
//! - `lock_election`: a [`Mutex`](recipes::Mutex) and an [`Election`](recipes::Election)
//!   over one [`Session`](recipes::Session).
//!
//! `kv_watch`, in full:
//!
//! ```no_run
#![doc = include_str!("../examples/kv_watch.rs")]
//! ```

#![deny(missing_docs)]

mod connection;
mod error;
mod lease;
pub mod recipes;
mod services;
mod tls;
mod watch;

use std::sync::Arc;

pub use connection::ConnectOptions;
pub use error::{Error, Result};
pub use lease::{KeepAlive, Lease};
pub use oxcd_api as api;
pub use services::{prefix_end, Auth, Cluster, Election, Kv, Lock, Maintenance};
pub use tls::TlsOptions;
pub use watch::{Watch, WatchStream};

use connection::Connection;

/// A connection to an etcd cluster; cheap to clone (clones share the connection).
#[derive(Clone, Debug)]
pub struct Client {
    conn: Arc<Connection>,
}

impl Client {
    /// Prepares connections to `endpoints` (`host:port`, `http://host:port` or
    /// `https://host:port`); connects lazily, except that with a user and password it
    /// authenticates at once.
    pub async fn connect<E: AsRef<str>>(
        endpoints: impl IntoIterator<Item = E>,
        options: ConnectOptions,
    ) -> Result<Client> {
        let endpoints: Vec<String> = endpoints
            .into_iter()
            .map(|e| e.as_ref().to_owned())
            .collect();
        let conn = Connection::open(&endpoints, options).await?;
        Ok(Client {
            conn: Arc::new(conn),
        })
    }

    /// The endpoints, as given.
    pub fn endpoints(&self) -> Vec<String> {
        self.conn.endpoints()
    }

    /// The endpoint requests go to now.
    pub fn current_endpoint(&self) -> String {
        self.conn.current_endpoint()
    }

    /// The KV service.
    pub fn kv(&self) -> Kv {
        Kv {
            conn: self.conn.clone(),
        }
    }

    /// The Watch service.
    pub fn watch(&self) -> Watch {
        Watch {
            conn: self.conn.clone(),
        }
    }

    /// The Lease service.
    pub fn lease(&self) -> Lease {
        Lease {
            conn: self.conn.clone(),
        }
    }

    /// The Cluster service.
    pub fn cluster(&self) -> Cluster {
        Cluster {
            conn: self.conn.clone(),
        }
    }

    /// The Maintenance service.
    pub fn maintenance(&self) -> Maintenance {
        Maintenance {
            conn: self.conn.clone(),
        }
    }

    /// The Auth service.
    pub fn auth(&self) -> Auth {
        Auth {
            conn: self.conn.clone(),
        }
    }

    /// The server-side Lock service.
    pub fn lock(&self) -> Lock {
        Lock {
            conn: self.conn.clone(),
        }
    }

    /// The server-side Election service.
    pub fn election(&self) -> Election {
        Election {
            conn: self.conn.clone(),
        }
    }
}
