//! The whole zero-shot pipeline for one bundle: image → preprocessed tensor →
//! image embedding → scores against the label table → top-k.
//!
//! A [`Classifier`] sizes every buffer when it is built; classifying a frame reuses
//! them.

use std::path::Path;

use clip_edge_bundle::{Bundle, BundleError, LabelTable, TrustedKeys};

use crate::encoder::{EncoderError, ImageEncoder};
use crate::preprocess::{PreprocessError, Preprocessor};
use crate::scoring::{Scorer, TopK};

/// What can go wrong building or running a classifier.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClassifyError {
    /// The bundle is missing, corrupt or inconsistent.
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// The image encoder failed to load or run.
    #[error(transparent)]
    Encoder(#[from] EncoderError),
    /// The frame could not be preprocessed.
    #[error(transparent)]
    Preprocess(#[from] PreprocessError),
    /// The encoder produced an embedding that cannot be scored (zero or not finite).
    #[error("the image embedding is zero or not finite; refusing to score it")]
    BadEmbedding,
}

/// A bundle loaded and ready to classify frames.
#[derive(Debug)]
pub struct Classifier {
    bundle: Bundle,
    encoder: ImageEncoder,
    preprocessor: Preprocessor,
    scorer: Scorer,
    input: Vec<f32>,
}

impl Classifier {
    /// Loads and verifies the bundle in `dir` and builds the encoder plan.
    pub fn load(dir: &Path) -> Result<Self, ClassifyError> {
        Self::load_with(dir, None)
    }

    /// Like [`Classifier::load`]; with `trusted`, the bundle must be signed by one of
    /// those keys ([`Bundle::load_trusted`]), checked before the model is read.
    pub fn load_with(dir: &Path, trusted: Option<&TrustedKeys>) -> Result<Self, ClassifyError> {
        let bundle = Bundle::load_with(dir, trusted)?;
        let size = bundle.manifest.preprocess.crop_size as usize;
        let model_path = bundle.model_path();
        let encoder = ImageEncoder::load(&model_path, size)?;
        if encoder.dim() != bundle.manifest.model.embedding_dim {
            return Err(BundleError::Mismatch {
                path: model_path,
                problem: format!(
                    "the model outputs embeddings of dimension {}, but {} says {}",
                    encoder.dim(),
                    clip_edge_bundle::MANIFEST_FILE,
                    bundle.manifest.model.embedding_dim
                ),
            }
            .into());
        }
        let preprocessor = Preprocessor::new(bundle.manifest.preprocess)?;
        let scorer = Scorer::new(&bundle.labels, &bundle.manifest.scoring);
        let input = vec![0.0; encoder.input_len()];
        Ok(Classifier {
            bundle,
            encoder,
            preprocessor,
            scorer,
            input,
        })
    }

    /// The loaded bundle.
    pub fn bundle(&self) -> &Bundle {
        &self.bundle
    }

    /// The label table.
    pub fn labels(&self) -> &LabelTable {
        &self.bundle.labels
    }

    /// Preprocesses an RGB8 frame into the model's input tensor (NCHW f32).
    pub fn preprocess(&mut self, rgb: &image::RgbImage) -> Result<&[f32], ClassifyError> {
        self.preprocessor.preprocess_into(
            rgb.as_raw(),
            rgb.width(),
            rgb.height(),
            &mut self.input,
        )?;
        Ok(&self.input)
    }

    /// The image encoder.
    pub fn encoder(&self) -> &ImageEncoder {
        &self.encoder
    }

    /// The image encoder, mutable (for profiling).
    pub fn encoder_mut(&mut self) -> &mut ImageEncoder {
        &mut self.encoder
    }

    /// Runs the encoder on the input left by [`Classifier::preprocess`].
    pub fn encode(&mut self) -> Result<&[f32], ClassifyError> {
        Ok(self.encoder.encode(&self.input)?)
    }

    /// Scores the embedding left by [`Classifier::encode`] against the label table.
    pub fn score(&mut self, k: usize) -> Result<TopK, ClassifyError> {
        self.scorer
            .score(&self.bundle.labels, self.encoder.embedding(), k)
            .ok_or(ClassifyError::BadEmbedding)
    }

    /// The raw (unnormalised) image embedding of an RGB8 frame.
    pub fn embed(&mut self, rgb: &image::RgbImage) -> Result<&[f32], ClassifyError> {
        self.preprocess(rgb)?;
        Ok(self.encoder.encode(&self.input)?)
    }

    /// The best `k` labels for an RGB8 frame.
    pub fn classify(&mut self, rgb: &image::RgbImage, k: usize) -> Result<TopK, ClassifyError> {
        self.preprocess(rgb)?;
        self.encode()?;
        self.score(k)
    }
}
