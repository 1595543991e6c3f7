//! Writing a fresh bbolt file in one pass, to a stream.
//!
//! The meta pages come first in the file but name the root page, which comes last, so the
//! writer runs over the source twice: [`Layout::plan`] packs every bucket's entries into
//! leaf pages, keeping only the first key and page number of each leaf, and builds the branch
//! pages above them; [`write`] then streams the meta, freelist, leaf and branch pages in page
//! order. Memory holds the branch pages (about one key per leaf page), never the entries.
//!
//! Pages are filled up to their size (bbolt fills half a page when it splits; a reader does
//! not care, and a later bbolt writer splits or merges as it needs). Every bucket gets a
//! B+tree of its own pages, even a small one that bbolt would keep inline.

use std::io::Write;

use super::{
    Error, Meta, PageHeader, Result, Visit, BUCKET_HEADER, BUCKET_LEAF_FLAG, ELEMENT, FLAG_BRANCH,
    FLAG_FREELIST, FLAG_LEAF, FLAG_META, META_SIZE, PAGE_HEADER, PAGE_SIZE,
};

/// What [`write`] lays out: top-level buckets of plain keys and values. It is read twice and
/// must give the same data both times (a read transaction's view does).
pub trait BucketSource {
    /// The names of the top-level buckets, each once, in any order.
    fn buckets(&self) -> Vec<Vec<u8>>;

    /// Calls `f` with every key and value of `bucket` in ascending byte order of the keys.
    fn scan(&self, bucket: &[u8], f: &mut Visit<'_>) -> Result<()>;
}

/// Where every page of the file goes; the result of the first pass.
#[derive(Debug)]
pub struct Layout {
    /// In name order, the order of the root bucket's entries and of their pages in the file.
    buckets: Vec<BucketLayout>,
    /// The root bucket's leaf page, the last in the file.
    root_page: u64,
    /// The root bucket's leaf page, encoded.
    root_bytes: Vec<u8>,
    /// Pages in the file.
    pages: u64,
    /// Entries in all buckets.
    entries: u64,
}

#[derive(Debug)]
struct BucketLayout {
    name: Vec<u8>,
    /// The first leaf page; the leaves follow each other from here.
    first_leaf: u64,
    /// Pages the leaves span, overflow included.
    leaf_pages: u64,
    /// The branch pages, encoded, in page order right after the leaves.
    branches: Vec<Vec<u8>>,
    /// The page at the top of the bucket's tree.
    root: u64,
}

impl Layout {
    /// Plans the file for `src` (the first pass over it).
    pub fn plan(src: &dyn BucketSource) -> Result<Layout> {
        let mut names = src.buckets();
        names.sort();
        names.dedup();
        let mut next = 3; // pages 0 and 1 are meta, 2 the freelist
        let mut buckets = Vec::with_capacity(names.len());
        let mut entries = 0;
        for name in names {
            let first_leaf = next;
            let mut children: Vec<(Vec<u8>, u64)> = Vec::new();
            let mut page = PageBuilder::default();
            let mut close = |page: &mut PageBuilder| {
                children.push((page.first_key().to_vec(), next));
                next += page.span();
                page.clear();
            };
            src.scan(&name, &mut |k, v| {
                if !page.fits(k.len() + v.len()) {
                    close(&mut page);
                }
                page.push(0, k, v);
                entries += 1;
                Ok(())
            })?;
            close(&mut page);
            let leaf_pages = next - first_leaf;
            let (branches, root) = build_branches(children, &mut next);
            buckets.push(BucketLayout {
                name,
                first_leaf,
                leaf_pages,
                branches,
                root,
            });
        }
        let mut root = PageBuilder::default();
        for b in &buckets {
            let mut header = [0u8; BUCKET_HEADER];
            header[..8].copy_from_slice(&b.root.to_le_bytes());
            root.push(BUCKET_LEAF_FLAG, &b.name, &header);
        }
        let root_page = next;
        let root_bytes = root.encode_leaf(root_page);
        Ok(Layout {
            buckets,
            root_page,
            pages: root_page + root.span(),
            root_bytes,
            entries,
        })
    }

    /// The file's size in bytes.
    pub fn file_size(&self) -> u64 {
        self.pages * PAGE_SIZE as u64
    }

    /// Entries in all buckets.
    pub fn entries(&self) -> u64 {
        self.entries
    }
}

/// Writes the file planned in `layout` for `src` (the second pass over it) to `out`, calling
/// `progress` with the bytes written so far after each page; returns the bytes written.
pub fn write(
    layout: &Layout,
    src: &dyn BucketSource,
    out: &mut dyn Write,
    progress: &mut dyn FnMut(u64),
) -> Result<u64> {
    let mut out = Out {
        w: out,
        written: 0,
        progress,
    };
    for (id, txid) in [(0, 0), (1, 1)] {
        let mut page = vec![0u8; PAGE_SIZE];
        PageHeader {
            id,
            flags: FLAG_META,
            count: 0,
            overflow: 0,
        }
        .put(&mut page);
        let meta = Meta {
            page_size: PAGE_SIZE as u32,
            root: layout.root_page,
            freelist: 2,
            pgid: layout.pages,
            txid,
        };
        page[PAGE_HEADER..PAGE_HEADER + META_SIZE].copy_from_slice(&meta.encode());
        out.put(&page)?;
    }
    let mut freelist = vec![0u8; PAGE_SIZE];
    PageHeader {
        id: 2,
        flags: FLAG_FREELIST,
        count: 0,
        overflow: 0,
    }
    .put(&mut freelist);
    out.put(&freelist)?;

    for b in &layout.buckets {
        let end = b.first_leaf + b.leaf_pages;
        let mut next = b.first_leaf;
        let mut page = PageBuilder::default();
        src.scan(&b.name, &mut |k, v| {
            if !page.fits(k.len() + v.len()) {
                out.put(&page.encode_leaf(next))?;
                next += page.span();
                page.clear();
                if next >= end {
                    return Err(source_changed(&b.name, "more entries than planned"));
                }
            }
            page.push(0, k, v);
            Ok(())
        })?;
        out.put(&page.encode_leaf(next))?;
        next += page.span();
        if next != end {
            return Err(source_changed(&b.name, "fewer entries than planned"));
        }
        for branch in &b.branches {
            out.put(branch)?;
        }
    }
    out.put(&layout.root_bytes)?;
    Ok(out.written)
}

/// The output stream, counting bytes and reporting them.
struct Out<'a> {
    w: &'a mut dyn Write,
    written: u64,
    progress: &'a mut dyn FnMut(u64),
}

impl Out<'_> {
    fn put(&mut self, bytes: &[u8]) -> Result<()> {
        self.w.write_all(bytes)?;
        self.written += bytes.len() as u64;
        (self.progress)(self.written);
        Ok(())
    }
}

fn source_changed(bucket: &[u8], what: &str) -> Error {
    Error::Source(format!(
        "bucket {}: {what}",
        String::from_utf8_lossy(bucket)
    ))
}

/// Builds the branch levels above `children` (first key and page of each), numbering pages
/// from `next`; returns the encoded pages and the tree's root page.
fn build_branches(mut children: Vec<(Vec<u8>, u64)>, next: &mut u64) -> (Vec<Vec<u8>>, u64) {
    let mut pages = Vec::new();
    while children.len() > 1 {
        // Cut the level into pages, then make sure none holds a single child: bbolt merges
        // such a branch page into a sibling the next time it writes the tree.
        let mut cuts: Vec<std::ops::Range<usize>> = Vec::new();
        let (mut start, mut size) = (0, PAGE_HEADER);
        for (i, (key, _)) in children.iter().enumerate() {
            let elem = ELEMENT + key.len();
            if i > start && (size + elem > PAGE_SIZE || i - start == u16::MAX as usize) {
                cuts.push(start..i);
                (start, size) = (i, PAGE_HEADER);
            }
            size += elem;
        }
        cuts.push(start..children.len());
        let n = cuts.len();
        if n > 1 && cuts[n - 1].len() == 1 {
            cuts[n - 2].end -= 1;
            cuts[n - 1].start -= 1;
        }
        let mut level = Vec::with_capacity(n);
        for cut in cuts {
            let id = *next;
            let page = encode_branch(&children[cut.clone()], id);
            *next += (page.len() / PAGE_SIZE) as u64;
            level.push((children[cut.start].0.clone(), id));
            pages.push(page);
        }
        children = level;
    }
    let root = children[0].1;
    (pages, root)
}

/// A branch page: element headers (key position and size, child page), then the keys.
fn encode_branch(children: &[(Vec<u8>, u64)], id: u64) -> Vec<u8> {
    let keys: usize = children.iter().map(|(k, _)| k.len()).sum();
    let size = PAGE_HEADER + children.len() * ELEMENT + keys;
    let pages = size.div_ceil(PAGE_SIZE);
    let mut out = vec![0u8; pages * PAGE_SIZE];
    PageHeader {
        id,
        flags: FLAG_BRANCH,
        count: children.len() as u16,
        overflow: (pages - 1) as u32,
    }
    .put(&mut out);
    let mut at = PAGE_HEADER + children.len() * ELEMENT;
    for (i, (key, child)) in children.iter().enumerate() {
        let e = PAGE_HEADER + i * ELEMENT;
        out[e..e + 4].copy_from_slice(&((at - e) as u32).to_le_bytes());
        out[e + 4..e + 8].copy_from_slice(&(key.len() as u32).to_le_bytes());
        out[e + 8..e + 16].copy_from_slice(&child.to_le_bytes());
        out[at..at + key.len()].copy_from_slice(key);
        at += key.len();
    }
    out
}

/// Entries of one page being filled: their bytes end to end, and each one's flags and sizes.
#[derive(Default)]
struct PageBuilder {
    data: Vec<u8>,
    elems: Vec<(u32, usize, usize)>,
}

impl PageBuilder {
    /// Whether an element of `payload` key and value bytes still fits; an empty page takes
    /// anything (it overflows onto more pages).
    fn fits(&self, payload: usize) -> bool {
        self.elems.is_empty()
            || (self.size() + ELEMENT + payload <= PAGE_SIZE
                && self.elems.len() < u16::MAX as usize)
    }

    fn push(&mut self, flags: u32, key: &[u8], value: &[u8]) {
        self.elems.push((flags, key.len(), value.len()));
        self.data.extend_from_slice(key);
        self.data.extend_from_slice(value);
    }

    fn clear(&mut self) {
        self.data.clear();
        self.elems.clear();
    }

    fn first_key(&self) -> &[u8] {
        match self.elems.first() {
            Some(&(_, k, _)) => &self.data[..k],
            None => &[],
        }
    }

    fn size(&self) -> usize {
        PAGE_HEADER + self.elems.len() * ELEMENT + self.data.len()
    }

    /// Pages the encoded page spans.
    fn span(&self) -> u64 {
        self.size().div_ceil(PAGE_SIZE) as u64
    }

    /// A leaf page: element headers, then each key and value.
    fn encode_leaf(&self, id: u64) -> Vec<u8> {
        let mut out = vec![0u8; self.span() as usize * PAGE_SIZE];
        PageHeader {
            id,
            flags: FLAG_LEAF,
            count: self.elems.len() as u16,
            overflow: (self.span() - 1) as u32,
        }
        .put(&mut out);
        let data_start = PAGE_HEADER + self.elems.len() * ELEMENT;
        let mut at = data_start;
        for (i, &(flags, k, v)) in self.elems.iter().enumerate() {
            let e = PAGE_HEADER + i * ELEMENT;
            out[e..e + 4].copy_from_slice(&flags.to_le_bytes());
            out[e + 4..e + 8].copy_from_slice(&((at - e) as u32).to_le_bytes());
            out[e + 8..e + 12].copy_from_slice(&(k as u32).to_le_bytes());
            out[e + 12..e + 16].copy_from_slice(&(v as u32).to_le_bytes());
            at += k + v;
        }
        out[data_start..at].copy_from_slice(&self.data);
        out
    }
}
