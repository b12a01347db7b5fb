//! Probe prompts that check, at load, that a tower embeds a prompt the same on its
//! own length, and after a cached prefix, as on all 77 positions.

use super::{error_chain, max_normalized_difference, Schedule, TextEncoder, TokenRow};
use super::{BY_LENGTH_TOLERANCE, CONTEXT_LENGTH, EOT, SOT};

/// Two probe prompts: "a photo of a" and "a photo of a small red dog ." in CLIP's
/// vocabulary, tokenized.
fn probe_prompts() -> [TokenRow; 2] {
    let probe = |words: &[i64]| {
        let mut row = vec![0i64; CONTEXT_LENGTH];
        row[0] = SOT;
        row[1..=words.len()].copy_from_slice(words);
        row[words.len() + 1] = EOT;
        TokenRow::new(row, words.len() + 2)
    };
    [
        probe(&[320, 1125, 539, 320]),
        probe(&[320, 1125, 539, 320, 2442, 736, 1929, 269]),
    ]
}

/// How a probe runs besides over all 77 positions.
#[derive(Debug, Clone, Copy)]
pub(super) enum Probe {
    /// Both prompts together, on the longer one's length.
    ByLength,
    /// Both prompts after their shared prefix (the shorter one without its EOT).
    AfterPrefix,
}

impl TextEncoder {
    /// Checks that the probe prompts embed as they do over all 77 positions, within
    /// [`BY_LENGTH_TOLERANCE`], when run as `probe` says; the error says how not.
    pub(super) fn check_probe(&self, probe: Probe) -> Result<(), String> {
        let [short, long] = probe_prompts();
        let rows = [&short, &long];
        let mut state = self.state().map_err(|e| error_chain(&e))?;
        let mut full = vec![0.0; 2 * self.dim];
        let mut other = vec![0.0; 2 * self.dim];
        self.run_with(&mut state, &rows, &mut full, Schedule::FullLength)
            .map_err(|e| format!("probe prompts fail on 77 positions: {}", error_chain(&e)))?;
        let (how, why) = match probe {
            Probe::ByLength => {
                self.run_with(&mut state, &rows, &mut other, Schedule::ByLength)
                    .map_err(|e| {
                        format!(
                            "probe prompts fail on their own length: {}",
                            error_chain(&e)
                        )
                    })?;
                (
                    "on their own length",
                    ": the tower reads past the end of a prompt",
                )
            }
            Probe::AfterPrefix => {
                let prefix = self
                    .prefix(&mut state, &short.tokens()[..short.len() - 1])
                    .map_err(|e| format!("the probe prefix fails: {}", error_chain(&e)))?;
                self.run_after(&mut state, &prefix, &rows, &mut other)
                    .map_err(|e| {
                        format!("probe prompts fail after their prefix: {}", error_chain(&e))
                    })?;
                ("after a cached prefix", "")
            }
        };
        let diff = max_normalized_difference(&full, &other, self.dim);
        if diff > BY_LENGTH_TOLERANCE {
            return Err(format!(
                "probe prompts embed differently {how} than on 77 positions \
                 (by {diff:.2e} per component){why}"
            ));
        }
        log::debug!("probe prompts {how} agree with 77 positions within {diff:.1e}");
        Ok(())
    }
}
