//! Reading a bbolt file: the top-level buckets and their entries, checked as they are read.

use std::fs::File;
use std::os::unix::fs::FileExt;

use super::{
    invalid, u32_at, u64_at, Meta, PageHeader, Result, Visit, BUCKET_HEADER, BUCKET_LEAF_FLAG,
    ELEMENT, FLAG_BRANCH, FLAG_LEAF, META_SIZE, PAGE_HEADER, PAGE_SIZE,
};

/// Deepest B+tree accepted: a damaged file must not send the reader round a loop.
const MAX_DEPTH: usize = 64;

/// A bbolt file opened for reading. Reads pages with positioned reads, one page (with its
/// overflow) in memory per tree level.
#[derive(Debug)]
pub struct Reader {
    file: File,
    /// Bytes of the file that belong to the database (a snapshot file has a trailer after).
    len: u64,
    page_size: u64,
    meta: Meta,
}

/// A tree's top: a page of the file, or the leaf of an inline bucket.
enum Root {
    Page(u64),
    Inline(Vec<u8>),
}

impl Reader {
    /// Opens the first `len` bytes of `file` as a bbolt database: finds the valid meta page
    /// with the newest transaction and checks that every page it counts is there.
    pub fn new(file: File, len: u64) -> Result<Reader> {
        let mut metas = Vec::new();
        // Meta 0 tells the page size; if it is damaged, meta 1 is where etcd's page size puts it.
        let mut buf = [0u8; PAGE_HEADER + META_SIZE];
        if len >= buf.len() as u64 {
            file.read_exact_at(&mut buf, 0)?;
            metas.extend(Meta::parse(&buf[PAGE_HEADER..]));
        }
        let second = metas
            .first()
            .map_or(PAGE_SIZE as u64, |m| m.page_size as u64);
        if len >= second + buf.len() as u64 {
            file.read_exact_at(&mut buf, second)?;
            metas.extend(Meta::parse(&buf[PAGE_HEADER..]));
        }
        let Some(meta) = metas.into_iter().max_by_key(|m| m.txid) else {
            return Err(invalid("no valid meta page (not a bbolt file, or damaged)"));
        };
        let page_size = meta.page_size as u64;
        if !(512..=1 << 20).contains(&page_size) || !page_size.is_power_of_two() {
            return Err(invalid(format!("page size {page_size}")));
        }
        let need = meta.pgid.saturating_mul(page_size);
        if need > len {
            return Err(invalid(format!(
                "truncated: {} pages of {page_size} bytes need {need} bytes, the file has {len}",
                meta.pgid
            )));
        }
        if meta.root < 2 || meta.root >= meta.pgid {
            return Err(invalid(format!("root page {} out of range", meta.root)));
        }
        Ok(Reader {
            file,
            len,
            page_size,
            meta,
        })
    }

    /// Opens a whole bbolt file.
    pub fn open(path: &std::path::Path) -> Result<Reader> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        Reader::new(file, len)
    }

    /// Bytes of the database: every page in use.
    pub fn size(&self) -> u64 {
        self.meta.pgid * self.page_size
    }

    /// Bytes given when opened, trailer included.
    pub fn file_len(&self) -> u64 {
        self.len
    }

    /// The names of the top-level buckets, in order.
    pub fn buckets(&self) -> Result<Vec<Vec<u8>>> {
        let mut names = Vec::new();
        self.walk(&Root::Page(self.meta.root), 0, true, &mut |k, _| {
            names.push(k.to_vec());
            Ok(())
        })?;
        Ok(names)
    }

    /// Calls `f` with each key and value of the top-level bucket `name`, in key order;
    /// returns false, calling nothing, when there is no such bucket.
    pub fn scan(&self, name: &[u8], f: &mut Visit<'_>) -> Result<bool> {
        let mut root = None;
        self.walk(&Root::Page(self.meta.root), 0, true, &mut |k, v| {
            if k == name {
                root = Some(bucket_root(v)?);
            }
            Ok(())
        })?;
        let Some(root) = root else { return Ok(false) };
        self.walk(&root, 0, false, f)?;
        Ok(true)
    }

    /// Visits a tree's leaf entries in order. In the root bucket every entry is a bucket; in
    /// the others none may be (etcd nests no buckets).
    fn walk(&self, root: &Root, depth: usize, buckets: bool, f: &mut Visit<'_>) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(invalid("tree deeper than any bbolt writes (a loop?)"));
        }
        let (page, inline) = match root {
            Root::Page(id) => (self.page(*id)?, false),
            Root::Inline(bytes) => (bytes.clone(), true),
        };
        let h = PageHeader::parse(&page);
        let count = h.count as usize;
        if PAGE_HEADER + count * ELEMENT > page.len() {
            return Err(invalid(format!(
                "page {}: {count} elements overrun it",
                h.id
            )));
        }
        let slice = |e: usize, pos: u32, len: u32| -> Result<&[u8]> {
            let start = e + pos as usize;
            let end = start + len as usize;
            page.get(start..end)
                .ok_or_else(|| invalid(format!("page {}: element past the page's end", h.id)))
        };
        if h.flags == FLAG_LEAF {
            for i in 0..count {
                let e = PAGE_HEADER + i * ELEMENT;
                let flags = u32_at(&page, e);
                let key = slice(e, u32_at(&page, e + 4), u32_at(&page, e + 8))?;
                let value_pos = u32_at(&page, e + 4) + u32_at(&page, e + 8);
                let value = slice(e, value_pos, u32_at(&page, e + 12))?;
                let is_bucket = flags & BUCKET_LEAF_FLAG != 0;
                if is_bucket != buckets {
                    return Err(invalid(format!(
                        "page {}: {} where {} expected",
                        h.id,
                        if is_bucket {
                            "a nested bucket"
                        } else {
                            "a plain value"
                        },
                        if buckets {
                            "buckets are"
                        } else {
                            "plain values are"
                        }
                    )));
                }
                f(key, value)?;
            }
            Ok(())
        } else if h.flags == FLAG_BRANCH && !inline {
            for i in 0..count {
                let e = PAGE_HEADER + i * ELEMENT;
                slice(e, u32_at(&page, e), u32_at(&page, e + 4))?;
                let child = u64_at(&page, e + 8);
                self.walk(&Root::Page(child), depth + 1, buckets, f)?;
            }
            Ok(())
        } else {
            Err(invalid(format!(
                "page {}: flags {:#x} where a leaf or branch page belongs",
                h.id, h.flags
            )))
        }
    }

    /// Reads page `id` with its overflow.
    fn page(&self, id: u64) -> Result<Vec<u8>> {
        if id < 2 || id >= self.meta.pgid {
            return Err(invalid(format!(
                "page {id} out of range (the file has {} pages)",
                self.meta.pgid
            )));
        }
        let mut header = [0u8; PAGE_HEADER];
        self.file.read_exact_at(&mut header, id * self.page_size)?;
        let h = PageHeader::parse(&header);
        if h.id != id {
            return Err(invalid(format!("page {id} is marked as page {}", h.id)));
        }
        let span = 1 + h.overflow as u64;
        if id + span > self.meta.pgid {
            return Err(invalid(format!("page {id} overflows past the end")));
        }
        let mut page = vec![0u8; (span * self.page_size) as usize];
        self.file.read_exact_at(&mut page, id * self.page_size)?;
        Ok(page)
    }
}

/// The tree of a bucket value: a page, or the inline leaf after the header.
fn bucket_root(value: &[u8]) -> Result<Root> {
    if value.len() < BUCKET_HEADER {
        return Err(invalid("bucket value shorter than its header"));
    }
    match u64_at(value, 0) {
        0 if value.len() >= BUCKET_HEADER + PAGE_HEADER => {
            Ok(Root::Inline(value[BUCKET_HEADER..].to_vec()))
        }
        0 => Err(invalid("inline bucket without its page")),
        page => Ok(Root::Page(page)),
    }
}
