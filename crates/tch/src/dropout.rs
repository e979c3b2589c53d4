//! `F.dropout` in training, with the mask drawn on all cores on the CPU.

/// `F.dropout(x, p)` in training: each element zeroed with probability `p`, the
/// rest scaled by 1 / (1 - p). On the CPU the mask (0 or 1 / (1 - p), so that
/// dropout is one multiplication forward and one backward) comes from
/// `dropout_mask` on torch's threads, seeded from torch's generator (so
/// `Device::seed` makes it reproducible), instead of torch's serial Bernoulli
/// draws; on a GPU, torch's own dropout.
pub(crate) fn dropout(x: &tch::Tensor, p: f64) -> tch::Tensor {
    if p <= 0.0 {
        return x.shallow_clone();
    }
    if x.device() != tch::Device::Cpu || p >= 1.0 || x.kind() != tch::Kind::Float {
        return x.dropout(p, true);
    }
    let seed = tch::Tensor::randint(i64::MAX, [1], (tch::Kind::Int64, tch::Device::Cpu)).int64_value(&[0]) as u64;
    let mask = tch::Tensor::empty(x.size(), (tch::Kind::Float, tch::Device::Cpu));
    // SAFETY: `mask` is a fresh contiguous f32 tensor of `numel` elements that
    // nothing else references until it is used below.
    let values = unsafe { std::slice::from_raw_parts_mut(mask.data_ptr() as *mut f32, mask.numel()) };
    let threads = tch::get_num_threads().max(1) as usize;
    crate::dropout_mask::fill_keep_mask(values, p, seed, threads, [(1.0 / (1.0 - p)) as f32, 0.0]);
    x * mask
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropout_zeroes_p_of_the_elements_scales_the_rest_and_differentiates_through_its_mask() {
        let n = 1 << 21;
        let x = tch::Tensor::ones([n], (tch::Kind::Float, tch::Device::Cpu)).set_requires_grad(true);
        tch::manual_seed(3);
        let y = dropout(&x, 0.1);
        let values: Vec<f32> = Vec::try_from(&y.detach()).unwrap();
        let scale = (1.0 / 0.9) as f32;
        assert!(values.iter().all(|&v| v == 0.0 || v == scale));
        let dropped = values.iter().filter(|&&v| v == 0.0).count() as f64 / n as f64;
        assert!((dropped - 0.1).abs() < 1e-3, "dropped {dropped}");
        // d sum(y) / dx is the mask itself.
        let grad = tch::Tensor::run_backward(&[y.sum(tch::Kind::Float)], &[&x], false, false).remove(0);
        assert!(grad.equal(&y.detach()));
        // The same torch seed, the same mask; another seed, another.
        tch::manual_seed(3);
        assert!(dropout(&x, 0.1).equal(&y));
        assert!(!dropout(&x, 0.1).equal(&y));
        assert!(dropout(&x, 0.0).equal(&x));
    }
}
