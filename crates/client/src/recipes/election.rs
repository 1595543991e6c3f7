//! Leader election, as etcd's `concurrency.Election`.

use futures::Stream;
use oxcd_api::etcdserverpb::request_op::Request;
use oxcd_api::etcdserverpb::response_op::Response;
use oxcd_api::etcdserverpb::{
    DeleteRangeRequest, PutRequest, RangeRequest, RangeResponse, ResponseHeader, TxnRequest,
    WatchCreateRequest,
};
use oxcd_api::mvccpb::event::EventType;
use oxcd_api::mvccpb::KeyValue;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::mutex::op;
use super::{create_revision_is, edge_of_prefix, wait_deletes, Session};
use crate::error::{Error, Result};
use crate::Client;

/// Leaders observed but not yet read by the observer.
const OBSERVE_BUFFER: usize = 16;

/// One candidate in the election `name`: candidates queue as keys `name/<lease>`; the one
/// created first leads, and its value is the leader's proclamation.
///
/// ```no_run
/// # async fn example(client: oxcd_client::Client) -> oxcd_client::Result<()> {
/// use oxcd_client::recipes::{Election, Session};
///
/// let session = Session::new(&client, 10).await?;
/// let mut election = Election::new(&session, "service/leader");
/// election.campaign("host-a").await?; // waits until elected
/// election.proclaim("host-a, v2").await?;
/// election.resign().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Election<'s> {
    session: &'s Session,
    prefix: Vec<u8>,
    /// This candidate's key and create revision while campaigning or leading.
    leader: Option<(Vec<u8>, i64)>,
    header: Option<ResponseHeader>,
}

impl<'s> Election<'s> {
    /// A candidate (not yet campaigning) of the election `name`.
    pub fn new(session: &'s Session, name: &str) -> Election<'s> {
        Election {
            session,
            prefix: format!("{name}/").into_bytes(),
            leader: None,
            header: None,
        }
    }

    /// Enters the election with `value` and waits until this candidate leads.
    pub async fn campaign(&mut self, value: impl Into<Vec<u8>>) -> Result<()> {
        let value = value.into();
        let client = self.session.client();
        let key = [
            self.prefix.as_slice(),
            format!("{:x}", self.session.lease()).as_bytes(),
        ]
        .concat();
        let request = TxnRequest {
            compare: vec![create_revision_is(&key, 0)],
            success: vec![op(Request::RequestPut(PutRequest {
                key: key.clone(),
                value: value.clone(),
                lease: self.session.lease(),
                ..Default::default()
            }))],
            failure: vec![op(Request::RequestRange(RangeRequest {
                key: key.clone(),
                ..Default::default()
            }))],
        };
        let response = client.kv().txn(request).await?;
        let mut revision = response.header.as_ref().map_or(0, |h| h.revision);
        if !response.succeeded {
            let existing = response
                .responses
                .into_iter()
                .find_map(|r| match r.response {
                    Some(Response::ResponseRange(range)) => range.kvs.into_iter().next(),
                    _ => None,
                });
            if let Some(kv) = existing {
                revision = kv.create_revision;
                self.leader = Some((key.clone(), revision));
                if kv.value != value {
                    if let Err(err) = self.proclaim(value).await {
                        let _ = self.resign().await;
                        return Err(err);
                    }
                }
            }
        }
        self.leader = Some((key, revision));
        match wait_deletes(client, &self.prefix, revision - 1).await {
            Ok(header) => {
                self.header = Some(header);
                Ok(())
            }
            Err(err) => {
                let _ = self.resign().await;
                Err(err)
            }
        }
    }

    /// Changes the leader's value without a new election; fails unless this candidate
    /// still holds its key.
    pub async fn proclaim(&mut self, value: impl Into<Vec<u8>>) -> Result<()> {
        let Some((key, revision)) = self.leader.clone() else {
            return Err(Error::NotLeader);
        };
        let request = TxnRequest {
            compare: vec![create_revision_is(&key, revision)],
            success: vec![op(Request::RequestPut(PutRequest {
                key,
                value: value.into(),
                lease: self.session.lease(),
                ..Default::default()
            }))],
            failure: Vec::new(),
        };
        let response = self.session.client().kv().txn(request).await?;
        if !response.succeeded {
            self.leader = None;
            return Err(Error::NotLeader);
        }
        Ok(())
    }

    /// Leaves the election (deletes this candidate's key if it is still its own).
    pub async fn resign(&mut self) -> Result<()> {
        let Some((key, revision)) = self.leader.take() else {
            return Ok(());
        };
        let request = TxnRequest {
            compare: vec![create_revision_is(&key, revision)],
            success: vec![op(Request::RequestDeleteRange(DeleteRangeRequest {
                key,
                ..Default::default()
            }))],
            failure: Vec::new(),
        };
        self.session.client().kv().txn(request).await?;
        Ok(())
    }

    /// This candidate's key, while campaigning or leading.
    pub fn key(&self) -> Option<&[u8]> {
        self.leader.as_ref().map(|(key, _)| key.as_slice())
    }

    /// The current leader's key and value, if any.
    pub async fn leader(&self) -> Result<Option<KeyValue>> {
        leader_of(self.session.client(), &self.prefix).await
    }

    /// Every leader and every proclamation from now on, starting with the current leader
    /// (waiting for one if there is none), each as a one-key [`RangeResponse`].
    pub fn observe(&self) -> impl Stream<Item = Result<RangeResponse>> + use<> {
        let (tx, rx) = mpsc::channel(OBSERVE_BUFFER);
        let client = self.session.client().clone();
        let prefix = self.prefix.clone();
        tokio::spawn(async move {
            if let Err(err) = observe(&client, &prefix, &tx).await {
                let _ = tx.send(Err(err)).await;
            }
        });
        ReceiverStream::new(rx)
    }
}

async fn leader_of(client: &Client, prefix: &[u8]) -> Result<Option<KeyValue>> {
    let response = client.kv().range(edge_of_prefix(prefix, true, 0)).await?;
    Ok(response.kvs.into_iter().next())
}

/// Sends each leader of the election under `prefix` until the receiver is dropped.
async fn observe(
    client: &Client,
    prefix: &[u8],
    tx: &mpsc::Sender<Result<RangeResponse>>,
) -> Result<()> {
    loop {
        let first = client.kv().range(edge_of_prefix(prefix, true, 0)).await?;
        let mut header = first.header.unwrap_or_default();
        let leader = match first.kvs.into_iter().next() {
            Some(kv) => kv,
            None => {
                // No leader: wait for the first candidate's put.
                let mut watch = client
                    .watch()
                    .watch(WatchCreateRequest {
                        key: prefix.to_vec(),
                        range_end: crate::services::prefix_end(prefix),
                        start_revision: header.revision,
                        ..Default::default()
                    })
                    .await?;
                let mut found = None;
                while found.is_none() {
                    let Some(response) = watch.message().await else {
                        return Ok(());
                    };
                    let response = response?;
                    found = response
                        .events
                        .into_iter()
                        .find(|e| e.r#type == EventType::Put as i32)
                        .and_then(|e| e.kv);
                    if let Some(h) = response.header {
                        header = h;
                    }
                }
                let kv = found.expect("loop ends with a leader");
                header.revision = kv.mod_revision;
                kv
            }
        };
        let announce = |kv: KeyValue, header: ResponseHeader| RangeResponse {
            header: Some(header),
            kvs: vec![kv],
            more: false,
            count: 1,
        };
        if tx.send(Ok(announce(leader.clone(), header))).await.is_err() {
            return Ok(());
        }
        // Follow this leader's key until it is deleted.
        let mut watch = client
            .watch()
            .watch(WatchCreateRequest {
                key: leader.key.clone(),
                start_revision: header.revision + 1,
                ..Default::default()
            })
            .await?;
        'leader: while let Some(response) = watch.message().await {
            let response = response?;
            let header = response.header.unwrap_or_default();
            for event in response.events {
                if event.r#type == EventType::Delete as i32 {
                    break 'leader;
                }
                if let Some(kv) = event.kv {
                    if tx.send(Ok(announce(kv, header))).await.is_err() {
                        return Ok(());
                    }
                }
            }
        }
    }
}
