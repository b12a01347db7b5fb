//! A synthetic source: a deterministic moving pattern, for tests and benchmarks
//! without a camera.

use super::{Frame, FrameSource, SourceError, MAX_SIDE};

/// Frames of a square moving over a gradient ([`Synthetic::render`]); frame `n`
/// depends only on the size and `n`. Named "synthetic#N". Allocates nothing per
/// frame once the frame buffer has its size.
#[derive(Debug, Clone)]
pub struct Synthetic {
    width: u32,
    height: u32,
    frames: Option<u64>,
    next: u64,
}

impl Synthetic {
    /// `frames` frames of `width`×`height` (endless if `None`).
    pub fn new(width: u32, height: u32, frames: Option<u64>) -> Result<Self, SourceError> {
        if width == 0 || height == 0 || width > MAX_SIDE || height > MAX_SIDE {
            return Err(SourceError::config(
                "synthetic",
                format!("frame size {width}x{height} out of range (each side 1..={MAX_SIDE})"),
            ));
        }
        Ok(Synthetic {
            width,
            height,
            frames,
            next: 0,
        })
    }

    /// Writes frame `n` (`width * height * 3` RGB8 bytes) into `out`: red grows
    /// left to right, green top to bottom, blue is 64; a square of a quarter of the
    /// shorter side moves right by 8 and down by 5 pixels a frame (wrapping), its
    /// colour changing with `n`.
    pub fn render(width: u32, height: u32, n: u64, out: &mut [u8]) {
        let (w, h) = (width as u64, height as u64);
        let side = (w.min(h) / 4).max(1);
        let x0 = (n * 8) % (w - side + 1);
        let y0 = (n * 5) % (h - side + 1);
        let square = [
            (n * 37 % 256) as u8,
            (255 - n * 53 % 256) as u8,
            (n * 97 % 256) as u8,
        ];
        for (y, row) in (0..h).zip(out.chunks_exact_mut(width as usize * 3)) {
            let g = (y * 255 / (h - 1).max(1)) as u8;
            let in_rows = (y0..y0 + side).contains(&y);
            for (x, px) in (0..w).zip(row.chunks_exact_mut(3)) {
                if in_rows && (x0..x0 + side).contains(&x) {
                    px.copy_from_slice(&square);
                } else {
                    px.copy_from_slice(&[(x * 255 / (w - 1).max(1)) as u8, g, 64]);
                }
            }
        }
    }
}

impl FrameSource for Synthetic {
    fn describe(&self) -> String {
        match self.frames {
            Some(n) => format!("synthetic {}x{} ({n} frames)", self.width, self.height),
            None => format!("synthetic {}x{}", self.width, self.height),
        }
    }

    fn next_frame(&mut self, frame: &mut Frame) -> Result<bool, SourceError> {
        if self.frames.is_some_and(|n| self.next >= n) {
            return Ok(false);
        }
        let n = self.next;
        self.next += 1;
        Self::render(
            self.width,
            self.height,
            n,
            frame.reshape(self.width, self.height),
        );
        frame.set_name_indexed("synthetic", n);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_deterministic_and_move() {
        let mut s = Synthetic::new(32, 24, Some(3)).unwrap();
        let mut f = Frame::new();
        let mut seen = Vec::new();
        while s.next_frame(&mut f).unwrap() {
            let mut again = vec![0; 32 * 24 * 3];
            Synthetic::render(32, 24, seen.len() as u64, &mut again);
            assert_eq!(f.rgb.as_raw(), &again);
            assert_eq!(f.name, format!("synthetic#{}", seen.len()));
            seen.push(f.rgb.clone());
        }
        assert_eq!(seen.len(), 3);
        assert_ne!(seen[0], seen[1]);
        // Gradient corners away from the square.
        assert_eq!(seen[0].get_pixel(31, 23).0, [255, 255, 64]);
        assert!(!s.next_frame(&mut f).unwrap());
        assert!(Synthetic::new(0, 4, None).is_err());
        // 1x1 does not divide by zero.
        let mut one = Synthetic::new(1, 1, None).unwrap();
        assert!(one.next_frame(&mut f).unwrap());
    }
}
