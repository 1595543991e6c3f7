//! gRPC on the client URLs: the etcd v3 services, served over one listener per URL (plain or
//! TLS), through an axum router so HTTP routes can share the port.

pub mod auth;
pub mod cluster;
mod election;
mod kv;
mod lease;
mod lock;
mod maintenance;
mod range_route;
mod status;
mod unary;
pub mod watch;

use std::sync::Arc;

use oxcd_api::etcdserverpb::auth_server::AuthServer;
use oxcd_api::etcdserverpb::cluster_server::ClusterServer;
use oxcd_api::etcdserverpb::kv_server::{Kv as _, KvServer};
use oxcd_api::etcdserverpb::lease_server::LeaseServer;
use oxcd_api::etcdserverpb::maintenance_server::MaintenanceServer;
use oxcd_api::etcdserverpb::watch_server::WatchServer;
use oxcd_api::v3electionpb::election_server::ElectionServer;
use oxcd_api::v3lockpb::lock_server::LockServer;
use tonic::service::Routes;

use crate::config::ServerConfig;

pub use status::{oversized_request_as_grpc_go, status};

use crate::server::EtcdServer;

/// The client gRPC services as one tower service: the KV calls other than Compact served by
/// hand ([`range_route`], [`unary`]), the rest by tonic's router, with oversized requests
/// refused in grpc-go's words.
#[derive(Clone)]
pub struct ClientGrpc {
    /// The busiest service, whose calls skip the router.
    kv: Arc<kv::KvService>,
    /// `--max-request-bytes` plus gRPC's overhead: larger requests are refused.
    max_recv: usize,
    routes: axum::Router,
}

impl ClientGrpc {
    pub fn new(server: Arc<EtcdServer>, cfg: &ServerConfig) -> ClientGrpc {
        ClientGrpc {
            kv: Arc::new(kv::KvService::new(server.clone())),
            max_recv: cfg.max_recv_msg_size(),
            routes: client_routes(server, cfg).into_axum_router(),
        }
    }

    /// Answers a call served by hand.
    fn serve_by_hand(
        &self,
        call: ByHand,
        req: axum::extract::Request,
    ) -> futures::future::BoxFuture<'static, Answer> {
        let (kv, max) = (self.kv.clone(), self.max_recv);
        match call {
            ByHand::Range => Box::pin(async move { Ok(range_route::serve(kv, req, max).await) }),
            ByHand::Put => Box::pin(async move { Ok(unary::serve(req, max, |r| kv.put(r)).await) }),
            ByHand::DeleteRange => {
                Box::pin(async move { Ok(unary::serve(req, max, |r| kv.delete_range(r)).await) })
            }
            ByHand::Txn => Box::pin(async move { Ok(unary::serve(req, max, |r| kv.txn(r)).await) }),
        }
    }
}

/// The calls [`ClientGrpc`] serves by hand.
#[derive(Clone, Copy, Debug)]
enum ByHand {
    Range,
    Put,
    DeleteRange,
    Txn,
}

impl ByHand {
    fn of(path: &str) -> Option<ByHand> {
        Some(match path {
            range_route::PATH => ByHand::Range,
            "/etcdserverpb.KV/Put" => ByHand::Put,
            "/etcdserverpb.KV/DeleteRange" => ByHand::DeleteRange,
            "/etcdserverpb.KV/Txn" => ByHand::Txn,
            _ => return None,
        })
    }
}

type Answer = Result<axum::response::Response, std::convert::Infallible>;

impl tower::Service<axum::extract::Request> for ClientGrpc {
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    type Future = futures::future::Either<
        futures::future::BoxFuture<'static, Answer>,
        futures::future::Map<
            axum::routing::future::RouteFuture<std::convert::Infallible>,
            fn(Answer) -> Answer,
        >,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        tower::Service::<axum::extract::Request>::poll_ready(&mut self.routes, cx)
    }

    fn call(&mut self, req: axum::extract::Request) -> Self::Future {
        use futures::future::Either;
        use futures::FutureExt as _;
        match ByHand::of(req.uri().path()) {
            Some(call) => Either::Left(self.serve_by_hand(call, req)),
            None => Either::Right(self.routes.call(req).map(
                (|answer: Answer| answer.map(oversized_request_as_grpc_go)) as fn(Answer) -> Answer,
            )),
        }
    }
}

/// The etcd v3 gRPC services as one router. Services not built yet are absent, and tonic
/// answers their RPCs with `Unimplemented`.
pub fn client_routes(server: Arc<EtcdServer>, cfg: &ServerConfig) -> Routes {
    let max_recv_msg_size = cfg.max_recv_msg_size();
    let header_server = server.clone();
    let leader_server = server.clone();
    let watch = WatchServer::new(
        watch::WatchService::new(
            server.watchable.clone(),
            Arc::new(move || header_server.header(header_server.kv.current_revision())),
            Arc::new(move || leader_server.raft_status.leader() != raft::INVALID_ID),
        )
        .progress_interval(cfg.watch_progress_notify_interval)
        .election_timeout(cfg.election_timeout)
        .max_request_bytes(cfg.max_request_bytes)
        .auth(server.auth.clone()),
    )
    .max_decoding_message_size(max_recv_msg_size)
    .max_encoding_message_size(usize::MAX);
    let kv = KvServer::new(kv::KvService::new(server.clone()))
        .max_decoding_message_size(max_recv_msg_size)
        .max_encoding_message_size(usize::MAX);
    let maintenance = MaintenanceServer::new(maintenance::MaintenanceService::new(server.clone()))
        .max_decoding_message_size(max_recv_msg_size)
        .max_encoding_message_size(usize::MAX);
    let lease = LeaseServer::new(lease::LeaseService::new(server.clone()))
        .max_decoding_message_size(max_recv_msg_size)
        .max_encoding_message_size(usize::MAX);
    let lock = LockServer::new(lock::LockService::new(server.clone()))
        .max_decoding_message_size(max_recv_msg_size)
        .max_encoding_message_size(usize::MAX);
    let election = ElectionServer::new(election::ElectionService::new(server.clone()))
        .max_decoding_message_size(max_recv_msg_size)
        .max_encoding_message_size(usize::MAX);
    let auth = AuthServer::new(auth::AuthService::new(server.clone()))
        .max_decoding_message_size(max_recv_msg_size)
        .max_encoding_message_size(usize::MAX);
    let cluster = ClusterServer::new(cluster::ClusterService::new(server))
        .max_decoding_message_size(max_recv_msg_size)
        .max_encoding_message_size(usize::MAX);
    Routes::new(kv)
        .add_service(maintenance)
        .add_service(cluster)
        .add_service(lease)
        .add_service(watch)
        .add_service(lock)
        .add_service(election)
        .add_service(auth)
}
