//! MD5 of several large bodies at once, one per SIMD lane.
//!
//! Every response body is checked against its signed `x-ots-contentmd5`, and that MD5 was a fifth
//! of a backup's CPU. One MD5 is a chain of dependent steps: its blocks cannot be spread over
//! lanes, and aws-lc's assembly is already near the ~4 cycles a byte that chain allows. A backup
//! does have several large responses in flight, one per split scanner, and AVX2 runs eight
//! independent MD5 chains in about the time of one. So large bodies go to one hashing thread, and
//! the bodies waiting when it starts a round are hashed together, each in its own lane. Fresh
//! bodies wait a few milliseconds for large bodies still arriving (other splits' pages in flight)
//! and no longer; a body left alone is hashed alone, by aws-lc.
//!
//! A caller that makes several bodies at once (a restore reader cutting BatchWriteRow requests)
//! hashes them together on its own thread instead, with [`md5_many`].
//!
//! Every byte is still hashed and compared; only how the arithmetic is laid out changes. The lane
//! arithmetic is checked against aws-lc over many lengths and lane mixes in the tests.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

use bytes::Bytes;

/// Bodies at least this large are hashed by the lane thread; smaller ones inline, where the thread
/// hop would cost more than the lanes save.
pub(crate) const LANE_MIN_BYTES: usize = 256 * 1024;

const LANES: usize = 8;
/// Blocks each lane advances per round, so that bodies arriving meanwhile join soon (16 KiB).
const ROUND_BLOCKS: usize = 256;

/// Bodies given to the lane thread and not yet answered.
static QUEUED: AtomicUsize = AtomicUsize::new(0);
/// Large bodies still arriving: each will be given to the lane thread once complete.
static ARRIVING: AtomicUsize = AtomicUsize::new(0);
/// How long a body alone waits for one still arriving before it is hashed alone: about the time
/// aws-lc takes over a 4 MB page. Paired, both are hashed in the time of one.
const WAIT_FOR_COMPANY: std::time::Duration = std::time::Duration::from_millis(4);

/// A large body being received: counted in [`ARRIVING`] until dropped, so that a body alone at
/// the lane thread can wait for it instead of being hashed alone.
pub(crate) struct Arriving(());

impl Arriving {
    /// `None` where there is no lane thread to wait (no AVX2): the body will be hashed inline.
    pub(crate) fn new() -> Option<Self> {
        station()?;
        ARRIVING.fetch_add(1, Ordering::Relaxed);
        Some(Arriving(()))
    }
}

impl Drop for Arriving {
    fn drop(&mut self) {
        ARRIVING.fetch_sub(1, Ordering::Relaxed);
    }
}
/// With this many queued, a caller hashes its own body: one thread must not become the limit of
/// a many-core host (its lanes are full long before this).
const MAX_QUEUED: usize = 2 * LANES;

/// MD5 of `body`: by the lane thread when the CPU has AVX2 and the thread is not already full,
/// inline otherwise (or if the thread is gone).
pub(crate) async fn md5(body: Bytes) -> [u8; 16] {
    let Some(station) = station() else {
        return scalar_from(INITIAL, 0, &body);
    };
    if QUEUED.fetch_add(1, Ordering::Relaxed) >= MAX_QUEUED {
        QUEUED.fetch_sub(1, Ordering::Relaxed);
        return scalar_from(INITIAL, 0, &body);
    }
    // Counted down however this ends, a cancelled caller included.
    struct Dequeue;
    impl Drop for Dequeue {
        fn drop(&mut self) {
            QUEUED.fetch_sub(1, Ordering::Relaxed);
        }
    }
    let _dequeue = Dequeue;
    let (reply, answer) = tokio::sync::oneshot::channel();
    let job = Job {
        body: body.clone(),
        reply,
    };
    if station.send(job).is_err() {
        return scalar_from(INITIAL, 0, &body);
    }
    match answer.await {
        Ok(digest) => digest,
        Err(_) => scalar_from(INITIAL, 0, &body),
    }
}

struct Job {
    body: Bytes,
    reply: Reply,
}

impl Lane<Bytes, Reply> {
    /// A job given to the lane thread, in a lane.
    fn of(job: Job) -> Self {
        Lane::new(job.body, job.reply)
    }
}

type Reply = tokio::sync::oneshot::Sender<[u8; 16]>;

/// MD5 of each of `bodies`, hashed side by side on the calling thread: in SIMD lanes when there
/// are enough of them for the lanes to pay, else each by aws-lc. For callers that make several
/// bodies at once (a restore's request bodies), where the lane thread would rarely see two
/// together.
pub(crate) fn md5_many(bodies: &[&[u8]]) -> Vec<[u8; 16]> {
    let mut digests = vec![[0u8; 16]; bodies.len()];
    let mut waiting = bodies.iter().enumerate();
    let mut lanes: Vec<Lane<&[u8], usize>> = Vec::with_capacity(LANES);
    loop {
        while lanes.len() < LANES {
            match waiting.next() {
                Some((i, body)) => lanes.push(Lane::new(*body, i)),
                None => break,
            }
        }
        if lanes.is_empty() {
            return digests;
        }
        advance(&mut lanes);
        take_finished(&mut lanes, |i, digest| digests[i] = digest);
    }
}

/// The fewest bodies hashed together for which the SIMD lanes beat aws-lc hashing each in turn
/// (`usize::MAX` without AVX2).
pub(crate) fn lanes_that_pay() -> usize {
    x8::lanes_that_pay()
}

/// A body in a lane, with what its digest goes to: its state after `done` whole blocks.
struct Lane<B, T> {
    body: B,
    to: T,
    state: [u32; 4],
    done: usize,
}

impl<B: AsRef<[u8]>, T> Lane<B, T> {
    fn new(body: B, to: T) -> Self {
        Lane {
            body,
            to,
            state: INITIAL,
            done: 0,
        }
    }

    fn blocks_left(&self) -> usize {
        self.body.as_ref().len() / 64 - self.done
    }

    /// The digest once every whole block is in: the tail (less than a block) and the padding, by
    /// aws-lc from the lane's state.
    fn digest(&self) -> [u8; 16] {
        scalar_from(self.state, self.done, &self.body.as_ref()[self.done * 64..])
    }
}

/// Advances every lane by one round: as many blocks as the shortest has left, at most
/// [`ROUND_BLOCKS`]. In SIMD lanes when enough are busy for them to pay, else each by aws-lc.
fn advance<B: AsRef<[u8]>, T>(lanes: &mut [Lane<B, T>]) {
    let round = lanes
        .iter()
        .map(Lane::blocks_left)
        .min()
        .unwrap_or(0)
        .min(ROUND_BLOCKS);
    if round == 0 {
        return;
    }
    if lanes.len() < x8::lanes_that_pay() {
        // Too few for the SIMD kernel to beat aws-lc's single-stream assembly (one AVX2 lane is
        // half its speed): each by aws-lc, a round at a time, so that a body arriving meanwhile
        // can join the next round.
        for lane in lanes.iter_mut() {
            let end = (lane.done + round) * 64;
            lane.state = scalar_blocks(lane.state, &lane.body.as_ref()[lane.done * 64..end]);
            lane.done += round;
        }
        return;
    }
    let mut states = [INITIAL; LANES];
    let mut data: [&[u8]; LANES] = [&[]; LANES];
    for (i, lane) in lanes.iter().enumerate() {
        states[i] = lane.state;
        data[i] = &lane.body.as_ref()[lane.done * 64..(lane.done + round) * 64];
    }
    x8::compress(&mut states, &data, round);
    for (i, lane) in lanes.iter_mut().enumerate() {
        lane.state = states[i];
        lane.done += round;
    }
}

/// Removes the lanes whose every whole block is in and gives each digest to `finished`.
fn take_finished<B: AsRef<[u8]>, T>(
    lanes: &mut Vec<Lane<B, T>>,
    mut finished: impl FnMut(T, [u8; 16]),
) {
    let mut i = 0;
    while i < lanes.len() {
        if lanes[i].blocks_left() == 0 {
            let lane = lanes.swap_remove(i);
            let digest = lane.digest();
            finished(lane.to, digest);
        } else {
            i += 1;
        }
    }
}

fn station() -> Option<&'static mpsc::Sender<Job>> {
    static STATION: OnceLock<Option<mpsc::Sender<Job>>> = OnceLock::new();
    STATION
        .get_or_init(|| {
            if !x8::available() {
                return None;
            }
            let (tx, rx) = mpsc::channel::<Job>();
            std::thread::Builder::new()
                .name("otsarchive-md5".into())
                .spawn(move || run_station(rx))
                .ok()?;
            Some(tx)
        })
        .as_ref()
}

fn run_station(rx: mpsc::Receiver<Job>) {
    let mut lanes: Vec<Lane<Bytes, Reply>> = Vec::with_capacity(LANES);
    loop {
        if lanes.is_empty() {
            match rx.recv() {
                Ok(job) => lanes.push(Lane::of(job)),
                Err(_) => return,
            }
        }
        while lanes.len() < LANES {
            match rx.try_recv() {
                Ok(job) => lanes.push(Lane::of(job)),
                Err(_) => break,
            }
        }
        wait_for_company(&mut lanes, &rx, &ARRIVING, WAIT_FOR_COMPANY);
        // A caller that went away (its request was cancelled) needs no digest.
        lanes.retain(|lane| !lane.to.is_closed());
        advance(&mut lanes);
        // The caller may have gone meanwhile: nothing to tell.
        take_finished(&mut lanes, |reply, digest| {
            let _ = reply.send(digest);
        });
    }
}

/// When every lane holds a fresh body (none started), waits up to `wait` for more bodies while
/// `arriving` counts bodies still being received, so that they are hashed together. Returns early
/// once the lanes are full or nothing is arriving any more.
fn wait_for_company(
    lanes: &mut Vec<Lane<Bytes, Reply>>,
    rx: &mpsc::Receiver<Job>,
    arriving: &AtomicUsize,
    wait: std::time::Duration,
) {
    if !lanes.iter().all(|lane| lane.done == 0) {
        return;
    }
    let deadline = std::time::Instant::now() + wait;
    while lanes.len() < LANES && arriving.load(Ordering::Relaxed) > 0 {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(job) => lanes.push(Lane::of(job)),
            Err(_) => return,
        }
    }
}

const INITIAL: [u32; 4] = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476];

/// The state after `state` takes in `blocks` (whole 64-byte blocks), by aws-lc.
fn scalar_blocks(state: [u32; 4], blocks: &[u8]) -> [u32; 4] {
    debug_assert_eq!(blocks.len() % 64, 0);
    // SAFETY: as in `scalar_from`; MD5_Update over whole blocks buffers nothing, so `h` is then
    // the state after them.
    unsafe {
        let mut ctx: aws_lc_sys::MD5_CTX = std::mem::zeroed();
        aws_lc_sys::MD5_Init(&mut ctx);
        ctx.h = state;
        aws_lc_sys::MD5_Update(&mut ctx, blocks.as_ptr().cast(), blocks.len());
        ctx.h
    }
}

/// MD5 of a message whose first `blocks_done` blocks left `state`, and whose rest is `tail`.
fn scalar_from(state: [u32; 4], blocks_done: usize, tail: &[u8]) -> [u8; 16] {
    let bits = (blocks_done as u64) * 512;
    // SAFETY: MD5_CTX is plain integers and bytes; all-zero is a valid value. Setting `h` and the
    // bit count is exactly the state MD5_Update leaves after `blocks_done` whole blocks (nothing
    // buffered: `num` 0). MD5_Update reads `tail.len()` bytes of `tail`; MD5_Final writes 16.
    unsafe {
        let mut ctx: aws_lc_sys::MD5_CTX = std::mem::zeroed();
        aws_lc_sys::MD5_Init(&mut ctx);
        ctx.h = state;
        ctx.Nl = bits as u32;
        ctx.Nh = (bits >> 32) as u32;
        aws_lc_sys::MD5_Update(&mut ctx, tail.as_ptr().cast(), tail.len());
        let mut out = [0u8; 16];
        aws_lc_sys::MD5_Final(out.as_mut_ptr(), &mut ctx);
        out
    }
}

#[rustfmt::skip]
const K: [u32; 64] = [
    0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a, 0xa8304613, 0xfd469501,
    0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be, 0x6b901122, 0xfd987193, 0xa679438e, 0x49b40821,
    0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa, 0xd62f105d, 0x02441453, 0xd8a1e681, 0xe7d3fbc8,
    0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed, 0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a,
    0xfffa3942, 0x8771f681, 0x6d9d6122, 0xfde5380c, 0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70,
    0x289b7ec6, 0xeaa127fa, 0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665,
    0xf4292244, 0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
    0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, 0xf7537e82, 0xbd3af235, 0x2ad7d2bb, 0xeb86d391,
];

/// Left-rotation of each step.
#[rustfmt::skip]
const S: [i32; 64] = [
    7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22,
    5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20,
    4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23,
    6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21,
];

#[cfg(target_arch = "x86_64")]
mod x8 {
    use std::arch::x86_64::*;

    use super::{K, LANES, S};

    pub(super) fn available() -> bool {
        std::is_x86_feature_detected!("avx2")
    }

    /// AVX-512's rotate and three-input logic take a step in 6 instructions instead of 10.
    pub(super) fn avx512() -> bool {
        std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512vl")
    }

    /// The fewest busy lanes for which a SIMD round beats aws-lc on each body in turn: per lane,
    /// the AVX-512 kernel runs at 575 MB/s and the AVX2 one at 361, against aws-lc's 770.
    /// (Never, without AVX2.)
    pub(super) fn lanes_that_pay() -> usize {
        if !available() {
            usize::MAX
        } else if avx512() {
            2
        } else {
            3
        }
    }

    /// Advances each lane's state over its `data` (`blocks` whole blocks; an empty slice is an
    /// idle lane, fed zeros and left as it was).
    pub(super) fn compress(states: &mut [[u32; 4]; LANES], data: &[&[u8]; LANES], blocks: usize) {
        compress_using(states, data, blocks, avx512());
    }

    /// [`compress`] with the AVX-512 kernel or not (the tests run both where they can).
    pub(super) fn compress_using(
        states: &mut [[u32; 4]; LANES],
        data: &[&[u8]; LANES],
        blocks: usize,
        use_avx512: bool,
    ) {
        assert!(available(), "the lane thread starts only on CPUs with AVX2");
        assert!(
            !use_avx512 || avx512(),
            "AVX-512 asked for where there is none"
        );
        static ZERO_BLOCK: [u8; 64] = [0; 64];
        // Each lane reads from `base + block * stride`: its own bytes, or the zero block again.
        let mut bases = [ZERO_BLOCK.as_ptr(); LANES];
        let mut strides = [0usize; LANES];
        for (l, lane) in data.iter().enumerate() {
            if lane.is_empty() {
                continue;
            }
            assert_eq!(lane.len(), blocks * 64, "lane {l}: whole blocks only");
            bases[l] = lane.as_ptr();
            strides[l] = 64;
        }
        let before = *states;
        // SAFETY: AVX2 (and AVX-512 for that kernel) is present, and every read is within a lane's slice (its
        // length is `blocks * 64`, checked above) or within the zero block (stride 0).
        unsafe {
            if use_avx512 {
                compress_avx512(states, &bases, &strides, blocks);
            } else {
                compress_avx2(states, &bases, &strides, blocks);
            }
        }
        for (state, (old, lane)) in states.iter_mut().zip(before.iter().zip(data)) {
            if lane.is_empty() {
                *state = *old;
            }
        }
    }

    /// # Safety
    /// AVX2 must be present, and `bases[l] + block * strides[l]` must point at 64 readable bytes
    /// for every lane `l` and every `block < blocks`.
    #[target_feature(enable = "avx2")]
    unsafe fn compress_avx2(
        states: &mut [[u32; 4]; LANES],
        bases: &[*const u8; LANES],
        strides: &[usize; LANES],
        blocks: usize,
    ) {
        let [mut a, mut b, mut c, mut d] = gather(states);
        let ones = _mm256_set1_epi32(-1);
        let mut m = [_mm256_setzero_si256(); 16];
        // As in the AVX-512 kernel: K out of F's way.
        let k: &[u32; 64] = std::hint::black_box(&K);
        for block in 0..blocks {
            // SAFETY: the caller's contract.
            unsafe { load_block(&mut m, bases, strides, block) };
            let (a0, b0, c0, d0) = (a, b, c, d);
            for i in 0..64 {
                let (f, g) = match i / 16 {
                    0 => (
                        _mm256_or_si256(_mm256_and_si256(b, c), _mm256_andnot_si256(b, d)),
                        i,
                    ),
                    1 => (
                        _mm256_or_si256(_mm256_and_si256(d, b), _mm256_andnot_si256(d, c)),
                        (5 * i + 1) % 16,
                    ),
                    2 => (
                        _mm256_xor_si256(_mm256_xor_si256(b, c), d),
                        (3 * i + 5) % 16,
                    ),
                    _ => (
                        _mm256_xor_si256(c, _mm256_or_si256(b, _mm256_xor_si256(d, ones))),
                        (7 * i) % 16,
                    ),
                };
                let akm =
                    _mm256_add_epi32(a, _mm256_add_epi32(_mm256_set1_epi32(k[i] as i32), m[g]));
                let sum = _mm256_add_epi32(akm, f);
                let rotated = _mm256_or_si256(
                    _mm256_sll_epi32(sum, _mm_cvtsi32_si128(S[i])),
                    _mm256_srl_epi32(sum, _mm_cvtsi32_si128(32 - S[i])),
                );
                let next = _mm256_add_epi32(b, rotated);
                a = d;
                d = c;
                c = b;
                b = next;
            }
            [a, b, c, d] = feed_forward([a, b, c, d], [a0, b0, c0, d0]);
        }
        scatter(states, [a, b, c, d]);
    }

    /// The 16 message words of block `block` of every lane, word-major.
    ///
    /// # Safety
    /// AVX2 must be present and `bases[l] + block * strides[l]` point at 64 readable bytes.
    #[target_feature(enable = "avx2")]
    unsafe fn load_block(
        m: &mut [__m256i; 16],
        bases: &[*const u8; LANES],
        strides: &[usize; LANES],
        block: usize,
    ) {
        for half in 0..2 {
            let rows: [__m256i; LANES] = std::array::from_fn(|l| {
                // SAFETY: the caller's contract: 64 readable bytes at this block's start.
                unsafe { _mm256_loadu_si256(bases[l].add(block * strides[l] + half * 32).cast()) }
            });
            m[half * 8..half * 8 + 8].copy_from_slice(&transpose(rows));
        }
    }

    /// The AVX2 kernel's rounds with AVX-512VL's `vprold` and `vpternlogd` on the same eight
    /// lanes. The immediates are F, G, H and I as truth tables of (b, c, d).
    ///
    /// # Safety
    /// As [`compress_avx2`], and AVX-512F and VL must be present.
    #[target_feature(enable = "avx2,avx512f,avx512vl")]
    unsafe fn compress_avx512(
        states: &mut [[u32; 4]; LANES],
        bases: &[*const u8; LANES],
        strides: &[usize; LANES],
        blocks: usize,
    ) {
        let [mut a, mut b, mut c, mut d] = gather(states);
        let mut m = [_mm256_setzero_si256(); 16];
        // Seen as constants, the K would be added last, after F, and lengthen every step's chain of
        // dependent instructions from four to five (12% more time); read through an opaque
        // reference, they are added where written, before F is known.
        let k: &[u32; 64] = std::hint::black_box(&K);
        // a = b + ((a + F(b, c, d) + K[i] + m[g]) <<< s), the roles turning each step.
        macro_rules! step {
            ($a:ident, $b:ident, $c:ident, $d:ident, $f:literal, $s:literal, $i:literal, $g:literal) => {
                // `a + K + m` does not wait for the previous step; only F and what follows do.
                let akm =
                    _mm256_add_epi32($a, _mm256_add_epi32(_mm256_set1_epi32(k[$i] as i32), m[$g]));
                let f = _mm256_ternarylogic_epi32::<$f>($b, $c, $d);
                let sum = _mm256_add_epi32(akm, f);
                $a = _mm256_add_epi32($b, _mm256_rol_epi32::<$s>(sum));
            };
        }
        for block in 0..blocks {
            // SAFETY: the caller's contract.
            unsafe { load_block(&mut m, bases, strides, block) };
            let (a0, b0, c0, d0) = (a, b, c, d);
            step!(a, b, c, d, 0xCA, 7, 0, 0);
            step!(d, a, b, c, 0xCA, 12, 1, 1);
            step!(c, d, a, b, 0xCA, 17, 2, 2);
            step!(b, c, d, a, 0xCA, 22, 3, 3);
            step!(a, b, c, d, 0xCA, 7, 4, 4);
            step!(d, a, b, c, 0xCA, 12, 5, 5);
            step!(c, d, a, b, 0xCA, 17, 6, 6);
            step!(b, c, d, a, 0xCA, 22, 7, 7);
            step!(a, b, c, d, 0xCA, 7, 8, 8);
            step!(d, a, b, c, 0xCA, 12, 9, 9);
            step!(c, d, a, b, 0xCA, 17, 10, 10);
            step!(b, c, d, a, 0xCA, 22, 11, 11);
            step!(a, b, c, d, 0xCA, 7, 12, 12);
            step!(d, a, b, c, 0xCA, 12, 13, 13);
            step!(c, d, a, b, 0xCA, 17, 14, 14);
            step!(b, c, d, a, 0xCA, 22, 15, 15);
            step!(a, b, c, d, 0xE4, 5, 16, 1);
            step!(d, a, b, c, 0xE4, 9, 17, 6);
            step!(c, d, a, b, 0xE4, 14, 18, 11);
            step!(b, c, d, a, 0xE4, 20, 19, 0);
            step!(a, b, c, d, 0xE4, 5, 20, 5);
            step!(d, a, b, c, 0xE4, 9, 21, 10);
            step!(c, d, a, b, 0xE4, 14, 22, 15);
            step!(b, c, d, a, 0xE4, 20, 23, 4);
            step!(a, b, c, d, 0xE4, 5, 24, 9);
            step!(d, a, b, c, 0xE4, 9, 25, 14);
            step!(c, d, a, b, 0xE4, 14, 26, 3);
            step!(b, c, d, a, 0xE4, 20, 27, 8);
            step!(a, b, c, d, 0xE4, 5, 28, 13);
            step!(d, a, b, c, 0xE4, 9, 29, 2);
            step!(c, d, a, b, 0xE4, 14, 30, 7);
            step!(b, c, d, a, 0xE4, 20, 31, 12);
            step!(a, b, c, d, 0x96, 4, 32, 5);
            step!(d, a, b, c, 0x96, 11, 33, 8);
            step!(c, d, a, b, 0x96, 16, 34, 11);
            step!(b, c, d, a, 0x96, 23, 35, 14);
            step!(a, b, c, d, 0x96, 4, 36, 1);
            step!(d, a, b, c, 0x96, 11, 37, 4);
            step!(c, d, a, b, 0x96, 16, 38, 7);
            step!(b, c, d, a, 0x96, 23, 39, 10);
            step!(a, b, c, d, 0x96, 4, 40, 13);
            step!(d, a, b, c, 0x96, 11, 41, 0);
            step!(c, d, a, b, 0x96, 16, 42, 3);
            step!(b, c, d, a, 0x96, 23, 43, 6);
            step!(a, b, c, d, 0x96, 4, 44, 9);
            step!(d, a, b, c, 0x96, 11, 45, 12);
            step!(c, d, a, b, 0x96, 16, 46, 15);
            step!(b, c, d, a, 0x96, 23, 47, 2);
            step!(a, b, c, d, 0x39, 6, 48, 0);
            step!(d, a, b, c, 0x39, 10, 49, 7);
            step!(c, d, a, b, 0x39, 15, 50, 14);
            step!(b, c, d, a, 0x39, 21, 51, 5);
            step!(a, b, c, d, 0x39, 6, 52, 12);
            step!(d, a, b, c, 0x39, 10, 53, 3);
            step!(c, d, a, b, 0x39, 15, 54, 10);
            step!(b, c, d, a, 0x39, 21, 55, 1);
            step!(a, b, c, d, 0x39, 6, 56, 8);
            step!(d, a, b, c, 0x39, 10, 57, 15);
            step!(c, d, a, b, 0x39, 15, 58, 6);
            step!(b, c, d, a, 0x39, 21, 59, 13);
            step!(a, b, c, d, 0x39, 6, 60, 4);
            step!(d, a, b, c, 0x39, 10, 61, 11);
            step!(c, d, a, b, 0x39, 15, 62, 2);
            step!(b, c, d, a, 0x39, 21, 63, 9);
            [a, b, c, d] = feed_forward([a, b, c, d], [a0, b0, c0, d0]);
        }
        scatter(states, [a, b, c, d]);
    }

    /// A block's result added to the state it started from (MD5's feed-forward).
    #[target_feature(enable = "avx2")]
    fn feed_forward(after: [__m256i; 4], before: [__m256i; 4]) -> [__m256i; 4] {
        std::array::from_fn(|k| _mm256_add_epi32(after[k], before[k]))
    }

    /// The lanes' states as four vectors: a, b, c and d of every lane.
    #[target_feature(enable = "avx2")]
    fn gather(states: &[[u32; 4]; LANES]) -> [__m256i; 4] {
        std::array::from_fn(|k| load(std::array::from_fn(|l| states[l][k])))
    }

    /// The inverse of [`gather`].
    #[target_feature(enable = "avx2")]
    fn scatter(states: &mut [[u32; 4]; LANES], abcd: [__m256i; 4]) {
        for (k, v) in abcd.into_iter().enumerate() {
            for (s, x) in states.iter_mut().zip(store(v)) {
                s[k] = x;
            }
        }
    }

    /// Eight lanes' eight consecutive words in, word `k` of every lane (in lane order) out.
    #[target_feature(enable = "avx2")]
    fn transpose(r: [__m256i; LANES]) -> [__m256i; 8] {
        let t0 = _mm256_unpacklo_epi32(r[0], r[1]);
        let t1 = _mm256_unpackhi_epi32(r[0], r[1]);
        let t2 = _mm256_unpacklo_epi32(r[2], r[3]);
        let t3 = _mm256_unpackhi_epi32(r[2], r[3]);
        let t4 = _mm256_unpacklo_epi32(r[4], r[5]);
        let t5 = _mm256_unpackhi_epi32(r[4], r[5]);
        let t6 = _mm256_unpacklo_epi32(r[6], r[7]);
        let t7 = _mm256_unpackhi_epi32(r[6], r[7]);
        let u0 = _mm256_unpacklo_epi64(t0, t2);
        let u1 = _mm256_unpackhi_epi64(t0, t2);
        let u2 = _mm256_unpacklo_epi64(t1, t3);
        let u3 = _mm256_unpackhi_epi64(t1, t3);
        let u4 = _mm256_unpacklo_epi64(t4, t6);
        let u5 = _mm256_unpackhi_epi64(t4, t6);
        let u6 = _mm256_unpacklo_epi64(t5, t7);
        let u7 = _mm256_unpackhi_epi64(t5, t7);
        [
            _mm256_permute2x128_si256::<0x20>(u0, u4),
            _mm256_permute2x128_si256::<0x20>(u1, u5),
            _mm256_permute2x128_si256::<0x20>(u2, u6),
            _mm256_permute2x128_si256::<0x20>(u3, u7),
            _mm256_permute2x128_si256::<0x31>(u0, u4),
            _mm256_permute2x128_si256::<0x31>(u1, u5),
            _mm256_permute2x128_si256::<0x31>(u2, u6),
            _mm256_permute2x128_si256::<0x31>(u3, u7),
        ]
    }

    #[target_feature(enable = "avx2")]
    fn load(v: [u32; LANES]) -> __m256i {
        // SAFETY: reads the 32 bytes of `v`; unaligned loads are allowed.
        unsafe { _mm256_loadu_si256(v.as_ptr().cast()) }
    }

    #[target_feature(enable = "avx2")]
    fn store(v: __m256i) -> [u32; LANES] {
        let mut out = [0u32; LANES];
        // SAFETY: writes the 32 bytes of `out`; unaligned stores are allowed.
        unsafe { _mm256_storeu_si256(out.as_mut_ptr().cast(), v) };
        out
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod x8 {
    use super::LANES;

    pub(super) fn available() -> bool {
        false
    }

    pub(super) fn avx512() -> bool {
        false
    }

    pub(super) fn lanes_that_pay() -> usize {
        usize::MAX
    }

    pub(super) fn compress(_: &mut [[u32; 4]; LANES], _: &[&[u8]; LANES], _: usize) {
        unreachable!("lanes never pay without AVX2")
    }

    pub(super) fn compress_using(_: &mut [[u32; 4]; LANES], _: &[&[u8]; LANES], _: usize, _: bool) {
        unreachable!("the lane thread starts only on CPUs with AVX2")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(data: &[u8]) -> [u8; 16] {
        scalar_from(INITIAL, 0, data)
    }

    fn bytes(len: usize, seed: u32) -> Vec<u8> {
        (0..len as u32)
            .map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 13) as u8)
            .collect()
    }

    #[test]
    fn scalar_continuation_equals_one_pass() {
        assert_eq!(
            hex(&reference(b"The quick brown fox jumps over the lazy dog")),
            "9e107d9d372bb6826bd81d3542a419d6"
        );
        let data = bytes(64 * 9 + 17, 1);
        let whole = reference(&data);
        // The state after k blocks, continued: compute it through the lanes with one lane busy.
        for k in 0..=9 {
            if !x8::available() {
                return;
            }
            let mut states = [INITIAL; LANES];
            let mut lanes: [&[u8]; LANES] = [&[]; LANES];
            lanes[3] = &data[..k * 64];
            x8::compress(&mut states, &lanes, k);
            assert_eq!(
                scalar_from(states[3], k, &data[k * 64..]),
                whole,
                "after {k} blocks"
            );
            // Idle lanes are left as they were.
            assert!(
                states
                    .iter()
                    .enumerate()
                    .all(|(i, s)| i == 3 || *s == INITIAL)
            );
        }
    }

    #[test]
    fn scalar_rounds_continue_like_one_pass() {
        let data = bytes(64 * 7 + 5, 9);
        let mut state = INITIAL;
        for round in data[..64 * 7].chunks(64 * 3) {
            state = scalar_blocks(state, round);
        }
        assert_eq!(scalar_from(state, 7, &data[64 * 7..]), reference(&data));
    }

    /// Both kernels (AVX-512 where the CPU has it), every lane, some lanes idle.
    #[test]
    fn every_lane_equals_aws_lc_over_many_lengths() {
        if !x8::available() {
            return;
        }
        let bodies: Vec<Vec<u8>> = (0..LANES)
            .map(|l| bytes(64 * 5 + l * 3, l as u32))
            .collect();
        for use_avx512 in [false, true] {
            if use_avx512 && !x8::avx512() {
                continue;
            }
            for idle in [None, Some(0), Some(5)] {
                let mut states = [INITIAL; LANES];
                let lanes: [&[u8]; LANES] = std::array::from_fn(|l| {
                    if Some(l) == idle {
                        &[][..]
                    } else {
                        &bodies[l][..64 * 5]
                    }
                });
                x8::compress_using(&mut states, &lanes, 5, use_avx512);
                for (l, body) in bodies.iter().enumerate() {
                    if Some(l) == idle {
                        assert_eq!(states[l], INITIAL, "idle lane {l} untouched");
                        continue;
                    }
                    let got = scalar_from(states[l], 5, &body[64 * 5..]);
                    assert_eq!(got, reference(body), "lane {l}, AVX-512 {use_avx512}");
                }
            }
        }
    }

    fn job(len: usize) -> (Job, tokio::sync::oneshot::Receiver<[u8; 16]>) {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let body = Bytes::from(bytes(len, len as u32));
        (Job { body, reply }, answer)
    }

    /// Fresh lanes wait for a body announced as arriving and take it when it comes; with nothing
    /// arriving, or a lane already started, they do not wait at all; and a body that never comes
    /// is waited for only until the deadline.
    #[test]
    fn fresh_lanes_wait_for_bodies_still_arriving_and_no_longer() {
        let wait = std::time::Duration::from_millis(200);
        let (tx, rx) = mpsc::channel::<Job>();
        let arriving = AtomicUsize::new(1);
        let (first, _a) = job(128);
        let mut lanes = vec![Lane::of(first)];
        std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(std::time::Duration::from_millis(20));
                let (late, _b) = job(192);
                tx.send(late).unwrap();
                arriving.store(0, Ordering::Relaxed);
            });
            wait_for_company(&mut lanes, &rx, &arriving, wait);
        });
        assert_eq!(lanes.len(), 2, "the body that arrived joined the lanes");

        // Nothing arriving: no wait, even with a body about to be sent.
        let (only, _c) = job(64);
        let mut lanes = vec![Lane::of(only)];
        let started = std::time::Instant::now();
        wait_for_company(&mut lanes, &rx, &AtomicUsize::new(0), wait);
        assert!(started.elapsed() < wait, "waited with nothing arriving");

        // A lane already started does not wait for company.
        let (started_job, _d) = job(64 * 4);
        let mut lanes = vec![Lane::of(started_job)];
        lanes[0].done = 1;
        let started = std::time::Instant::now();
        wait_for_company(&mut lanes, &rx, &AtomicUsize::new(1), wait);
        assert!(started.elapsed() < wait, "a started lane waited");

        // Announced but never sent: waits until the deadline, then goes on alone.
        let (alone, _e) = job(64);
        let mut lanes = vec![Lane::of(alone)];
        let started = std::time::Instant::now();
        wait_for_company(&mut lanes, &rx, &AtomicUsize::new(1), wait);
        let waited = started.elapsed();
        assert!(waited >= wait && waited < wait * 20, "waited {waited:?}");
        assert_eq!(lanes.len(), 1);
        drop(tx);
    }

    /// Many bodies of mixed sizes submitted at once: every caller gets its own body's digest.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_bodies_each_get_their_own_digest() {
        let mut tasks = Vec::new();
        for i in 0..40usize {
            let body = Bytes::from(bytes(
                LANE_MIN_BYTES / 4 + i * 4099 + (i % 3) * 64,
                i as u32,
            ));
            tasks.push(tokio::spawn(async move {
                let got = md5(body.clone()).await;
                (got, reference(&body))
            }));
        }
        for (i, t) in tasks.into_iter().enumerate() {
            let (got, want) = t.await.unwrap();
            assert_eq!(got, want, "body {i}");
        }
        assert_eq!(md5(Bytes::new()).await, reference(b""));
    }

    /// Bodies hashed together on the caller's thread: more than there are lanes, of mixed sizes
    /// (empty, under a block, whole blocks, long), alone or a few at a time.
    #[test]
    fn many_bodies_at_once_each_get_their_own_digest() {
        let lengths = [
            0,
            5,
            64,
            64 * 3,
            90_000,
            17,
            64 * 300 + 9,
            4099,
            1,
            128 * 1024,
            63,
            70_001,
        ];
        let bodies: Vec<Vec<u8>> = lengths
            .iter()
            .enumerate()
            .map(|(i, &n)| bytes(n, i as u32))
            .collect();
        for count in [0, 1, 2, 3, 8, bodies.len()] {
            let refs: Vec<&[u8]> = bodies[..count].iter().map(Vec::as_slice).collect();
            let got = md5_many(&refs);
            assert_eq!(got.len(), count);
            for (i, body) in refs.iter().enumerate() {
                assert_eq!(got[i], reference(body), "body {i} of {count}");
            }
        }
    }

    fn hex(d: &[u8]) -> String {
        d.iter().map(|b| format!("{b:02x}")).collect()
    }
}
