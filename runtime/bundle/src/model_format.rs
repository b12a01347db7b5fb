//! How a bundle stores its image encoder: tract's NNEF tar or the ONNX file.

use std::path::Path;

/// How an image-encoder file is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelFormat {
    /// The ONNX export (or `clip-quantize quantize`'s output): parsed, typed and
    /// decluttered by tract at every load.
    Onnx,
    /// tract's NNEF tar of the decluttered model, input shape fixed: loads with one
    /// copy of the weights (half the peak memory) and no ONNX parsing or analysis.
    Nnef,
}

impl ModelFormat {
    /// The format of the file at `path`, from its contents (a tar archive is NNEF).
    pub fn detect(path: &Path) -> Result<Self, std::io::Error> {
        use std::io::Read;
        let mut head = [0u8; 263];
        let mut file = std::fs::File::open(path)?;
        let mut filled = 0;
        while filled < head.len() {
            match file.read(&mut head[filled..])? {
                0 => break,
                n => filled += n,
            }
        }
        Ok(if filled == head.len() && &head[257..262] == b"ustar" {
            ModelFormat::Nnef
        } else {
            ModelFormat::Onnx
        })
    }
}
