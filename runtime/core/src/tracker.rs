//! Hysteresis over per-frame predictions: which label is *seen* right now.
//!
//! A single frame's top label flickers (motion blur, a hand in front of the
//! camera, two labels close in score). [`Tracker`] turns the stream of top labels
//! into stable decisions: a label becomes *seen* only after it has been on top, at
//! or above the threshold, for `stable` consecutive classified frames, and it is
//! *lost* after `stable` consecutive classified frames in which it was not. At most
//! one label is seen at a time; when another label becomes stable the old one is
//! lost first, in the same update.
//!
//! The threshold applies to the bundle's probability: a share of the softmax over
//! the labels for CLIP-style scoring, a label's own sigmoid probability for SigLIP
//! (`clip_edge_bundle::ScoringRule`).

/// A change of the stable state, reported by [`Tracker::update`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The label (row in the label table) became stable.
    Seen(usize),
    /// The label stopped being stable.
    Lost(usize),
}

/// At most two changes per update: the old label lost, then the new one seen.
pub type Changes = heapless::Vec<Change, 2>;

/// Turns per-frame top labels into seen/lost decisions (see the module doc).
#[derive(Debug, Clone)]
pub struct Tracker {
    threshold: f32,
    stable: u32,
    /// The label currently seen.
    current: Option<usize>,
    /// Consecutive frames the current label was absent from the top.
    absent: u32,
    /// The label on top in the latest frames and how many frames in a row.
    candidate: Option<(usize, u32)>,
}

impl Tracker {
    /// A tracker needing `stable` consecutive frames (at least 1) with a top
    /// probability of at least `threshold`.
    pub fn new(threshold: f32, stable: u32) -> Self {
        Tracker {
            threshold,
            stable: stable.max(1),
            current: None,
            absent: 0,
            candidate: None,
        }
    }

    /// The label seen now, if any.
    pub fn current(&self) -> Option<usize> {
        self.current
    }

    /// Feeds one classified frame: its top label and that label's probability
    /// (`None` when the frame had no usable prediction). Returns what changed.
    pub fn update(&mut self, top: Option<(usize, f32)>) -> Changes {
        let observed = top
            .filter(|&(_, prob)| prob >= self.threshold)
            .map(|(label, _)| label);
        self.candidate = match (observed, self.candidate) {
            (Some(label), Some((previous, count))) if previous == label => {
                Some((label, count.saturating_add(1)))
            }
            (Some(label), _) => Some((label, 1)),
            (None, _) => None,
        };
        let mut changes = Changes::new();
        if let Some(current) = self.current {
            if observed == Some(current) {
                self.absent = 0;
            } else {
                self.absent = self.absent.saturating_add(1);
                if self.absent >= self.stable {
                    self.current = None;
                    self.absent = 0;
                    // Capacity 2: at most one Lost and one Seen per update.
                    let _ = changes.push(Change::Lost(current));
                }
            }
        }
        if let Some((label, count)) = self.candidate {
            if count >= self.stable && self.current.is_none() {
                self.current = Some(label);
                self.absent = 0;
                let _ = changes.push(Change::Seen(label));
            }
        }
        changes
    }

    /// Forgets the stable state, returning the label that was seen (to report it
    /// lost, e.g. on shutdown).
    pub fn reset(&mut self) -> Option<usize> {
        self.candidate = None;
        self.absent = 0;
        self.current.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(tracker: &mut Tracker, frames: &[Option<(usize, f32)>]) -> Vec<(usize, Change)> {
        let mut out = Vec::new();
        for (i, &f) in frames.iter().enumerate() {
            for c in tracker.update(f) {
                out.push((i, c));
            }
        }
        out
    }

    #[test]
    fn a_label_is_seen_after_k_consecutive_frames_only() {
        let mut t = Tracker::new(0.5, 3);
        let a = Some((1, 0.9));
        let b = Some((2, 0.9));
        let changes = run(&mut t, &[a, a, b, a, a, a, a]);
        assert_eq!(changes, vec![(5, Change::Seen(1))]);
        assert_eq!(t.current(), Some(1));
    }

    #[test]
    fn below_threshold_does_not_count_and_loses_after_k_frames() {
        let mut t = Tracker::new(0.5, 2);
        let a = Some((4, 0.8));
        let weak = Some((4, 0.3));
        let changes = run(&mut t, &[a, weak, a, a, weak, a, weak, None]);
        assert_eq!(changes, vec![(3, Change::Seen(4)), (7, Change::Lost(4))]);
        assert_eq!(t.current(), None);
    }

    #[test]
    fn switching_labels_reports_lost_then_seen_in_one_update() {
        let mut t = Tracker::new(0.0, 2);
        let a = Some((0, 0.9));
        let b = Some((1, 0.9));
        let changes = run(&mut t, &[a, a, b, b]);
        assert_eq!(
            changes,
            vec![
                (1, Change::Seen(0)),
                (3, Change::Lost(0)),
                (3, Change::Seen(1))
            ]
        );
    }

    #[test]
    fn stable_one_follows_every_frame() {
        let mut t = Tracker::new(0.5, 1);
        let changes = run(&mut t, &[Some((0, 0.9)), Some((0, 0.9)), Some((2, 0.6))]);
        assert_eq!(
            changes,
            vec![
                (0, Change::Seen(0)),
                (2, Change::Lost(0)),
                (2, Change::Seen(2))
            ]
        );
        assert_eq!(t.reset(), Some(2));
        assert_eq!(t.current(), None);
    }

    #[test]
    fn a_single_glitch_does_not_lose_the_label() {
        let mut t = Tracker::new(0.5, 3);
        let a = Some((7, 0.9));
        let changes = run(&mut t, &[a, a, a, None, a, Some((3, 0.9)), a, a]);
        assert_eq!(changes, vec![(2, Change::Seen(7))]);
    }
}
