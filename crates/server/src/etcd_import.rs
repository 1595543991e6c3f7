//! Starting on a data dir that `etcdctl snapshot restore` wrote, as etcd would.
//!
//! etcd's restore leaves a bbolt backend in `member/snap/db` and an etcd WAL that founds the
//! new cluster (its first record names the member and cluster ids; then one conf change per
//! founding member, all committed, which the backend's consistent index already counts). oxcd
//! keeps neither format, so on such a dir it takes the data over: it checks that the dir was
//! restored for this very member and never ran (the backend then holds everything), moves
//! `member/` aside to `member.etcd/`, loads the backend into a new redb file with
//! [`SnapshotFile::restore_into`], and founds the cluster on it from the same flags, which give
//! the same ids, as `oxcdutl snapshot restore` does ([`crate::bootstrap::initialize`]). A dir where etcd ran is refused: its WAL may hold entries
//! the backend does not, so it must come over as a snapshot (`etcdctl snapshot save`, then
//! `oxcdutl snapshot restore`).

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use oxcd_storage::{Backend, BackendConfig, RestoreOptions, SnapshotFile};

use crate::config::ServerConfig;
use crate::error::ServerError;

/// bbolt's magic, as its first meta page holds it at byte 16.
const BBOLT_MAGIC: [u8; 4] = 0xED0C_DAEDu32.to_le_bytes();

/// etcd WAL record types.
const WAL_METADATA: i64 = 1;

/// Takes over an etcd data dir, if `cfg`'s is one; does nothing otherwise.
pub fn take_over(cfg: &ServerConfig) -> Result<(), ServerError> {
    let db = cfg.backend_path();
    if !is_bbolt(&db) {
        return Ok(());
    }
    let err = |what: String| {
        ServerError::Startup(format!("etcd data dir {}: {what}", cfg.data_dir.display()))
    };
    let (member_id, cluster_id) = read_wal_ids(&cfg.wal_dir()).map_err(err)?;
    let want = (
        cfg.local_member_id().map_err(|e| err(e.to_string()))?,
        cfg.cluster_id().map_err(|e| err(e.to_string()))?,
    );
    if (member_id, cluster_id) != want {
        return Err(err(format!(
            "restored for member {member_id:x} of cluster {cluster_id:x}, but these flags make \
             member {:x} of cluster {:x}: start with the --name, --initial-cluster, \
             --initial-cluster-token and --initial-advertise-peer-urls given to the restore",
            want.0, want.1
        )));
    }
    let snap = SnapshotFile::open(&db, true).map_err(|e| err(e.to_string()))?;
    let founders = cfg.initial_members().map_err(|e| err(e.to_string()))?.len() as u64;
    let applied = snap.consistent_index().map_err(|e| err(e.to_string()))?;
    if applied != founders {
        return Err(err(format!(
            "etcd has run on it (consistent index {applied}); bring its data over with \
             `etcdctl snapshot save` and `oxcdutl snapshot restore`"
        )));
    }

    let member = cfg.member_dir();
    let aside = PathBuf::from(format!("{}.etcd", member.display()));
    if aside.exists() {
        return Err(err(format!("{} exists", aside.display())));
    }
    fs::rename(&member, &aside)
        .map_err(|e| err(format!("cannot move {}: {e}", member.display())))?;
    let wal = cfg.wal_dir();
    if wal.exists() {
        let wal_aside = PathBuf::from(format!("{}.etcd", wal.display()));
        fs::rename(&wal, &wal_aside)
            .map_err(|e| err(format!("cannot move {}: {e}", wal.display())))?;
    }
    let snap =
        SnapshotFile::open(&aside.join("snap").join("db"), true).map_err(|e| err(e.to_string()))?;
    fs::create_dir_all(cfg.snap_dir()).map_err(|e| err(e.to_string()))?;
    let backend = Backend::open(&db, BackendConfig::default())?;
    let restored = snap
        .restore_into(&backend, RestoreOptions::default(), &mut |_| {})
        .map_err(|e| err(e.to_string()))?;
    drop(backend);
    crate::bootstrap::initialize(cfg)?;
    tracing::info!(
        "etcd-data" = %aside.display(),
        revision = restored.revision,
        keys = restored.entries,
        "took over a data dir restored by etcd"
    );
    Ok(())
}

fn is_bbolt(path: &Path) -> bool {
    let mut head = [0u8; 20];
    fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok()
        && head[16..20] == BBOLT_MAGIC
}

/// The member and cluster ids in the metadata record at the head of etcd's first WAL file.
/// A record is a little-endian u64 frame (the length in its low 56 bits, padding in bits
/// 56-58 when bit 63 is set) around a `walpb.Record` (type = 1, crc = 2, data = 3); the
/// metadata's data is an `etcdserverpb.Metadata` (NodeID = 1, ClusterID = 2).
fn read_wal_ids(wal_dir: &Path) -> Result<(u64, u64), String> {
    let mut files: Vec<PathBuf> = fs::read_dir(wal_dir)
        .map_err(|e| format!("{}: {e}", wal_dir.display()))?
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    files.sort();
    let first = files.first().ok_or("no WAL file")?;
    let mut head = Vec::new();
    fs::File::open(first)
        .and_then(|f| f.take(64 * 1024).read_to_end(&mut head))
        .map_err(|e| format!("{}: {e}", first.display()))?;
    let mut at = 0;
    while at + 8 <= head.len() {
        let frame = u64::from_le_bytes(head[at..at + 8].try_into().unwrap());
        let len = (frame & 0x00ff_ffff_ffff_ffff) as usize;
        let pad = if frame >> 63 == 1 {
            ((frame >> 56) & 0x7) as usize
        } else {
            0
        };
        let rec = head
            .get(at + 8..at + 8 + len)
            .ok_or("truncated WAL record")?;
        at += 8 + len + pad;
        let fields = proto_fields(rec)?;
        if field_varint(&fields, 1) == Some(WAL_METADATA as u64) {
            let data = fields
                .iter()
                .find(|f| f.0 == 3)
                .and_then(|f| f.2)
                .ok_or("metadata record without data")?;
            let meta = proto_fields(data)?;
            return Ok((
                field_varint(&meta, 1).unwrap_or(0),
                field_varint(&meta, 2).unwrap_or(0),
            ));
        }
    }
    Err(format!("no metadata record in {}", first.display()))
}

/// A protobuf field: number, varint value, or bytes.
type Field<'a> = (u64, u64, Option<&'a [u8]>);

fn field_varint(fields: &[Field<'_>], number: u64) -> Option<u64> {
    fields
        .iter()
        .find(|f| f.0 == number && f.2.is_none())
        .map(|f| f.1)
}

/// The varint and length-delimited fields of a protobuf message (enough for etcd's WAL head).
fn proto_fields(mut b: &[u8]) -> Result<Vec<Field<'_>>, String> {
    fn varint(b: &mut &[u8]) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = b.split_first().ok_or("truncated varint")?;
            *b = rest;
            v |= ((byte & 0x7f) as u64) << shift;
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("varint too long".into())
    }
    let mut out = Vec::new();
    while !b.is_empty() {
        let key = varint(&mut b)?;
        match key & 7 {
            0 => out.push((key >> 3, varint(&mut b)?, None)),
            2 => {
                let len = varint(&mut b)? as usize;
                if len > b.len() {
                    return Err("truncated field".into());
                }
                let (data, rest) = b.split_at(len);
                out.push((key >> 3, 0, Some(data)));
                b = rest;
            }
            t => return Err(format!("unexpected wire type {t}")),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_ids_from_an_etcd_wal_head() {
        let dir = tempfile::tempdir().unwrap();
        // crc record (type 4, crc 0), then metadata {NodeID: 0x1234, ClusterID: 0x99}.
        let mut wal = Vec::new();
        for rec in [
            vec![0x08, 0x04],
            vec![0x08, 0x01, 0x1a, 0x06, 0x08, 0xb4, 0x24, 0x10, 0x99, 0x01],
        ] {
            let rec: Vec<u8> = rec;
            let pad = (8 - rec.len() % 8) % 8;
            let mut frame = rec.len() as u64;
            if pad > 0 {
                frame |= (0x80 | pad as u64) << 56;
            }
            wal.extend_from_slice(&frame.to_le_bytes());
            wal.extend_from_slice(&rec);
            wal.extend(std::iter::repeat_n(0, pad));
        }
        fs::write(
            dir.path().join("0000000000000000-0000000000000000.wal"),
            wal,
        )
        .unwrap();
        assert_eq!(read_wal_ids(dir.path()).unwrap(), (0x1234, 0x99));
    }
}
