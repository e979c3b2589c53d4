//! Dropout's mask, drawn on all cores by a counter-based generator.
//!
//! Why: torch's CPU dropout draws its Bernoulli mask from one serial
//! generator; on this project's 2-core machine it took about 800 ms for the
//! attention probabilities of one block at 512 tokens and batch 16 (50M
//! draws), most of a training step. Here the mask is split into fixed chunks,
//! each with its own SplitMix64 stream seeded from (seed, chunk index), so the
//! mask depends on the seed alone, not on how many threads fill it.

/// Elements per independently seeded chunk.
const CHUNK: usize = 1 << 16;
/// Below this many elements one thread fills the mask (spawning costs more).
const PARALLEL_FROM: usize = 1 << 20;

/// SplitMix64's output function (Steele, Lea, Flood 2014).
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// The drop threshold of probability `p` on 32-bit draws: an element is kept
/// when its draw is at least this (P(drop) = p within 2^-32).
fn threshold(p: f64) -> u64 {
    (p.clamp(0.0, 1.0) * 4_294_967_296.0).round() as u64
}

// Not inlined, so that profiles name it (inlined, it is the anonymous body of a spawned thread).
#[inline(never)]
fn fill_chunk<T: Copy>(chunk: &mut [T], index: usize, threshold: u64, seed: u64, [keep, drop]: [T; 2]) {
    let mut state = mix(seed ^ mix((index as u64).wrapping_add(GOLDEN)));
    let value = |draw: u64| if draw >= threshold { keep } else { drop };
    for pair in chunk.chunks_mut(2) {
        state = state.wrapping_add(GOLDEN);
        let r = mix(state);
        pair[0] = value(r & 0xFFFF_FFFF);
        if let Some(second) = pair.get_mut(1) {
            *second = value(r >> 32);
        }
    }
}

/// Fills `mask` with `values[0]` (keep) with probability `1 - p` and
/// `values[1]` (drop) with probability `p`, independently per element, on up
/// to `threads` threads.
pub fn fill_keep_mask<T: Copy + Send>(mask: &mut [T], p: f64, seed: u64, threads: usize, values: [T; 2]) {
    let threshold = threshold(p);
    let chunks = mask.len().div_ceil(CHUNK);
    let threads = threads.clamp(1, chunks.max(1));
    if threads == 1 || mask.len() < PARALLEL_FROM {
        for (index, chunk) in mask.chunks_mut(CHUNK).enumerate() {
            fill_chunk(chunk, index, threshold, seed, values);
        }
        return;
    }
    // Contiguous runs of whole chunks per thread; chunk indices stay global.
    let per_thread = chunks.div_ceil(threads);
    std::thread::scope(|scope| {
        for (t, run) in mask.chunks_mut(per_thread * CHUNK).enumerate() {
            scope.spawn(move || {
                for (i, chunk) in run.chunks_mut(CHUNK).enumerate() {
                    fill_chunk(chunk, t * per_thread + i, threshold, seed, values);
                }
            });
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask(n: usize, p: f64, seed: u64, threads: usize) -> Vec<u8> {
        let mut m = vec![7u8; n];
        fill_keep_mask(&mut m, p, seed, threads, [1, 0]);
        m
    }

    #[test]
    fn keeps_one_minus_p_of_the_elements() {
        let n = 3 * PARALLEL_FROM + 12_345;
        for p in [0.1, 0.5, 0.9] {
            let m = mask(n, p, 42, 4);
            assert!(m.iter().all(|&b| b <= 1));
            let kept = m.iter().map(|&b| b as f64).sum::<f64>() / n as f64;
            // Binomial standard deviation at n = 3.1M is below 3e-4.
            assert!((kept - (1.0 - p)).abs() < 2e-3, "p {p}: kept {kept}");
        }
        assert!(mask(1000, 0.0, 1, 1).iter().all(|&b| b == 1));
        assert!(mask(1000, 1.0, 1, 1).iter().all(|&b| b == 0));
    }

    #[test]
    fn writes_the_values_it_is_given() {
        let mut m = vec![0.5f32; 10_000];
        fill_keep_mask(&mut m, 0.1, 9, 1, [1.0 / 0.9, 0.0]);
        assert!(m.iter().all(|&x| x == 0.0 || x == 1.0 / 0.9));
        let mut bytes = vec![7u8; 10_000];
        fill_keep_mask(&mut bytes, 0.1, 9, 1, [1, 0]);
        assert!(m.iter().zip(&bytes).all(|(&x, &b)| (x != 0.0) == (b == 1)), "the same draws whatever the values");
    }

    #[test]
    fn depends_on_the_seed_not_on_the_threads() {
        let n = 2 * PARALLEL_FROM + 101;
        let one = mask(n, 0.1, 7, 1);
        assert_eq!(one, mask(n, 0.1, 7, 2));
        assert_eq!(one, mask(n, 0.1, 7, 5));
        assert_ne!(one, mask(n, 0.1, 8, 2));
    }

    #[test]
    fn neighbouring_elements_and_chunks_are_uncorrelated() {
        let n = 4 * CHUNK;
        let m = mask(n, 0.5, 3, 1);
        let same = |a: &[u8], b: &[u8]| a.iter().zip(b).filter(|(x, y)| x == y).count() as f64 / a.len() as f64;
        // Adjacent elements (the two halves of one draw) and adjacent chunks agree half the time.
        assert!((same(&m[..n - 1], &m[1..]) - 0.5).abs() < 0.01);
        assert!((same(&m[..CHUNK], &m[CHUNK..2 * CHUNK]) - 0.5).abs() < 0.01);
    }
}
