//! Zero-shot scoring: cosine similarity of an image embedding against the label
//! table, CLIP's scaled softmax or SigLIP's per-label sigmoid ([`ScoringSection`]),
//! and top-k selection.
//!
//! Everything here works in caller-provided buffers: scoring a frame allocates
//! nothing, and the top-k result is a fixed-capacity [`heapless::Vec`].

pub use clip_edge_bundle::labels::l2_normalize;
use clip_edge_bundle::{LabelTable, ScoringRule, ScoringSection};

/// Largest `k` a [`TopK`] can hold.
pub const MAX_TOP_K: usize = 16;

/// CLIP's logit scale for zero-shot classification (`exp(ln 100)`, the cap used by
/// OpenAI's checkpoints).
pub const DEFAULT_LOGIT_SCALE: f32 = 100.0;

/// One ranked label.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prediction {
    /// Row of the label in the [`LabelTable`].
    pub index: usize,
    /// Cosine similarity of the image and label embeddings.
    pub score: f32,
    /// Probability of the label: with softmax scoring its share over all labels of
    /// `logit_scale × score`; with sigmoid scoring its own probability,
    /// `sigmoid(logit_scale × score + logit_bias)`.
    pub prob: f32,
}

/// The best labels of one frame, best first.
pub type TopK = heapless::Vec<Prediction, MAX_TOP_K>;

/// Scores image embeddings against a label table without allocating per call.
#[derive(Debug, Clone)]
pub struct Scorer {
    scoring: ScoringSection,
    normalized: Vec<f32>,
    cosines: Vec<f32>,
    probs: Vec<f32>,
}

impl Scorer {
    /// A scorer for `table` with the `scoring` rule, with all buffers sized up front.
    pub fn new(table: &LabelTable, scoring: &ScoringSection) -> Self {
        Scorer {
            scoring: scoring.clone(),
            normalized: vec![0.0; table.dim()],
            cosines: vec![0.0; table.len()],
            probs: vec![0.0; table.len()],
        }
    }

    /// Cosine of each label after the last [`Scorer::score`] call.
    pub fn cosines(&self) -> &[f32] {
        &self.cosines
    }

    /// Probability of each label after the last [`Scorer::score`] call.
    pub fn probs(&self) -> &[f32] {
        &self.probs
    }

    /// Scores one raw (unnormalised) image embedding and returns the best `k` labels
    /// (`k` is clamped to [`MAX_TOP_K`] and to the number of labels).
    ///
    /// Returns `None` when the embedding has the wrong length, or is zero or not
    /// finite, so a broken frame can never produce a confident answer.
    pub fn score(&mut self, table: &LabelTable, embedding: &[f32], k: usize) -> Option<TopK> {
        if embedding.len() != table.dim() || self.cosines.len() != table.len() {
            return None;
        }
        self.normalized.copy_from_slice(embedding);
        if !l2_normalize(&mut self.normalized) {
            return None;
        }
        for (cos, row) in self
            .cosines
            .iter_mut()
            .zip(table.embeddings().chunks_exact(table.dim()))
        {
            *cos = dot(&self.normalized, row);
        }
        let (scale, bias) = (self.scoring.logit_scale, self.scoring.logit_bias);
        match self.scoring.rule {
            ScoringRule::Softmax => softmax_scaled(&self.cosines, scale, &mut self.probs),
            ScoringRule::Sigmoid => sigmoid_scaled(&self.cosines, scale, bias, &mut self.probs),
        }
        Some(top_k(&self.cosines, &self.probs, k))
    }
}

/// Dot product of two equal-length slices.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// `out = softmax(scale × logits)`, numerically stable.
pub fn softmax_scaled(logits: &[f32], scale: f32, out: &mut [f32]) {
    let max = logits
        .iter()
        .fold(f32::NEG_INFINITY, |m, &x| m.max(x * scale));
    let mut sum = 0.0;
    for (o, &x) in out.iter_mut().zip(logits) {
        *o = (x * scale - max).exp();
        sum += *o;
    }
    out.iter_mut().for_each(|o| *o /= sum);
}

/// `out = sigmoid(scale × logits + bias)`, elementwise.
pub fn sigmoid_scaled(logits: &[f32], scale: f32, bias: f32, out: &mut [f32]) {
    for (o, &x) in out.iter_mut().zip(logits) {
        *o = 1.0 / (1.0 + (-(x * scale + bias)).exp());
    }
}

/// The `k` highest scores, best first (ties keep the lower index first).
pub fn top_k(scores: &[f32], probs: &[f32], k: usize) -> TopK {
    let k = k.min(MAX_TOP_K).min(scores.len());
    let mut best = TopK::new();
    for (index, (&score, &prob)) in scores.iter().zip(probs).enumerate() {
        let candidate = Prediction { index, score, prob };
        // Position where the candidate goes: after every entry scoring >= it.
        let pos = best
            .iter()
            .position(|p| p.score < score)
            .unwrap_or(best.len());
        if pos >= k {
            continue;
        }
        if best.len() == k {
            best.pop();
        }
        // Capacity is guaranteed by the pop above (k <= MAX_TOP_K).
        if best.insert(pos, candidate).is_err() {
            debug_assert!(false, "top-k overflow");
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_orders_and_truncates() {
        let scores = [0.1, 0.9, 0.5, 0.9, -0.2];
        let probs = [0.0; 5];
        let top = top_k(&scores, &probs, 3);
        let idx: Vec<usize> = top.iter().map(|p| p.index).collect();
        assert_eq!(idx, vec![1, 3, 2]);
        assert_eq!(top_k(&scores, &probs, 100).len(), 5);
        assert!(top_k(&scores, &probs, 0).is_empty());
    }

    #[test]
    fn softmax_sums_to_one_and_is_stable() {
        let mut out = [0.0; 3];
        softmax_scaled(&[1.0, 0.0, -1.0], 100.0, &mut out);
        assert!((out.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(out[0] > 0.999 && out.iter().all(|p| p.is_finite()));
    }

    #[test]
    fn scorer_ranks_the_matching_label_first() {
        let table = LabelTable::new(
            vec!["x".into(), "y".into()],
            vec![],
            String::new(),
            vec![vec![1.0, 0.0], vec![0.0, 1.0]],
        )
        .unwrap();
        let mut scorer = Scorer::new(&table, &ScoringSection::softmax(DEFAULT_LOGIT_SCALE));
        let top = scorer.score(&table, &[0.1, 5.0], 2).unwrap();
        assert_eq!(top[0].index, 1);
        assert!((top[0].score - 5.0 / 25.01f32.sqrt()).abs() < 1e-3);
        assert!(top[0].prob > top[1].prob);
        assert!(scorer.score(&table, &[0.0, 0.0], 2).is_none());
        assert!(scorer.score(&table, &[f32::NAN, 1.0], 2).is_none());
        assert!(scorer.score(&table, &[1.0], 2).is_none());
    }

    #[test]
    fn sigmoid_scoring_gives_each_label_its_own_probability() {
        let table = LabelTable::new(
            vec!["x".into(), "y".into(), "z".into()],
            vec![],
            String::new(),
            vec![vec![1.0, 0.0], vec![0.0, 1.0], vec![0.6, 0.8]],
        )
        .unwrap();
        let sigmoid = ScoringSection {
            rule: ScoringRule::Sigmoid,
            logit_scale: 10.0,
            logit_bias: -5.0,
        };
        let mut scorer = Scorer::new(&table, &sigmoid);
        let top = scorer.score(&table, &[0.0, 2.0], 3).unwrap();
        // cosines 0, 1, 0.8 -> sigmoid(-5), sigmoid(5), sigmoid(3)
        let expect = |z: f32| 1.0 / (1.0 + (-z).exp());
        assert_eq!(top[0].index, 1);
        assert!((top[0].prob - expect(5.0)).abs() < 1e-6, "{top:?}");
        assert!((top[1].prob - expect(3.0)).abs() < 1e-6, "{top:?}");
        assert!((top[2].prob - expect(-5.0)).abs() < 1e-6, "{top:?}");
        // Independent probabilities: they need not sum to 1.
        assert!(scorer.probs().iter().sum::<f32>() > 1.5);
        // Far outside the range the sigmoid saturates without NaN.
        let mut out = [0.0; 2];
        sigmoid_scaled(&[-1e30, 1e30], 1.0, 0.0, &mut out);
        assert_eq!(out, [0.0, 1.0]);
    }
}
