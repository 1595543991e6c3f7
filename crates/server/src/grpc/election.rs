//! The Election service (v3electionpb): etcd's election recipe run in the server, over the
//! same keys and waits as the Lock service (see [`super::lock`]). A candidate's key under
//! `NAME/` holds its proclaimed value; the candidate with the oldest key leads.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use oxcd_api::etcdserverpb::range_request::SortOrder;
use oxcd_api::etcdserverpb::TxnRequest;
use oxcd_api::mvccpb::event::EventType;
use oxcd_api::mvccpb::KeyValue;
use oxcd_api::v3electionpb::election_server::Election;
use oxcd_api::v3electionpb::{
    CampaignRequest, CampaignResponse, LeaderKey, LeaderRequest, LeaderResponse, ProclaimRequest,
    ProclaimResponse, ResignRequest, ResignResponse,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Request, Response, Status};

use super::lock::{
    by_create_revision, created_at, delete_op, get_key, get_op, lease_key, prefix_end, put_op,
    range_at, recipe_error, DeleteOnDrop, Keys,
};
use crate::error::ServerError;
use crate::server::EtcdServer;

/// etcd's texts for the election's own errors (code `Unknown`, as etcd sends them).
const NOT_LEADER: &str = "election: not leader";
const NO_LEADER: &str = "election: no leader";
const MISSING_LEADER_KEY: &str = "\"leader\" field must be provided";

/// Leader proclamations queued for one Observe stream before its task waits for the client.
const OBSERVE_QUEUE: usize = 16;

fn unknown(message: &str) -> Status {
    Status::new(Code::Unknown, message)
}

/// Why a proclamation failed: the store failed, or the caller no longer leads.
enum ProclaimError {
    Store(ServerError),
    NotLeader,
}

impl From<ProclaimError> for Status {
    fn from(e: ProclaimError) -> Status {
        match e {
            ProclaimError::Store(e) => recipe_error(e),
            ProclaimError::NotLeader => unknown(NOT_LEADER),
        }
    }
}

/// The etcd Election service.
pub struct ElectionService {
    keys: Keys,
}

type ObserveStream = Pin<Box<dyn Stream<Item = Result<LeaderResponse, Status>> + Send>>;

impl ElectionService {
    pub fn new(server: Arc<EtcdServer>) -> ElectionService {
        ElectionService {
            keys: Keys::new(server),
        }
    }

    /// The service acting for whoever sent `request`.
    async fn for_request<T>(&self, request: &Request<T>) -> Result<ElectionService, Status> {
        Ok(ElectionService {
            keys: self.keys.for_request(request).await?,
        })
    }

    async fn campaign(&self, req: CampaignRequest) -> Result<CampaignResponse, Status> {
        let lease = self
            .keys
            .session_lease(req.lease)
            .await
            .map_err(recipe_error)?;
        let mut prefix = req.name.clone();
        prefix.push(b'/');
        let key = lease_key(&prefix, lease);
        let txn = TxnRequest {
            compare: vec![created_at(&key, 0)],
            success: vec![put_op(&key, &req.value, lease)],
            failure: vec![get_op(get_key(&key))],
        };
        let resp = self.keys.txn(txn).await.map_err(recipe_error)?;
        let header = resp.header;
        let mut rev = header.as_ref().map_or(0, |h| h.revision);
        if !resp.succeeded {
            // This lease campaigns already: resume its candidacy with the new value.
            let kv = range_at(&resp, 0)
                .and_then(|r| r.kvs.first())
                .cloned()
                .unwrap_or_default();
            rev = kv.create_revision;
            if kv.value != req.value {
                if let Err(e) = self.proclaim(&key, rev, lease, &req.value).await {
                    self.resign(&key, rev).await.ok();
                    return Err(e.into());
                }
            }
        }
        // A candidate that stops waiting withdraws.
        // (etcd withdraws only a cancelled candidate; one whose wait failed stays queued).
        let cleanup = DeleteOnDrop::new(&self.keys, key.clone(), rev);
        let waited = self.keys.wait_deletes(&prefix, rev - 1).await;
        cleanup.disarm();
        waited.map_err(recipe_error)?;
        Ok(CampaignResponse {
            header,
            leader: Some(LeaderKey {
                name: req.name,
                key,
                rev,
                lease,
            }),
        })
    }

    /// Puts `value` at the leader's key if it is still the key created at `rev`.
    async fn proclaim(
        &self,
        key: &[u8],
        rev: i64,
        lease: i64,
        value: &[u8],
    ) -> Result<ProclaimResponse, ProclaimError> {
        let txn = TxnRequest {
            compare: vec![created_at(key, rev)],
            success: vec![put_op(key, value, lease)],
            failure: Vec::new(),
        };
        let resp = self.keys.txn(txn).await.map_err(ProclaimError::Store)?;
        if !resp.succeeded {
            return Err(ProclaimError::NotLeader);
        }
        Ok(ProclaimResponse {
            header: resp.header,
        })
    }

    /// Deletes the leader's key if it is still the key created at `rev`.
    async fn resign(&self, key: &[u8], rev: i64) -> Result<ResignResponse, ServerError> {
        let txn = TxnRequest {
            compare: vec![created_at(key, rev)],
            success: vec![delete_op(key)],
            failure: Vec::new(),
        };
        let resp = self.keys.txn(txn).await?;
        Ok(ResignResponse {
            header: resp.header,
        })
    }

    /// The oldest candidate's key under `name/`, with the read's header.
    async fn leader(&self, name: &[u8]) -> Result<LeaderResponse, ServerError> {
        let mut prefix = name.to_vec();
        prefix.push(b'/');
        let resp = self
            .keys
            .range(by_create_revision(&prefix, SortOrder::Ascend))
            .await?;
        Ok(LeaderResponse {
            header: resp.header,
            kv: resp.kvs.into_iter().next(),
        })
    }
}

#[tonic::async_trait]
impl Election for ElectionService {
    async fn campaign(
        &self,
        request: Request<CampaignRequest>,
    ) -> Result<Response<CampaignResponse>, Status> {
        let service = self.for_request(&request).await?;
        let resp = service.campaign(request.into_inner()).await?;
        Ok(Response::new(resp))
    }

    async fn proclaim(
        &self,
        request: Request<ProclaimRequest>,
    ) -> Result<Response<ProclaimResponse>, Status> {
        let service = self.for_request(&request).await?;
        let req = request.into_inner();
        let Some(leader) = req.leader else {
            return Err(unknown(MISSING_LEADER_KEY));
        };
        let lease = service
            .keys
            .session_lease(leader.lease)
            .await
            .map_err(recipe_error)?;
        let resp =
            ElectionService::proclaim(&service, &leader.key, leader.rev, lease, &req.value).await?;
        Ok(Response::new(resp))
    }

    async fn leader(
        &self,
        request: Request<LeaderRequest>,
    ) -> Result<Response<LeaderResponse>, Status> {
        let service = self.for_request(&request).await?;
        let resp = ElectionService::leader(&service, &request.into_inner().name)
            .await
            .map_err(recipe_error)?;
        if resp.kv.is_none() {
            return Err(unknown(NO_LEADER));
        }
        Ok(Response::new(resp))
    }

    type ObserveStream = ObserveStream;

    async fn observe(
        &self,
        request: Request<LeaderRequest>,
    ) -> Result<Response<Self::ObserveStream>, Status> {
        let keys = self.keys.for_request(&request).await?;
        let name = request.into_inner().name;
        let (tx, rx) = mpsc::channel(OBSERVE_QUEUE);
        tokio::spawn(async move {
            if let Err(e) = observe(&keys, name, &tx).await {
                let _ = tx.send(Err(recipe_error(e))).await;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn resign(
        &self,
        request: Request<ResignRequest>,
    ) -> Result<Response<ResignResponse>, Status> {
        let service = self.for_request(&request).await?;
        let Some(leader) = request.into_inner().leader else {
            return Err(unknown(MISSING_LEADER_KEY));
        };
        let resp = ElectionService::resign(&service, &leader.key, leader.rev)
            .await
            .map_err(recipe_error)?;
        Ok(Response::new(resp))
    }
}

/// Streams every leader of election `name` and each of its proclamations, in order: the
/// current leader (or, when there is none, the first candidate to appear), then its new
/// values until its key is deleted, then the next leader. Ends without error when the client
/// goes away.
async fn observe(
    keys: &Keys,
    name: Vec<u8>,
    out: &mpsc::Sender<Result<LeaderResponse, Status>>,
) -> Result<(), ServerError> {
    let mut prefix = name;
    prefix.push(b'/');
    loop {
        let current = keys
            .range(by_create_revision(&prefix, SortOrder::Ascend))
            .await?;
        let (mut header, kv): (_, KeyValue) = match current.kvs.into_iter().next() {
            Some(kv) => (current.header.unwrap_or_default(), kv),
            None => {
                // No leader: wait for the first key put under the prefix.
                let from = current.header.map_or(0, |h| h.revision);
                let mut watcher = keys.watch(&prefix, &prefix_end(&prefix), from)?;
                loop {
                    let resp = tokio::select! {
                        resp = watcher.next() => resp?,
                        _ = out.closed() => return Ok(()),
                    };
                    let put = resp
                        .events
                        .into_iter()
                        .find(|e| e.r#type == EventType::Put as i32)
                        .and_then(|e| e.kv);
                    if let Some(kv) = put {
                        break (keys.header(kv.mod_revision), kv);
                    }
                }
            }
        };
        if header.revision == 0 {
            header = keys.header(kv.mod_revision);
        }
        let leader_key = kv.key.clone();
        let next_rev = header.revision + 1;
        let first = LeaderResponse {
            header: Some(header),
            kv: Some(kv),
        };
        if out.send(Ok(first)).await.is_err() {
            return Ok(());
        }
        // Follow the leader's key until it is deleted.
        let mut watcher = keys.watch(&leader_key, &[], next_rev)?;
        'leader: loop {
            let resp = tokio::select! {
                resp = watcher.next() => resp?,
                _ = out.closed() => return Ok(()),
            };
            let header = keys.header(resp.revision);
            for event in resp.events {
                if event.r#type == EventType::Delete as i32 {
                    break 'leader;
                }
                let proclaimed = LeaderResponse {
                    header: Some(header),
                    kv: event.kv,
                };
                if out.send(Ok(proclaimed)).await.is_err() {
                    return Ok(());
                }
            }
        }
    }
}
