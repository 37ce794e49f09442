//! Receiving response bodies: each chunk is copied once, into a buffer recycled from earlier
//! responses, and the body is hashed (MD5, for the `x-ots-contentmd5` check).
//!
//! Why: a GetRange page is about 4 MB. Collected into a fresh allocation per page, the kernel
//! zero-filled and faulted in every page of it (with the MD5's second pass, ~12% of a backup's
//! CPU). A recycled buffer is already mapped. A small body is hashed chunk by chunk as it arrives,
//! from cache; a large one is hashed whole at the end, beside other large bodies in SIMD lanes
//! (`md5_lanes`), which costs less than the cache saves.

use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use crate::auth::Md5Stream;

/// Free buffers are kept up to this many bytes in all: about the ~4 MB pages four splits have in
/// flight (one being read, one arriving), so a steady scan allocates nothing, while the memory
/// kept when idle stays small. At 16 MiB, one page in seven still came in a fresh buffer.
const POOL_BYTES: usize = 32 << 20;
/// A buffer grown beyond this (an unusually large response) is freed, not kept.
const MAX_POOLED_BUFFER: usize = 8 << 20;

/// Buffers for response bodies, shared by all requests of one client.
#[derive(Debug, Default)]
pub(crate) struct BodyPool {
    free: Mutex<Vec<Vec<u8>>>,
}

impl BodyPool {
    /// An empty buffer with room for `expected` bytes: the largest free one, or a new one.
    fn take(&self, expected: usize) -> Vec<u8> {
        let reused = self.free.lock().ok().and_then(|mut free| free.pop());
        let mut buf = reused.unwrap_or_default();
        buf.reserve(expected);
        buf
    }

    fn give(&self, mut buf: Vec<u8>) {
        if buf.capacity() > MAX_POOLED_BUFFER {
            return;
        }
        let Ok(mut free) = self.free.lock() else {
            return;
        };
        let kept: usize = free.iter().map(Vec::capacity).sum();
        if kept + buf.capacity() <= POOL_BYTES {
            buf.clear();
            free.push(buf);
            // Largest last, so `take` hands out the one most likely to need no growth.
            free.sort_unstable_by_key(Vec::capacity);
        }
    }
}

/// A received body: returns its buffer to the pool when the last `Bytes` pointing into it
/// (for example a decoded message's `rows` field) is dropped.
struct PooledBody {
    buf: Vec<u8>,
    pool: Weak<BodyPool>,
}

impl AsRef<[u8]> for PooledBody {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.upgrade() {
            pool.give(std::mem::take(&mut self.buf));
        }
    }
}

/// Builds one body from its chunks.
pub(crate) struct BodyReceiver {
    buf: Vec<u8>,
    /// Hashed chunk by chunk as it arrives; `None` for a large body, hashed whole at the end
    /// alongside other large bodies (`md5_lanes`).
    md5: Option<Md5Stream>,
    pool: Weak<BodyPool>,
    /// Held while a large body arrives (see `md5_lanes::Arriving`).
    arriving: Option<crate::md5_lanes::Arriving>,
}

impl BodyReceiver {
    /// `expected`: the Content-Length, when the response has one (0 otherwise).
    pub(crate) fn new(pool: &Arc<BodyPool>, expected: usize) -> Self {
        let large = expected >= crate::md5_lanes::LANE_MIN_BYTES;
        BodyReceiver {
            buf: pool.take(expected),
            md5: (!large).then(Md5Stream::new),
            pool: Arc::downgrade(pool),
            arriving: large.then(crate::md5_lanes::Arriving::new).flatten(),
        }
    }

    pub(crate) fn push(&mut self, chunk: &[u8]) {
        if let Some(md5) = &mut self.md5 {
            md5.update(chunk);
        }
        self.buf.extend_from_slice(chunk);
    }

    /// The body, and base64 of its MD5.
    pub(crate) async fn finish(self) -> (Bytes, String) {
        drop(self.arriving);
        let body = Bytes::from_owner(PooledBody {
            buf: self.buf,
            pool: self.pool,
        });
        let md5 = match self.md5 {
            Some(md5) => md5.finish_base64(),
            None => B64.encode(crate::md5_lanes::md5(body.clone()).await),
        };
        (body, md5)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::content_md5;

    fn receive(pool: &Arc<BodyPool>, chunks: &[&[u8]]) -> (Bytes, String) {
        let mut r = BodyReceiver::new(pool, chunks.iter().map(|c| c.len()).sum());
        for c in chunks {
            r.push(c);
        }
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(r.finish())
    }

    #[test]
    fn a_body_is_its_chunks_in_order_with_their_md5() {
        let pool = Arc::new(BodyPool::default());
        let (body, md5) = receive(&pool, &[b"hello ", b"", b"world"]);
        assert_eq!(&body[..], b"hello world");
        assert_eq!(md5, content_md5(b"hello world"));
        let (empty, md5) = receive(&pool, &[]);
        assert!(empty.is_empty());
        assert_eq!(md5, content_md5(b""));
    }

    /// A body at least `LANE_MIN_BYTES` long announces its length and is hashed whole at the end
    /// (by the lane thread where there is one): the same digest.
    #[test]
    fn a_large_body_gets_the_same_md5_hashed_whole() {
        let pool = Arc::new(BodyPool::default());
        let whole: Vec<u8> = (0..crate::md5_lanes::LANE_MIN_BYTES as u32 + 4099)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
            .collect();
        let chunks: Vec<&[u8]> = whole.chunks(16_384).collect();
        let (body, md5) = receive(&pool, &chunks);
        assert_eq!(&body[..], &whole[..]);
        assert_eq!(md5, content_md5(&whole));
    }

    #[test]
    fn a_buffer_returns_to_the_pool_only_when_the_last_slice_of_it_is_dropped() {
        let pool = Arc::new(BodyPool::default());
        let (body, _) = receive(&pool, &[&[7u8; 1000]]);
        let slice = body.slice(10..20);
        drop(body);
        assert!(
            pool.free.lock().unwrap().is_empty(),
            "a slice still reads it"
        );
        assert_eq!(&slice[..], &[7u8; 10]);
        drop(slice);
        let free = pool.free.lock().unwrap();
        assert_eq!(free.len(), 1);
        assert!(free[0].is_empty() && free[0].capacity() >= 1000);
    }

    #[test]
    fn a_recycled_buffer_holds_only_the_new_body() {
        let pool = Arc::new(BodyPool::default());
        drop(receive(&pool, &[&[1u8; 5000]]));
        let (body, md5) = receive(&pool, &[b"abc"]);
        assert_eq!(&body[..], b"abc");
        assert_eq!(md5, content_md5(b"abc"));
    }

    #[test]
    fn the_pool_keeps_a_bounded_number_of_bytes() {
        let pool = Arc::new(BodyPool::default());
        let held: Vec<Bytes> = (0..20)
            .map(|_| receive(&pool, &[&vec![0u8; 4 << 20]]).0)
            .collect();
        drop(held);
        let kept: usize = pool.free.lock().unwrap().iter().map(Vec::capacity).sum();
        assert!(kept <= POOL_BYTES, "kept {kept} bytes");
        assert!(kept >= 4 << 20, "nothing was kept");
        drop(receive(&pool, &[&vec![0u8; MAX_POOLED_BUFFER + 1]]));
        let after: usize = pool.free.lock().unwrap().iter().map(Vec::capacity).sum();
        assert!(after <= POOL_BYTES);
    }
}
