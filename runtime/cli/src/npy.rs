//! Writing tensors as NumPy `.npy` files, so Python can check our numbers
//! (`numpy.load`).

use std::path::Path;

use npyz::WriterBuilder;

/// Writes `data` (row-major, `shape`) as a little-endian f32 `.npy` file.
pub fn write_f32(path: &Path, shape: &[u64], data: &[f32]) -> std::io::Result<()> {
    let expected: u64 = shape.iter().product();
    if expected != data.len() as u64 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "shape {shape:?} holds {expected} values, got {}",
                data.len()
            ),
        ));
    }
    let file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut writer = npyz::WriteOptions::new()
        .default_dtype()
        .shape(shape)
        .writer(file)
        .begin_nd()?;
    writer.extend(data.iter().copied())?;
    writer.finish()
}

#[cfg(test)]
mod tests {
    #[test]
    fn writes_a_loadable_header_and_data() {
        let dir = std::env::temp_dir().join(format!("clip-edge-npy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.npy");
        super::write_f32(&path, &[1, 3], &[1.0, 2.5, -3.0]).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert!(bytes.starts_with(b"\x93NUMPY"));
        let header = String::from_utf8_lossy(&bytes[10..bytes.len() - 12]).to_string();
        assert!(header.contains("'shape': (1, 3,"), "{header}");
        assert!(header.contains("<f4"), "{header}");
        assert_eq!(&bytes[bytes.len() - 4..], &(-3.0f32).to_le_bytes());
        assert!(super::write_f32(&path, &[2, 2], &[1.0]).is_err());
    }
}
