//! Sentence-transformers' pooling, on tensors: `Pooling(mean)` then `Normalize`.

use candle_core::{Result, Tensor};

/// Mean of the token vectors of each sequence, counting only positions where `mask` is 1.
///
/// `hidden` is `(batch, seq, dim)`, `mask` is `(batch, seq)` of 0/1 in the same dtype; the result
/// is `(batch, dim)`. Like sentence-transformers, the token count is clamped to 1e-9 so that an
/// all-zero mask gives zeros rather than NaN.
pub(crate) fn mean_pool(hidden: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let summed = hidden.broadcast_mul(&mask.unsqueeze(2)?)?.sum(1)?;
    let counts = mask.sum_keepdim(1)?.maximum(1e-9)?;
    summed.broadcast_div(&counts)
}

/// Each row divided by its L2 norm (clamped to 1e-12 like `torch.nn.functional.normalize`).
pub(crate) fn l2_normalize(rows: &Tensor) -> Result<Tensor> {
    let norms = rows.sqr()?.sum_keepdim(1)?.sqrt()?.maximum(1e-12)?;
    rows.broadcast_div(&norms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn close(a: &[f32], b: &[f32]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-6)
    }

    #[test]
    fn mean_pool_ignores_masked_positions() {
        // Two sequences of three positions, two dimensions; padded positions hold garbage.
        let hidden = Tensor::new(
            &[
                [[1f32, 2.], [3., 4.], [100., -100.]],
                [[5., 6.], [1e6, 1e6], [-1e6, 7.]],
            ],
            &Device::Cpu,
        )
        .unwrap();
        let mask = Tensor::new(&[[1f32, 1., 0.], [1., 0., 0.]], &Device::Cpu).unwrap();
        let pooled = mean_pool(&hidden, &mask).unwrap().to_vec2::<f32>().unwrap();
        assert!(close(&pooled[0], &[2., 3.]), "{pooled:?}");
        assert!(close(&pooled[1], &[5., 6.]), "{pooled:?}");
    }

    #[test]
    fn mean_pool_of_an_empty_mask_is_zero_not_nan() {
        let hidden = Tensor::new(&[[[1f32, 2.], [3., 4.]]], &Device::Cpu).unwrap();
        let mask = Tensor::new(&[[0f32, 0.]], &Device::Cpu).unwrap();
        let pooled = mean_pool(&hidden, &mask).unwrap().to_vec2::<f32>().unwrap();
        assert!(close(&pooled[0], &[0., 0.]), "{pooled:?}");
    }

    #[test]
    fn l2_normalize_gives_unit_rows_with_the_same_direction() {
        let rows = Tensor::new(&[[3f32, 4.], [-0.001, 0.], [2., 2.]], &Device::Cpu).unwrap();
        let unit = l2_normalize(&rows).unwrap().to_vec2::<f32>().unwrap();
        assert!(close(&unit[0], &[0.6, 0.8]), "{unit:?}");
        assert!(close(&unit[1], &[-1., 0.]), "{unit:?}");
        for row in &unit {
            let norm: f32 = row.iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!((norm - 1.).abs() < 1e-6, "{unit:?}");
        }
    }

    #[test]
    fn l2_normalize_leaves_a_zero_row_at_zero() {
        let rows = Tensor::new(&[[0f32, 0., 0.]], &Device::Cpu).unwrap();
        let unit = l2_normalize(&rows).unwrap().to_vec2::<f32>().unwrap();
        assert!(close(&unit[0], &[0., 0., 0.]), "{unit:?}");
    }
}
