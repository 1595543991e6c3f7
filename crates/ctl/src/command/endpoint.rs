//! `endpoint health|status|hashkv`, each endpoint asked on its own; `--cluster` asks every
//! member's client URLs.

use std::time::Instant;

use oxcd_api::etcdserverpb::{MemberListRequest, RangeRequest};

use crate::cli::{EndpointArgs, EndpointCommand};
use crate::context::{emit, Ctx};
use crate::exit::{code, error_text, CmdResult, Exit};
use crate::go;
use crate::output::Health;

/// The endpoints to ask: `--endpoints`, or with `--cluster` every member's client URLs.
pub async fn endpoints(ctx: &Ctx, cluster: bool) -> Result<Vec<String>, Exit> {
    if !cluster {
        return Ok(ctx.flags.endpoints.clone());
    }
    let client = ctx.client().await?;
    let members = ctx
        .request(client.cluster().member_list(MemberListRequest {
            linearizable: false,
        }))
        .await
        .map_err(|e| {
            let message = e.message.unwrap_or_default();
            Exit::new(
                code::ERROR,
                format!("failed to fetch endpoints from etcd cluster member list: {message}"),
            )
        })?;
    Ok(members
        .members
        .into_iter()
        .flat_map(|m| m.client_ur_ls)
        .collect())
}

pub async fn endpoint(ctx: &Ctx, a: EndpointArgs) -> CmdResult {
    match a.command {
        EndpointCommand::Health(_) => health(ctx, a.cluster).await,
        EndpointCommand::Status(_) => status(ctx, a.cluster).await,
        EndpointCommand::Hashkv { rev, .. } => hash_kv(ctx, a.cluster, rev).await,
    }
}

async fn health(ctx: &Ctx, cluster: bool) -> CmdResult {
    let printer = ctx.printer()?;
    let endpoints = endpoints(ctx, cluster).await?;
    let checks = endpoints.iter().map(|ep| async move {
        let client = match ctx.client_on(std::slice::from_ref(ep)).await {
            Ok(client) => client,
            Err(e) => {
                return Health {
                    endpoint: ep.clone(),
                    health: false,
                    took: String::new(),
                    error: e.message.unwrap_or_default(),
                }
            }
        };
        let start = Instant::now();
        let kv = client.kv();
        let read = kv.range(RangeRequest {
            key: b"health".to_vec(),
            ..Default::default()
        });
        let result = tokio::time::timeout(ctx.flags.command_timeout, read).await;
        let took = go::duration(start.elapsed());
        let error = match result {
            Ok(Ok(_)) => String::new(),
            Ok(Err(e)) if e.etcd() == Some(oxcd_api::EtcdError::PermissionDenied) => String::new(),
            Ok(Err(e)) => error_text(&e),
            Err(_) => "context deadline exceeded".to_owned(),
        };
        Health {
            endpoint: ep.clone(),
            health: error.is_empty(),
            took,
            error,
        }
    });
    let list = futures::future::join_all(checks).await;
    let (stdout, stderr) = printer.endpoint_health(&list)?;
    eprint!("{stderr}");
    emit(Ok(stdout))?;
    if list.iter().any(|h| !h.error.is_empty()) {
        return Err(Exit::new(code::ERROR, "unhealthy cluster"));
    }
    Ok(())
}

async fn status(ctx: &Ctx, cluster: bool) -> CmdResult {
    let printer = ctx.printer()?;
    let endpoints = endpoints(ctx, cluster).await?;
    let mut list = Vec::new();
    let mut failed = false;
    for ep in endpoints {
        let client = ctx.client_on(std::slice::from_ref(&ep)).await?;
        match ctx.request(client.maintenance().status_at(&ep)).await {
            Ok(status) => list.push((ep, status)),
            Err(e) => {
                failed = true;
                eprintln!(
                    "Failed to get the status of endpoint {ep} ({})",
                    e.message.unwrap_or_default()
                );
            }
        }
    }
    emit(printer.endpoint_status(&list))?;
    if failed {
        return Err(Exit::silent(code::ERROR));
    }
    Ok(())
}

async fn hash_kv(ctx: &Ctx, cluster: bool, rev: i64) -> CmdResult {
    let printer = ctx.printer()?;
    let endpoints = endpoints(ctx, cluster).await?;
    let mut list = Vec::new();
    let mut last_error = None;
    for ep in endpoints {
        let client = ctx.client_on(std::slice::from_ref(&ep)).await?;
        match ctx.request(client.maintenance().hash_kv_at(&ep, rev)).await {
            Ok(hash) => list.push((ep, hash)),
            Err(e) => {
                let message = e.message.unwrap_or_default();
                eprintln!("Failed to get the hash of endpoint {ep} ({message})");
                last_error = Some(message);
            }
        }
    }
    emit(printer.endpoint_hash_kv(&list))?;
    match last_error {
        Some(message) => Err(Exit::new(code::ERROR, message)),
        None => Ok(()),
    }
}
