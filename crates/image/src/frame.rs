//! A reader between the layer's tar stream and the `tar` crate that follows
//! the archive's framing (each 512-byte header and the data after it, read
//! exactly as the tar crate reads them) for two things the tar crate does
//! not bound:
//!
//! - GNU long name (`L`), long link (`K`) and PAX (`x`, `g`) headers are read
//!   whole into memory by the tar crate. A header declaring more than
//!   [`META_MAX`] bytes is refused from the header itself, before any of its
//!   content is read: a compressed layer could otherwise claim gigabytes of
//!   "name" and exhaust memory long before its digest is checked.
//! - GNU sparse entries (old GNU format, typeflag `S`): the tar crate fills
//!   a sparse file's holes by producing zeros to read, so a map with a data
//!   block at offset 2^62 would make the unpacker read 2^62 bytes. The framer
//!   decodes the sparse map itself (the header's four slots and the
//!   extension headers after it), hands the tar crate a plain regular-file
//!   header of the archived data only (typeflag `0`, the extension headers
//!   left out, checksum recomputed), and keeps the map in [`Found`] for the
//!   unpacker, which places the data with `pwrite` and sets the size with
//!   `ftruncate`. A sparse file's size costs nothing in the archive, so it
//!   is bounded: at most [`SPARSE_MAX`] (1 TiB), and at most
//!   [`SPARSE_CHUNKS_MAX`] map entries.
//!
//! The framing mirrors the tar crate's: a header's size field (octal or
//! base-256), overridden for the next non-extension header by a `size`
//! record of a PAX `x` header in ustar or GNU format; data padded to 512
//! bytes; the archive ends at the first all-zero block. Where the tar crate
//! would fail (bad checksum, bad size, a truncated stream), the framer stops
//! looking and passes the rest through, leaving the error to it.

use std::cell::RefCell;
use std::io::{self, Read};
use std::rc::Rc;

use tar::{EntryType, GnuExtSparseHeader, GnuSparseHeader, Header};

/// The largest GNU long name/long link or PAX header read (1 MiB: a path is
/// at most 4 KiB; PAX headers carry xattrs of at most 64 KiB each).
pub const META_MAX: u64 = 1 << 20;
/// The largest size of a GNU sparse file unpacked (1 TiB).
pub const SPARSE_MAX: u64 = 1 << 40;
/// The most (offset, length) entries a GNU sparse map may have.
pub const SPARSE_CHUNKS_MAX: usize = 1 << 20;

const BLOCK: usize = 512;

/// A GNU sparse entry as the framer decoded it.
#[derive(Debug)]
pub struct Sparse {
    /// Where the entry's header is in the stream the tar crate reads (what
    /// `Entry::raw_header_position` says).
    pub header_pos: u64,
    /// The file's size.
    pub real_size: u64,
    /// (offset in the file, length) of each data block, in archive order;
    /// their data follows one another in the entry.
    pub map: Vec<(u64, u64)>,
    /// Why the entry cannot be unpacked, if it cannot: the unpacker
    /// reports it with the entry's name.
    pub problem: Option<String>,
}

/// What the framer tells the unpacker.
#[derive(Debug, Default)]
pub struct Found {
    /// The last GNU sparse entry's map.
    pub sparse: Option<Sparse>,
    /// Why the framer stopped the stream (its read returned an error).
    pub refused: Option<String>,
}

pub type Shared = Rc<RefCell<Found>>;

enum State {
    /// Collecting the next header into `hdr[..fill]`.
    Header,
    /// Handing `hdr[out..len]` to the tar crate, then `next`.
    Out { len: usize, next: Next },
    /// Passing `left` bytes of data and padding through.
    Data { left: u64 },
    /// After the end marker, or where the tar crate will fail: everything
    /// passes through unlooked-at.
    Done,
}

#[derive(Clone, Copy)]
enum Next {
    Data(u64),
    Done,
}

pub struct Framer<R> {
    inner: R,
    found: Shared,
    state: State,
    hdr: [u8; BLOCK],
    fill: usize,
    out: usize,
    /// Bytes of the current `x` header's content still to capture.
    capture: u64,
    pax: Vec<u8>,
    /// The records of the last PAX `x` header, for the next entry.
    pending: Option<Vec<u8>>,
    /// Bytes read from `inner`.
    consumed: u64,
    /// Bytes handed to the tar crate.
    delivered: u64,
}

impl<R: Read> Framer<R> {
    pub fn new(inner: R) -> (Framer<R>, Shared) {
        let found = Shared::default();
        let f = Framer {
            inner,
            found: found.clone(),
            state: State::Header,
            hdr: [0; BLOCK],
            fill: 0,
            out: 0,
            capture: 0,
            pax: Vec::new(),
            pending: None,
            consumed: 0,
            delivered: 0,
        };
        (f, found)
    }

    fn refuse(&self, msg: String) -> io::Error {
        self.found.borrow_mut().refused = Some(msg.clone());
        io::Error::new(io::ErrorKind::InvalidData, msg)
    }

    /// Decide what the complete header in `hdr` is followed by.
    fn header(&mut self) -> io::Result<Next> {
        let at = self.consumed - BLOCK as u64;
        if self.hdr.iter().all(|&b| b == 0) {
            return Ok(Next::Done);
        }
        let h = Header::from_byte_slice(&self.hdr);
        let sum = self.hdr[..148]
            .iter()
            .chain(&self.hdr[156..])
            .fold(0u32, |a, &b| a + u32::from(b))
            + 8 * 32;
        if h.cksum().ok() != Some(sum) {
            return Ok(Next::Done);
        }
        let kind = h.entry_type();
        let recognized = h.as_gnu().is_some() || h.as_ustar().is_some();
        let (long_name, long_link, pax) = (
            kind.is_gnu_longname(),
            kind.is_gnu_longlink(),
            kind.is_pax_local_extensions(),
        );
        let ext = long_name || long_link || pax || kind.is_pax_global_extensions();
        // The tar crate keeps PAX records across recognized L, K and x
        // headers and gives them to whatever comes next.
        let records = if recognized && (long_name || long_link || pax) {
            None
        } else {
            self.pending.take()
        };
        let Ok(mut size) = h.entry_size() else {
            return Ok(Next::Done);
        };
        if !ext {
            if let Some(s) = records.as_deref().and_then(pax_size) {
                size = s;
            }
        }
        if ext && size > META_MAX {
            let what = if long_name {
                "GNU long name"
            } else if long_link {
                "GNU long link name"
            } else if pax {
                "PAX header"
            } else {
                "PAX global header"
            };
            return Err(self.refuse(format!(
                "tar header at byte {at}: {what} of {size} bytes: long name/PAX headers \
                 are read into memory, at most {META_MAX} bytes"
            )));
        }
        let Some(padded) = size
            .checked_add(BLOCK as u64 - 1)
            .map(|s| s & !(BLOCK as u64 - 1))
        else {
            return Ok(Next::Done);
        };
        if recognized && pax {
            self.capture = size;
            self.pax.clear();
        }
        if kind.is_gnu_sparse() && h.as_gnu().is_some() {
            self.sparse(size)?;
        }
        Ok(Next::Data(padded))
    }

    /// Decode the GNU sparse header in `hdr` (and the extension headers
    /// after it, which are read here and not handed on), record the map and
    /// make `hdr` a regular file's header of the archived data.
    fn sparse(&mut self, size: u64) -> io::Result<()> {
        let h = Header::from_byte_slice(&self.hdr);
        let gnu = h.as_gnu().expect("checked: GNU header");
        let mut map = Map {
            size,
            chunks: Vec::new(),
            cur: 0,
            data: 0,
            problem: None,
        };
        for b in &gnu.sparse {
            map.add(b);
        }
        let real = gnu.real_size();
        let mut extended = gnu.is_extended();
        while extended {
            let mut ext = GnuExtSparseHeader::new();
            let at = self.consumed;
            let n = read_full(&mut self.inner, ext.as_mut_bytes())?;
            self.consumed += n as u64;
            if n < BLOCK {
                return Err(self.refuse(format!(
                    "the tar ends inside a GNU sparse extension header at byte {at}"
                )));
            }
            for b in ext.sparse() {
                map.add(b);
            }
            extended = ext.is_extended();
        }
        let problem = map.finish(&real);
        let sparse = Sparse {
            header_pos: self.delivered,
            real_size: real.as_ref().copied().unwrap_or(0),
            map: map.chunks,
            problem,
        };
        self.found.borrow_mut().sparse = Some(sparse);
        let mut plain = Header::new_old();
        plain.as_mut_bytes().copy_from_slice(&self.hdr);
        plain.set_entry_type(EntryType::Regular);
        plain.set_cksum();
        self.hdr.copy_from_slice(plain.as_bytes());
        Ok(())
    }
}

/// Read into `buf` until it is full or the stream ends; the count.
pub(crate) fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// A PAX record set's `size`, read as the tar crate reads it (the first
/// `size` record; a malformed record set or value means none).
fn pax_size(records: &[u8]) -> Option<u64> {
    for r in tar::PaxExtensions::new(records) {
        let r = r.ok()?;
        if r.key() != Ok("size") {
            continue;
        }
        return r.value().ok()?.parse().ok();
    }
    None
}

/// A sparse map being checked as its entries come.
struct Map {
    /// The archived data the entry holds.
    size: u64,
    chunks: Vec<(u64, u64)>,
    /// Where the last block ended.
    cur: u64,
    /// The data the blocks so far take.
    data: u64,
    problem: Option<String>,
}

impl Map {
    fn add(&mut self, b: &GnuSparseHeader) {
        if self.problem.is_some() || b.is_empty() {
            return;
        }
        self.problem = self.check(b).err();
    }

    fn check(&mut self, b: &GnuSparseHeader) -> Result<(), String> {
        let off = b
            .offset()
            .map_err(|e| format!("GNU sparse map: bad offset: {e}"))?;
        let len = b
            .length()
            .map_err(|e| format!("GNU sparse map: bad length: {e}"))?;
        if off < self.cur {
            return Err(format!(
                "GNU sparse map: blocks out of order or overlapping (offset {off} before {})",
                self.cur
            ));
        }
        let end = off
            .checked_add(len)
            .ok_or_else(|| format!("GNU sparse map: block at {off} of {len} bytes overflows"))?;
        self.data = self.data.saturating_add(len);
        if self.data > self.size {
            return Err(format!(
                "GNU sparse map: blocks hold more data than the entry's {} bytes",
                self.size
            ));
        }
        if self.chunks.len() >= SPARSE_CHUNKS_MAX {
            return Err(format!(
                "GNU sparse map of more than {SPARSE_CHUNKS_MAX} blocks"
            ));
        }
        self.chunks.push((off, len));
        self.cur = end;
        Ok(())
    }

    fn finish(&self, real: &io::Result<u64>) -> Option<String> {
        let real = match real {
            Ok(r) => *r,
            Err(e) => return Some(format!("GNU sparse header: bad real size: {e}")),
        };
        if real > SPARSE_MAX {
            return Some(format!(
                "GNU sparse file of {real} bytes: berth unpacks sparse files of at most \
                 {SPARSE_MAX} bytes (1 TiB)"
            ));
        }
        if let Some(p) = &self.problem {
            return Some(p.clone());
        }
        if self.data != self.size {
            return Some(format!(
                "GNU sparse map lists {} bytes of data, the entry holds {}",
                self.data, self.size
            ));
        }
        if self.cur > real {
            return Some(format!(
                "GNU sparse map reaches byte {}, past the file's size ({real} bytes)",
                self.cur
            ));
        }
        None
    }
}

impl<R: Read> Read for Framer<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            match self.state {
                State::Done => {
                    let n = self.inner.read(buf)?;
                    self.consumed += n as u64;
                    self.delivered += n as u64;
                    return Ok(n);
                }
                State::Header => {
                    let n = read_full(&mut self.inner, &mut self.hdr[self.fill..])?;
                    self.consumed += n as u64;
                    self.fill += n;
                    self.out = 0;
                    if self.fill < BLOCK {
                        // The stream ended: hand over what there is; the
                        // tar crate says whether that is a clean end.
                        self.state = State::Out {
                            len: self.fill,
                            next: Next::Done,
                        };
                    } else {
                        let next = self.header()?;
                        self.state = State::Out { len: BLOCK, next };
                    }
                    self.fill = 0;
                }
                State::Out { len, next } => {
                    if self.out == len {
                        self.state = match next {
                            Next::Data(left) => State::Data { left },
                            Next::Done => State::Done,
                        };
                        if len == 0 {
                            return Ok(0);
                        }
                        continue;
                    }
                    let n = buf.len().min(len - self.out);
                    buf[..n].copy_from_slice(&self.hdr[self.out..self.out + n]);
                    self.out += n;
                    self.delivered += n as u64;
                    return Ok(n);
                }
                State::Data { left } => {
                    if left == 0 {
                        if self.capture == 0 && !self.pax.is_empty() {
                            self.pending = Some(std::mem::take(&mut self.pax));
                        }
                        self.state = State::Header;
                        continue;
                    }
                    let cap = (buf.len() as u64).min(left) as usize;
                    let n = self.inner.read(&mut buf[..cap])?;
                    if n == 0 {
                        // Truncated: the tar crate reports it.
                        self.state = State::Done;
                        return Ok(0);
                    }
                    if self.capture > 0 {
                        let k = (n as u64).min(self.capture) as usize;
                        self.pax.extend_from_slice(&buf[..k]);
                        self.capture -= k as u64;
                    }
                    self.consumed += n as u64;
                    self.delivered += n as u64;
                    self.state = State::Data {
                        left: left - n as u64,
                    };
                    return Ok(n);
                }
            }
        }
    }
}
