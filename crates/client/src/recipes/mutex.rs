//! A distributed lock, as etcd's `concurrency.Mutex`.

use oxcd_api::etcdserverpb::request_op::Request;
use oxcd_api::etcdserverpb::response_op::Response;
use oxcd_api::etcdserverpb::{
    DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, ResponseHeader, TxnRequest,
};

use super::{create_revision_is, edge_of_prefix, wait_deletes, Session};
use crate::error::Result;

/// A lock named by a key prefix, held through a [`Session`]'s lease: if the holder dies,
/// its lease expires and the next waiter gets the lock.
///
/// ```no_run
/// # async fn example(client: oxcd_client::Client) -> oxcd_client::Result<()> {
/// use oxcd_client::recipes::{Mutex, Session};
///
/// let session = Session::new(&client, 10).await?;
/// let mut mutex = Mutex::new(&session, "jobs/lock");
/// mutex.lock().await?;
/// // ... only one holder at a time runs here ...
/// mutex.unlock().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Mutex<'s> {
    session: &'s Session,
    prefix: Vec<u8>,
    key: Vec<u8>,
    revision: i64,
    header: Option<ResponseHeader>,
}

impl<'s> Mutex<'s> {
    /// A mutex on `name` (keys `name/<lease>`), not yet locked.
    pub fn new(session: &'s Session, name: &str) -> Mutex<'s> {
        let prefix = format!("{name}/").into_bytes();
        let key = [
            prefix.as_slice(),
            format!("{:x}", session.lease()).as_bytes(),
        ]
        .concat();
        Mutex {
            session,
            prefix,
            key,
            revision: -1,
            header: None,
        }
    }

    /// Waits until this session holds the lock.
    pub async fn lock(&mut self) -> Result<()> {
        let client = self.session.client();
        let request = TxnRequest {
            compare: vec![create_revision_is(&self.key, 0)],
            success: vec![
                op(Request::RequestPut(PutRequest {
                    key: self.key.clone(),
                    lease: self.session.lease(),
                    ..Default::default()
                })),
                op(Request::RequestRange(edge_of_prefix(&self.prefix, true, 0))),
            ],
            failure: vec![
                op(Request::RequestRange(RangeRequest {
                    key: self.key.clone(),
                    ..Default::default()
                })),
                op(Request::RequestRange(edge_of_prefix(&self.prefix, true, 0))),
            ],
        };
        let response = client.kv().txn(request).await?;
        let header = response.header.unwrap_or_default();
        self.revision = header.revision;
        let mut ranges = response.responses.into_iter().map(|r| match r.response {
            Some(Response::ResponseRange(range)) => range.kvs,
            _ => Vec::new(),
        });
        let mine = ranges.next().unwrap_or_default();
        if !response.succeeded {
            // The key exists already (a second lock on the same session).
            self.revision = mine.first().map_or(self.revision, |kv| kv.create_revision);
        }
        let owner = ranges.next().unwrap_or_default();
        if owner
            .first()
            .is_none_or(|kv| kv.create_revision == self.revision)
        {
            self.header = Some(header);
            return Ok(());
        }
        match wait_deletes(client, &self.prefix, self.revision - 1).await {
            Ok(header) => {
                self.header = Some(header);
                Ok(())
            }
            Err(err) => {
                let _ = self.unlock().await;
                Err(err)
            }
        }
    }

    /// Releases the lock (deletes this session's key).
    pub async fn unlock(&mut self) -> Result<()> {
        self.session
            .client()
            .kv()
            .delete_range(DeleteRangeRequest {
                key: self.key.clone(),
                ..Default::default()
            })
            .await?;
        self.revision = -1;
        Ok(())
    }

    /// The key that holds (or waits for) the lock.
    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// The header of the answer with which the lock was taken.
    pub fn header(&self) -> Option<&ResponseHeader> {
        self.header.as_ref()
    }
}

pub(crate) fn op(request: Request) -> RequestOp {
    RequestOp {
        request: Some(request),
    }
}
