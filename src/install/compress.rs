//! In-process module compression matching the kernel's own modules: gzip -6,
//! xz with CRC32 and a 1 MiB dictionary (the in-kernel decompressor needs
//! both), zstd level 3 — the settings dkms uses, without spawning a tool.

use crate::kernel::Compression;
use anyhow::{Context, Result};
use std::io::Write;

pub fn compress(data: &[u8], c: Compression) -> Result<Vec<u8>> {
    match c {
        Compression::None => Ok(data.to_vec()),
        Compression::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
            e.write_all(data).context("gzip")?;
            e.finish().context("gzip")
        }
        Compression::Xz => {
            let mut opts = liblzma::stream::LzmaOptions::new_preset(6).context("xz options")?;
            opts.dict_size(1 << 20);
            let mut filters = liblzma::stream::Filters::new();
            filters.lzma2(&opts);
            let stream = liblzma::stream::Stream::new_stream_encoder(&filters, liblzma::stream::Check::Crc32)
                .context("xz encoder")?;
            let mut e = liblzma::write::XzEncoder::new_stream(Vec::new(), stream);
            e.write_all(data).context("xz")?;
            e.finish().context("xz")
        }
        Compression::Zstd => zstd::encode_all(data, 3).context("zstd"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn round_trips_with_the_standard_formats() {
        let data: Vec<u8> = (0..20000u32).flat_map(|i| (i % 251).to_le_bytes()).collect();
        let gz = compress(&data, Compression::Gzip).unwrap();
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&gz[..]).read_to_end(&mut out).unwrap();
        assert_eq!(out, data);
        let xz = compress(&data, Compression::Xz).unwrap();
        assert_eq!(&xz[..6], b"\xFD7zXZ\x00");
        assert_eq!(xz[7] & 0x0f, 1, "xz check must be CRC32 for the kernel");
        let mut out = Vec::new();
        liblzma::read::XzDecoder::new(&xz[..]).read_to_end(&mut out).unwrap();
        assert_eq!(out, data);
        let zs = compress(&data, Compression::Zstd).unwrap();
        assert_eq!(zstd::decode_all(&zs[..]).unwrap(), data);
        assert_eq!(compress(&data, Compression::None).unwrap(), data);
    }
}
