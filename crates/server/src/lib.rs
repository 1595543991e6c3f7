//! The oxcd server: an etcd-compatible member.
//!
//! Requests enter through [`grpc`] (and [`http`], whose JSON gateway calls the same gRPC
//! services in-process), are validated there, and writes are
//! proposed through the [`raft`] node thread, which persists them in the WAL and hands
//! committed entries to the [`apply`] thread, the only writer of the MVCC store. Proposers
//! wait on [`wait`] for apply's answer; reads go to the store directly, after a ReadIndex
//! round when they must be linearizable. [`bootstrap`] wires it all up from a
//! [`config::ServerConfig`].

pub mod alarm;
pub mod apply;
pub mod auth;
pub mod bootstrap;
mod coalesce;
pub mod compactor;
pub mod config;
pub mod corrupt;
pub mod data_dir;
pub mod disk_space;
pub mod error;
pub mod etcd_import;
pub mod fatal;
pub mod grpc;
pub mod grpc_proxy;
pub mod http;
pub mod id;
pub mod kv;
pub mod lease;
pub mod listen;
pub mod logging;
pub mod membership;
pub mod peer;
pub mod quota;
pub mod raft;
mod read_index;
mod serve_threads;
pub mod server;
pub mod stats;
pub mod tcp_gateway;
pub mod tls;
pub mod v2;
pub mod wait;

use std::sync::Arc;
use std::time::Duration;

use oxcd_api::etcdserverpb::InternalRaftRequest;
use oxcd_api::membershippb::{Attributes, ClusterMemberAttrSetRequest, ClusterVersionSetRequest};
use oxcd_api::oxcdpb::peer_server::PeerServer;

use crate::config::ServerConfig;
use crate::error::ServerError;
use crate::server::EtcdServer;

/// Runs a member until the process is told to stop.
pub async fn run(cfg: ServerConfig) -> Result<(), ServerError> {
    data_dir::drop_unsynced_changes(&data_dir::Layout::of(&cfg))?;
    let peer_tls =
        tls::peer_tls_info(&cfg).map_err(|e| ServerError::Startup(format!("peer TLS: {e}")))?;
    let client_tls =
        tls::client_tls_info(&cfg).map_err(|e| ServerError::Startup(format!("client TLS: {e}")))?;

    // Bind everything before starting raft, so a port in use fails fast, as in etcd.
    let mut peer_listeners = Vec::new();
    for url in &cfg.listen_peer_urls {
        peer_listeners.push(
            listen::bind(url)
                .await
                .map_err(|e| ServerError::Startup(e.to_string()))?,
        );
        tracing::info!(address = %url, "listening for peers");
    }
    let client_ports = listen::Port::group(&cfg.listen_client_urls);
    let mut client_listeners = Vec::new();
    for port in &client_ports {
        client_listeners.push(
            listen::bind(&port.urls[0])
                .await
                .map_err(|e| ServerError::Startup(e.to_string()))?,
        );
    }
    let mut client_http_listeners = Vec::new();
    for url in &cfg.listen_client_http_urls {
        client_http_listeners.push(
            listen::bind(url)
                .await
                .map_err(|e| ServerError::Startup(e.to_string()))?,
        );
    }
    let mut metrics_listeners = Vec::new();
    for url in &cfg.listen_metrics_urls {
        metrics_listeners.push(
            listen::bind(url)
                .await
                .map_err(|e| ServerError::Startup(e.to_string()))?,
        );
    }
    // Before the storage opens, so its first fsyncs are counted.
    let metrics = http::metrics::install()
        .map_err(|e| ServerError::Startup(format!("metrics recorder: {e}")))?;

    let (peer_server_tls, peer_client_tls) = match &peer_tls {
        Some(info) => (
            Some(Arc::new(info.server_config().map_err(|e| {
                ServerError::Startup(format!("peer TLS: {e}"))
            })?)),
            Some(Arc::new(info.client_config().map_err(|e| {
                ServerError::Startup(format!("peer TLS: {e}"))
            })?)),
        ),
        None => (None, None),
    };
    let join = if !oxcd_storage::Wal::exists(&cfg.wal_dir()) && !cfg.is_new_cluster() {
        Some(
            peer::discover_self(&cfg, peer_client_tls.clone())
                .await
                .map_err(ServerError::Startup)?,
        )
    } else {
        None
    };
    // As etcd, only a member that ran before is checked: a new one has nothing to compare.
    let initialized = oxcd_storage::Wal::exists(&cfg.wal_dir());
    let server = bootstrap::start(&cfg, peer_client_tls.clone(), join.as_ref())?;
    // Before peers or clients are served, as etcd: a corrupt member never takes part.
    if initialized && cfg.flags.experimental_initial_corrupt_check {
        corrupt::check_initial(&server, &peer_client_tls).await?;
    }

    let peer_router = tonic::service::Routes::new(
        PeerServer::new(peer::PeerService::new(server.clone(), cfg.snap_dir()))
            .max_decoding_message_size(usize::MAX),
    )
    .into_axum_router();
    for (listener, url) in peer_listeners.into_iter().zip(&cfg.listen_peer_urls) {
        // As etcd, an http:// (unix://) URL is served in plain text even with certificates.
        listen::spawn_serve(
            listener,
            peer_server_tls.clone().filter(|_| url.scheme.is_tls()),
            peer_router.clone(),
            listen::ServeOptions::default(),
        );
    }
    let client_serve = listen::ServeOptions {
        max_concurrent_streams: cfg.flags.max_concurrent_streams,
    };

    let client_tls_config = match &client_tls {
        Some(info) => Some(Arc::new(
            info.server_config()
                .map_err(|e| ServerError::Startup(e.to_string()))?,
        )),
        None => None,
    };
    let services = http::HttpServices::new(
        server.clone(),
        grpc::ClientGrpc::new(server.clone(), &cfg),
        metrics,
        &cfg,
    );
    // As etcd: clients are served once this member has published itself through Raft, that
    // is, once it is part of the cluster and has caught up with the log up to that entry.
    let published = publish(
        server.clone(),
        cfg.name.clone(),
        cfg.advertise_client_urls
            .iter()
            .map(ToString::to_string)
            .collect(),
    );
    tokio::select! {
        _ = published => {}
        _ = shutdown_signal() => {
            tracing::info!("received a stop signal before joining the cluster; stopping");
            return Ok(());
        }
    }
    for (listener, port) in client_listeners.into_iter().zip(&client_ports) {
        // With --listen-client-http-urls, HTTP moves there and these keep gRPC only.
        let protocols = port.protocols(client_tls_config.clone(), |secure| {
            if cfg.listen_client_http_urls.is_empty() {
                services.client_service(secure)
            } else {
                services.grpc_service()
            }
        });
        listen::spawn_serve_protocols(listener, protocols, client_serve);
        for url in &port.urls {
            tracing::info!(address = %url, "ready to serve client requests");
        }
    }
    for (tcp, url) in client_http_listeners
        .into_iter()
        .zip(&cfg.listen_client_http_urls)
    {
        let tls = client_tls_config.clone().filter(|_| url.scheme.is_tls());
        listen::spawn_serve(
            tcp,
            tls,
            services.http_router(url.scheme.is_tls()),
            client_serve,
        );
        tracing::info!(address = %url, "ready to serve client HTTP requests");
    }
    for (tcp, url) in metrics_listeners.into_iter().zip(&cfg.listen_metrics_urls) {
        let tls = client_tls_config.clone().filter(|_| url.scheme.is_tls());
        listen::spawn_serve(tcp, tls, services.metrics_router(), client_serve);
        tracing::info!(address = %url, "serving metrics");
    }

    tokio::spawn(lease::primary::run(server.clone()));
    tokio::spawn(compactor::run(server.clone(), cfg.auto_compaction));
    tokio::spawn(v2::expiry::run(server.clone()));
    let corrupt_check_every = cfg.flags.experimental_corrupt_check_time.0;
    if !corrupt_check_every.is_zero() {
        tokio::spawn(corrupt::monitor(
            server.clone(),
            peer_client_tls,
            corrupt_check_every,
        ));
    }

    shutdown_signal().await;
    tracing::info!("received a stop signal; stopping");
    lease::primary::checkpoint_before_stop(&server).await;
    // What apply committed lazily becomes durable in the backend file, so that offline tools
    // (oxcdutl) see every write acknowledged before the stop; the WAL has it either way.
    // The commit records redb's page allocation: a start with
    // `--experimental-backend-verify-on-start=false` then opens the file without reading it.
    if let Err(e) = server.kv.backend().commit_for_stop() {
        tracing::warn!(error = %e, "failed to make the backend durable before stopping");
    }
    Ok(())
}

/// Publishes this member's name and client URLs, and the cluster version, through Raft;
/// retried until it succeeds, as etcd does.
async fn publish(server: Arc<EtcdServer>, name: String, client_urls: Vec<String>) {
    let attrs = InternalRaftRequest {
        cluster_member_attr_set: Some(ClusterMemberAttrSetRequest {
            member_id: server.member_id,
            member_attributes: Some(Attributes { name, client_urls }),
        }),
        ..Default::default()
    };
    let version = InternalRaftRequest {
        cluster_version_set: Some(ClusterVersionSetRequest {
            ver: config::etcd_release().cluster_version().to_string(),
        }),
        ..Default::default()
    };
    for req in [attrs, version] {
        loop {
            match server.propose(req.clone()).await {
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "failed to publish local member to cluster; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
