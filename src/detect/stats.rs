//! The few statistics the baseline needs: order statistics, the standard normal and chi-square
//! quantiles, and a small matrix inverse. Pure.

/// Linear-interpolated quantile of sorted values (numpy's default); `None` when empty.
pub fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    let position = q.clamp(0.0, 1.0) * last as f64;
    let below = position.floor() as usize;
    let above = (below + 1).min(last);
    let fraction = position - below as f64;
    Some(sorted[below] + (sorted[above] - sorted[below]) * fraction)
}

/// The median of sorted values; 0 when empty.
pub fn median(sorted: &[f64]) -> f64 {
    quantile(sorted, 0.5).unwrap_or(0.0)
}

/// Median absolute deviation from `center` (unscaled).
pub fn mad(values: &[f64], center: f64) -> f64 {
    let mut deviations: Vec<f64> = values.iter().map(|v| (v - center).abs()).collect();
    deviations.sort_by(f64::total_cmp);
    median(&deviations)
}

/// The consistency factor that makes the MAD estimate a normal distribution's standard deviation.
pub const MAD_TO_SD: f64 = 1.482_602_218_505_602;

/// The standard normal quantile Φ⁻¹(p), by Acklam's rational approximation (relative error below
/// 1.2e-9), for p in (0, 1); ±infinity at the ends.
pub fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    const LOW: f64 = 0.024_25;
    if p <= 0.0 {
        return f64::NEG_INFINITY;
    }
    if p >= 1.0 {
        return f64::INFINITY;
    }
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < LOW {
        tail((-2.0 * p.ln()).sqrt())
    } else if p <= 1.0 - LOW {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    }
}

/// Student's t quantile for probability `p` with `dof` degrees of freedom, by the Cornish–Fisher
/// expansion around the normal quantile (within 1 % for 20 or more degrees of freedom in the far
/// tail; the normal quantile for 0 or very many).
pub fn student_t_quantile(p: f64, dof: usize) -> f64 {
    let z = normal_quantile(p);
    if dof == 0 || dof > 1_000_000 {
        return z;
    }
    let v = dof as f64;
    let (z3, z5, z7) = (z.powi(3), z.powi(5), z.powi(7));
    z + (z3 + z) / (4.0 * v)
        + (5.0 * z5 + 16.0 * z3 + 3.0 * z) / (96.0 * v * v)
        + (3.0 * z7 + 19.0 * z5 + 17.0 * z3 - 15.0 * z) / (384.0 * v.powi(3))
}

/// The value a chi-square variable with `dof` degrees of freedom exceeds with probability `tail`:
/// exact for 1 and 2 degrees of freedom, Wilson–Hilferty's cube approximation beyond.
pub fn chi_square_upper(dof: usize, tail: f64) -> f64 {
    match dof {
        0 => 0.0,
        1 => normal_quantile(1.0 - tail / 2.0).powi(2),
        2 => -2.0 * tail.ln(),
        _ => {
            let k = dof as f64;
            let z = normal_quantile(1.0 - tail);
            let h = 2.0 / (9.0 * k);
            k * (1.0 - h + z * h.sqrt()).powi(3)
        }
    }
}

/// The counts a non-negative count variable with this `mean` and `variance` reaches below and
/// above only with probability `tail` each: the largest count `c` with `P(X ≤ c) < tail` (if any)
/// and the smallest `c` with `P(X ≥ c) < tail`. The variable is Poisson, or negative binomial when
/// the variance exceeds the mean (over-dispersed counts such as retries or queue depths): a normal
/// approximation of a small count's right tail is far too thin (Poisson(2) passes mean + 3.9 sd
/// one time in a thousand, not one in twenty thousand). `None` for counts too large or too spread
/// to sum term by term, where the normal approximation is good anyway.
pub fn count_tail_limits(mean: f64, variance: f64, tail: f64) -> Option<(Option<f64>, f64)> {
    const MAX_TERMS: u32 = 100_000;
    if !(mean > 0.0 && mean.is_finite() && variance.is_finite() && tail > 0.0 && tail < 0.5) {
        return None;
    }
    // The probability of 0, and the ratio of P(k + 1) to P(k).
    let (ln_first, shape, ratio) = if variance > mean * 1.000_001 {
        let shape = mean * mean / (variance - mean);
        let ratio = mean / (shape + mean);
        (shape * (1.0 - ratio).ln(), shape, ratio)
    } else {
        (-mean, f64::INFINITY, mean)
    };
    if ln_first < -700.0 {
        return None;
    }
    let mut probability = ln_first.exp();
    let mut cumulative = 0.0;
    let mut below = None;
    for k in 0..MAX_TERMS {
        cumulative += probability;
        if cumulative < tail {
            below = Some(f64::from(k));
        }
        if cumulative > 1.0 - tail {
            return Some((below, f64::from(k + 1)));
        }
        let k = f64::from(k);
        let growth = if shape.is_finite() {
            (k + shape) / (k + 1.0) * ratio
        } else {
            ratio / (k + 1.0)
        };
        probability *= growth;
    }
    None
}

/// `ln Γ(x)` for `x > 0`, by Lanczos' approximation (g = 7, 9 terms; relative error near 1e-15).
pub fn ln_gamma(x: f64) -> f64 {
    const COEFFICIENTS: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Γ(x) Γ(1 - x) = π / sin(πx).
        return (std::f64::consts::PI / (std::f64::consts::PI * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut sum = COEFFICIENTS[0];
    for (i, c) in COEFFICIENTS.iter().enumerate().skip(1) {
        sum += c / (x + i as f64);
    }
    let t = x + 7.5;
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + sum.ln()
}

/// The standard normal distribution function Φ(z), from the complementary error function
/// (Numerical Recipes' `erfcc`, fractional error below 1.2e-7 everywhere).
pub fn normal_cdf(z: f64) -> f64 {
    let x = -z / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.5 * x.abs());
    let polynomial = -x * x - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let erfc = t * polynomial.exp();
    let erfc = if x >= 0.0 { erfc } else { 2.0 - erfc };
    0.5 * erfc
}

/// `P(X ≥ k)` for a Poisson variable with mean `mean`: the regularized lower incomplete gamma
/// function `P(k, mean)`, by its series below `k + 1` and its continued fraction above
/// (Numerical Recipes' `gammp`). 1 for `k ≤ 0`; 0 for a positive `k` when the mean is 0.
///
/// Beyond 1,000 on both sides, where the series and the fraction need thousands of terms, it is
/// Wilson–Hilferty's cube-root normal approximation of the gamma distribution (relative error of
/// a few percent at tails of 1e-6, far below what a cut on it needs).
pub fn poisson_upper_tail(k: u64, mean: f64) -> f64 {
    const EPSILON: f64 = 1e-15;
    const MAX_ITERATIONS: u32 = 10_000;
    const LARGE: f64 = 1000.0;
    if k == 0 || mean.is_nan() {
        return 1.0;
    }
    if mean <= 0.0 {
        return 0.0;
    }
    let a = k as f64;
    let x = mean;
    if a > LARGE && x > LARGE {
        // P(X ≥ k) = P(Gamma(k, 1) ≤ mean), and (Gamma / k)^(1/3) is nearly normal with mean
        // 1 - 1/(9k) and variance 1/(9k).
        let variance = 1.0 / (9.0 * a);
        let z = ((x / a).cbrt() - (1.0 - variance)) / variance.sqrt();
        return normal_cdf(z);
    }
    let log_prefactor = a * x.ln() - x - ln_gamma(a);
    if x < a + 1.0 {
        // Series: P(a, x) = e^-x x^a / Γ(a + 1) · Σ x^n / ((a + 1) … (a + n)).
        let mut term = 1.0 / a;
        let mut sum = term;
        let mut denominator = a;
        for _ in 0..MAX_ITERATIONS {
            denominator += 1.0;
            term *= x / denominator;
            sum += term;
            if term.abs() < sum.abs() * EPSILON {
                break;
            }
        }
        (sum.ln() + log_prefactor).exp().clamp(0.0, 1.0)
    } else {
        // Continued fraction for Q(a, x) = 1 - P(a, x) (modified Lentz).
        let tiny = f64::MIN_POSITIVE / EPSILON;
        let mut b = x + 1.0 - a;
        let mut c = 1.0 / tiny;
        let mut d = 1.0 / b;
        let mut h = d;
        for i in 1..=MAX_ITERATIONS {
            let an = -f64::from(i) * (f64::from(i) - a);
            b += 2.0;
            d = an * d + b;
            if d.abs() < tiny {
                d = tiny;
            }
            c = b + an / c;
            if c.abs() < tiny {
                c = tiny;
            }
            d = 1.0 / d;
            let step = d * c;
            h *= step;
            if (step - 1.0).abs() < EPSILON {
                break;
            }
        }
        (1.0 - (log_prefactor.exp() * h)).clamp(0.0, 1.0)
    }
}

/// The inverse of a symmetric positive definite `n`×`n` matrix (row-major), by Gauss–Jordan
/// elimination with partial pivoting; `None` when it is singular.
pub fn invert(matrix: &[f64], n: usize) -> Option<Vec<f64>> {
    let mut a = matrix.to_vec();
    let mut inverse = vec![0.0; n * n];
    for i in 0..n {
        inverse[i * n + i] = 1.0;
    }
    for column in 0..n {
        let pivot = (column..n)
            .max_by(|&x, &y| a[x * n + column].abs().total_cmp(&a[y * n + column].abs()))?;
        if a[pivot * n + column].abs() < 1e-12 {
            return None;
        }
        for k in 0..n {
            a.swap(column * n + k, pivot * n + k);
            inverse.swap(column * n + k, pivot * n + k);
        }
        let scale = a[column * n + column];
        for k in 0..n {
            a[column * n + k] /= scale;
            inverse[column * n + k] /= scale;
        }
        for row in 0..n {
            if row == column {
                continue;
            }
            let factor = a[row * n + column];
            if factor == 0.0 {
                continue;
            }
            for k in 0..n {
                a[row * n + k] -= factor * a[column * n + k];
                inverse[row * n + k] -= factor * inverse[column * n + k];
            }
        }
    }
    Some(inverse)
}

#[cfg(test)]
mod tests {
    use approx::assert_abs_diff_eq;

    use super::*;

    #[test]
    fn poisson_tails_match_scipy() {
        // scipy.stats.poisson.sf(k - 1, mean)
        let cases = [
            (3, 0.06, 3.441_824_0e-5),
            (3, 3.0, 0.576_809_9),
            (120, 60.0, 6.155_483e-12),
            (90, 60.0, 1.805_093e-4),
            (1, 0.001, 9.995_001_7e-4),
        ];
        for (k, mean, expected) in cases {
            let got = poisson_upper_tail(k, mean);
            assert!(
                (got - expected).abs() <= expected * 1e-4,
                "P(X >= {k} | {mean}) = {got}, scipy {expected}"
            );
        }
        // Beyond 1,000 on both sides: Wilson–Hilferty, within a few percent in the tail.
        for (k, mean, expected) in [
            (1_100, 1_000.0, 9.626_3e-4),
            (6_300, 6_000.0, 6.223_616e-5),
            (61_000, 60_000.0, 2.352_0e-5),
            (1_500_000, 1_500_000.0, 0.500_11),
        ] {
            let got = poisson_upper_tail(k, mean);
            assert!(
                (got - expected).abs() <= expected * 0.03,
                "P(X >= {k} | {mean}) = {got}, scipy {expected}"
            );
        }
        assert_abs_diff_eq!(normal_cdf(0.0), 0.5, epsilon = 1e-7);
        assert_abs_diff_eq!(normal_cdf(-3.090_232), 0.001, epsilon = 1e-7);
        assert_eq!(poisson_upper_tail(0, 5.0), 1.0);
        assert_eq!(poisson_upper_tail(4, 0.0), 0.0);
        assert_abs_diff_eq!(ln_gamma(10.0), 362_880f64.ln(), epsilon = 1e-10);
    }

    #[test]
    fn count_limits_follow_poisson_and_negative_binomial_tails() {
        // Poisson(2): P(X >= 9) = 2.4e-4, P(X >= 10) = 4.6e-5.
        assert_eq!(count_tail_limits(2.0, 2.0, 1e-4), Some((None, 10.0)));
        assert_eq!(count_tail_limits(2.0, 2.0, 1e-3), Some((None, 9.0)));
        // Poisson(50): P(X <= 26) = 1.4e-4 and P(X <= 25) = 7.2e-5; P(X >= 78) = 1.5e-4 and
        // P(X >= 79) = 9.2e-5 (scipy.stats.poisson).
        assert_eq!(
            count_tail_limits(50.0, 50.0, 1e-4),
            Some((Some(25.0), 79.0))
        );
        // Over-dispersed counts (variance 3x the mean) reach much further: P(X >= 19) = 4.5e-4.
        let (_, wide) = count_tail_limits(2.0, 6.0, 1e-4).expect("limits");
        assert!(wide > 19.0, "{wide}");
        assert_eq!(count_tail_limits(0.0, 0.0, 1e-4), None);
        assert_eq!(count_tail_limits(2000.0, 2000.0, 1e-4), None);
    }

    #[test]
    fn normal_quantiles_match_the_tables() {
        assert_abs_diff_eq!(normal_quantile(0.5), 0.0, epsilon = 1e-9);
        assert_abs_diff_eq!(normal_quantile(0.975), 1.959_963_985, epsilon = 1e-6);
        assert_abs_diff_eq!(normal_quantile(0.001), -3.090_232_306, epsilon = 1e-6);
        assert_abs_diff_eq!(normal_quantile(1.0 - 1e-6), 4.753_424_309, epsilon = 1e-5);
    }

    #[test]
    fn student_t_quantiles_match_the_tables() {
        assert_abs_diff_eq!(student_t_quantile(0.975, 30), 2.042, epsilon = 2e-3);
        assert_abs_diff_eq!(student_t_quantile(0.999, 49), 3.265, epsilon = 0.02);
        assert_abs_diff_eq!(student_t_quantile(0.999, 2000), 3.094, epsilon = 1e-3);
    }

    #[test]
    fn chi_square_quantiles_match_the_tables() {
        assert_abs_diff_eq!(chi_square_upper(1, 0.05), 3.841, epsilon = 1e-3);
        assert_abs_diff_eq!(chi_square_upper(2, 0.01), 9.210, epsilon = 1e-3);
        // Wilson–Hilferty errs high by under 2 % in the far tail at few degrees of freedom: a
        // slightly stricter cut.
        assert_abs_diff_eq!(chi_square_upper(4, 0.001), 18.467, epsilon = 0.3);
        assert_abs_diff_eq!(chi_square_upper(10, 0.05), 18.307, epsilon = 0.05);
    }

    #[test]
    fn quantiles_interpolate_like_numpy() {
        let sorted = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile(&sorted, 0.5), Some(2.5));
        assert_eq!(quantile(&sorted, 1.0), Some(4.0));
        assert_eq!(quantile(&[], 0.5), None);
        assert_eq!(mad(&[1.0, 2.0, 3.0, 4.0, 100.0], 3.0), 1.0);
    }

    #[test]
    fn inverse_times_matrix_is_the_identity() {
        let matrix = [4.0, 1.0, 0.5, 1.0, 3.0, 0.2, 0.5, 0.2, 2.0];
        let inverse = invert(&matrix, 3).expect("invertible");
        for i in 0..3 {
            for j in 0..3 {
                let product: f64 = (0..3).map(|k| matrix[i * 3 + k] * inverse[k * 3 + j]).sum();
                assert_abs_diff_eq!(product, if i == j { 1.0 } else { 0.0 }, epsilon = 1e-12);
            }
        }
        assert_eq!(invert(&[1.0, 2.0, 2.0, 4.0], 2), None);
    }
}
