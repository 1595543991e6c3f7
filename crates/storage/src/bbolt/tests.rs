use std::collections::BTreeMap;
use std::path::PathBuf;

use super::*;

/// Buckets of sorted entries, as a source and as what a reader gives back.
type Model = BTreeMap<Vec<u8>, BTreeMap<Vec<u8>, Vec<u8>>>;

struct ModelSource(Model);

impl BucketSource for ModelSource {
    fn buckets(&self) -> Vec<Vec<u8>> {
        self.0.keys().cloned().collect()
    }

    fn scan(&self, bucket: &[u8], f: &mut Visit<'_>) -> Result<()> {
        for (k, v) in &self.0[bucket] {
            f(k, v)?;
        }
        Ok(())
    }
}

fn write_file(model: &Model) -> (tempfile::NamedTempFile, u64) {
    let src = ModelSource(model.clone());
    let layout = Layout::plan(&src).unwrap();
    let mut out = Vec::new();
    let mut last = 0;
    let n = write(&layout, &src, &mut out, &mut |p| last = p).unwrap();
    assert_eq!(n, out.len() as u64);
    assert_eq!(n, layout.file_size());
    assert_eq!(last, n);
    let mut f = tempfile::NamedTempFile::new().unwrap();
    std::io::Write::write_all(&mut f, &out).unwrap();
    (f, n)
}

fn read_model(r: &Reader) -> Model {
    let mut m = Model::new();
    for name in r.buckets().unwrap() {
        let mut b = BTreeMap::new();
        let mut last: Option<Vec<u8>> = None;
        assert!(r
            .scan(&name, &mut |k, v| {
                if let Some(l) = &last {
                    assert!(l.as_slice() < k, "keys out of order");
                }
                last = Some(k.to_vec());
                b.insert(k.to_vec(), v.to_vec());
                Ok(())
            })
            .unwrap());
        m.insert(name, b);
    }
    m
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/snapshot")
        .join(name)
}

#[test]
fn written_files_read_back_for_every_shape() {
    let mut rng_state = 0x2545_f491_4f6c_dd1du64;
    let mut rand = move || {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        rng_state
    };
    let mut model = Model::new();
    model.insert(b"empty".to_vec(), BTreeMap::new());
    model.insert(
        b"one".to_vec(),
        [(b"k".to_vec(), b"v".to_vec())].into_iter().collect(),
    );
    // Enough entries for three levels of branch pages.
    let many: BTreeMap<_, _> = (0u32..120_000)
        .map(|i| (i.to_be_bytes().to_vec(), vec![b'x'; (rand() % 40) as usize]))
        .collect();
    model.insert(b"key".to_vec(), many);
    // Values larger than a page overflow; an empty key and value are allowed.
    let big: BTreeMap<_, _> = [
        (Vec::new(), Vec::new()),
        (b"a".to_vec(), vec![1u8; 3 * PAGE_SIZE + 5]),
        (b"b".to_vec(), vec![2u8; 10]),
        (b"c".to_vec(), vec![3u8; PAGE_SIZE - 32]),
    ]
    .into_iter()
    .collect();
    model.insert(b"big".to_vec(), big);
    let (f, n) = write_file(&model);
    let r = Reader::open(f.path()).unwrap();
    assert_eq!(r.size(), n);
    assert_eq!(
        r.buckets().unwrap(),
        model.keys().cloned().collect::<Vec<_>>()
    );
    assert_eq!(read_model(&r), model);
    assert!(!r.scan(b"missing", &mut |_, _| Ok(())).unwrap());
}

#[test]
fn no_bucket_at_all() {
    let (f, n) = write_file(&Model::new());
    assert_eq!(n, 4 * PAGE_SIZE as u64);
    let r = Reader::open(f.path()).unwrap();
    assert!(r.buckets().unwrap().is_empty());
}

/// Snapshots saved by real etcd 3.4.23 and 3.5.1 (see tests/fixtures/snapshot/make.sh): their
/// counts match what `etcdctl snapshot status` reports for them, and they survive a rewrite.
#[test]
fn reads_and_rewrites_etcd_files() {
    for (file, total_keys) in [("etcd-3.4.db", 314), ("etcd-3.5.db", 316)] {
        let path = fixture(file);
        let len = std::fs::metadata(&path).unwrap().len();
        // The Snapshot RPC appends a SHA-256 of the database.
        assert_eq!(len % 512, 32);
        let r = Reader::new(std::fs::File::open(&path).unwrap(), len - 32).unwrap();
        let model = read_model(&r);
        let names: Vec<&[u8]> = model.keys().map(Vec::as_slice).collect();
        for want in [&b"key"[..], b"meta", b"lease", b"members", b"cluster"] {
            assert!(names.contains(&want), "{file}: no bucket {want:?}");
        }
        let count: usize = model.values().map(BTreeMap::len).sum();
        assert_eq!(count, total_keys, "{file}");
        assert!(
            model[&b"key"[..]][&[0, 0, 0, 0, 0, 0, 1, 52, b'_', 0, 0, 0, 0, 0, 0, 0, 0][..]].len()
                > 10_000
        );
        let (copy, _) = write_file(&model);
        assert_eq!(read_model(&Reader::open(copy.path()).unwrap()), model);
    }
}

#[test]
fn damaged_files_are_refused() {
    let mut model = Model::new();
    let entries: BTreeMap<_, _> = (0u32..2000)
        .map(|i| (i.to_be_bytes().to_vec(), vec![7u8; 50]))
        .collect();
    model.insert(b"key".to_vec(), entries);
    let (f, n) = write_file(&model);
    let good = std::fs::read(f.path()).unwrap();
    let open = |bytes: &[u8]| -> Result<Model> {
        let mut t = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut t, bytes).unwrap();
        let r = Reader::open(t.path())?;
        let mut m = Model::new();
        for name in r.buckets()? {
            let mut b = BTreeMap::new();
            r.scan(&name, &mut |k, v| {
                b.insert(k.to_vec(), v.to_vec());
                Ok(())
            })?;
            m.insert(name, b);
        }
        Ok(m)
    };
    assert_eq!(open(&good).unwrap(), model);
    // Truncated: the meta pages count pages that are not there.
    for cut in [0, 100, PAGE_SIZE * 2, n as usize - 1] {
        assert!(open(&good[..cut]).is_err(), "cut at {cut}");
    }
    // Both meta pages damaged.
    let mut bad = good.clone();
    bad[PAGE_HEADER + 20] ^= 1;
    bad[PAGE_SIZE + PAGE_HEADER + 20] ^= 1;
    assert!(open(&bad).is_err());
    // One meta page damaged: the other one serves.
    let mut one = good.clone();
    one[PAGE_SIZE + PAGE_HEADER + 20] ^= 1;
    assert_eq!(open(&one).unwrap(), model);
    // A page header or an element offset damaged.
    for at in [
        3 * PAGE_SIZE,
        3 * PAGE_SIZE + 8,
        3 * PAGE_SIZE + PAGE_HEADER + 4,
    ] {
        let mut bad = good.clone();
        bad[at + 1] ^= 0x7f;
        assert!(open(&bad).is_err(), "flip at {at}");
    }
}
