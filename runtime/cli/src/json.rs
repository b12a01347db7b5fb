//! The JSON both `clip-edge classify --json` and `clip-edge run --json` print: one
//! top-k writer, floats in their shortest f32 form, no allocation.

use std::io::Write;

use clip_edge_core::TopK;

/// Writes `top` as `[{"label":L,"score":S,"prob":P},...]`, best first; `labels` are
/// the bundle's label names (an index out of range is written as `"?"`).
pub fn write_top_k(out: &mut impl Write, top: &TopK, labels: &[String]) -> std::io::Result<()> {
    out.write_all(b"[")?;
    for (n, p) in top.iter().enumerate() {
        if n > 0 {
            out.write_all(b",")?;
        }
        out.write_all(br#"{"label":"#)?;
        json_str(out, labels.get(p.index).map_or("?", String::as_str))?;
        out.write_all(br#","score":"#)?;
        json_f32(out, p.score)?;
        out.write_all(br#","prob":"#)?;
        json_f32(out, p.prob)?;
        out.write_all(b"}")?;
    }
    out.write_all(b"]")
}

/// Writes `s` as a JSON string.
pub fn json_str(out: &mut impl Write, s: &str) -> std::io::Result<()> {
    serde_json::to_writer(out, s).map_err(std::io::Error::other)
}

/// Shortest round-trip form (`1.0`, `1.8631714e-15`), as serde_json writes floats.
pub fn json_f32(out: &mut impl Write, v: f32) -> std::io::Result<()> {
    serde_json::to_writer(out, &v).map_err(std::io::Error::other)
}

/// Writes `value` through `Display` as a JSON string (escaped as it is formatted).
pub fn json_display(out: &mut impl Write, value: &dyn std::fmt::Display) -> std::io::Result<()> {
    use serde::Serializer as _;
    serde_json::Serializer::new(out)
        .collect_str(value)
        .map_err(std::io::Error::other)
}
