//! Q4_1 matrices re-quantized to Q8_0 as the weights load.
//!
//! Candle has no vectorised Q4_1 dot product (its Q4_1 kernel is scalar on every CPU: three
//! quarters of a token's time went there), while its Q8_0 kernels are AVX2 (chosen at run time)
//! and NEON. Q8_0 holds a Q4_1 block to within 1/254 of the block's largest magnitude, a small
//! fraction of a Q4_1 step, for 70% more weight memory (SmolLM2-135M: 66 MB of Q4_1 matrices
//! become 113 MB).
//!
//! `quantized_llama` reads its tensors through a GGUF header and a reader; [`requantized`]
//! gives it a header that says Q8_0 and a reader that re-quantizes each Q4_1 tensor when it is
//! read, so only one tensor is ever held twice.

use std::collections::HashMap;
use std::io::{self, Read, Seek, SeekFrom};

use candle_core::Device;
use candle_core::quantized::gguf_file::{Content, TensorInfo};
use candle_core::quantized::{GgmlDType, QTensor};

const FROM: GgmlDType = GgmlDType::Q4_1;
const TO: GgmlDType = GgmlDType::Q8_0;

/// A tensor of the re-quantized data, where it is and where it comes from.
struct Entry {
    /// Where it starts in the re-quantized data.
    start: u64,
    /// Its size in the re-quantized data.
    len: u64,
    /// The tensor as the file holds it.
    source: TensorInfo,
}

/// The tensor data of a GGUF file with its Q4_1 tensors in Q8_0, read tensor by tensor.
pub(crate) struct Requantized<R> {
    source: R,
    /// Where the file's tensor data starts.
    source_data: u64,
    /// In the order of the data, without gaps.
    entries: Vec<Entry>,
    len: u64,
    position: u64,
    /// The entry being read and its bytes.
    current: Option<(usize, Vec<u8>)>,
}

/// The header to load `source` with, and the reader to load it from.
pub(crate) fn requantized<R: Read + Seek>(
    content: Content,
    source: R,
) -> (Content, Requantized<R>) {
    let mut sources: Vec<(String, TensorInfo)> = content.tensor_infos.into_iter().collect();
    sources.sort_by_key(|(_, info)| info.offset);
    let mut infos = HashMap::with_capacity(sources.len());
    let mut entries = Vec::with_capacity(sources.len());
    let mut start = 0;
    for (name, source) in sources {
        let dtype = if source.ggml_dtype == FROM {
            TO
        } else {
            source.ggml_dtype
        };
        let len = (source.shape.elem_count() / dtype.block_size() * dtype.type_size()) as u64;
        infos.insert(
            name,
            TensorInfo {
                ggml_dtype: dtype,
                shape: source.shape.clone(),
                offset: start,
            },
        );
        entries.push(Entry { start, len, source });
        start += len;
    }
    let header = Content {
        magic: content.magic,
        metadata: content.metadata,
        tensor_infos: infos,
        tensor_data_offset: 0,
    };
    let reader = Requantized {
        source,
        source_data: content.tensor_data_offset,
        entries,
        len: start,
        position: 0,
        current: None,
    };
    (header, reader)
}

impl<R: Read + Seek> Requantized<R> {
    /// The re-quantized bytes of entry `index`.
    fn bytes(&mut self, index: usize) -> candle_core::Result<Vec<u8>> {
        let entry = &self.entries[index];
        if entry.source.ggml_dtype != FROM {
            let mut bytes = vec![0; usize::try_from(entry.len).map_err(candle_core::Error::wrap)?];
            self.source
                .seek(SeekFrom::Start(self.source_data + entry.source.offset))?;
            self.source.read_exact(&mut bytes)?;
            return Ok(bytes);
        }
        let tensor = entry
            .source
            .read(&mut self.source, self.source_data, &Device::Cpu)?;
        let tensor = QTensor::quantize(&tensor.dequantize(&Device::Cpu)?, TO)?;
        Ok(tensor.data()?.into_owned())
    }
}

impl<R: Read + Seek> Read for Requantized<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let index = self
            .entries
            .partition_point(|e| e.start + e.len <= self.position);
        let Some(entry) = self.entries.get(index) else {
            return Ok(0);
        };
        let (start, end) = (entry.start, entry.start + entry.len);
        let bytes = match self.current.take() {
            Some((current, bytes)) if current == index => bytes,
            _ => self.bytes(index).map_err(io::Error::other)?,
        };
        let from = usize::try_from(self.position - start).map_err(io::Error::other)?;
        let n = buf.len().min(bytes.len() - from);
        buf[..n].copy_from_slice(&bytes[from..from + n]);
        self.position += n as u64;
        // A tensor is read once, whole: its bytes go as soon as its end is reached.
        if self.position < end {
            self.current = Some((index, bytes));
        }
        Ok(n)
    }
}

impl<R> Seek for Requantized<R> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let position = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.position.checked_add_signed(d),
        };
        self.position = position
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        Ok(self.position)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use candle_core::Tensor;
    use candle_core::quantized::gguf_file;

    use super::*;

    /// A GGUF file in memory with the given tensors.
    fn gguf(tensors: &[(&str, &QTensor)]) -> Vec<u8> {
        let mut file = Cursor::new(Vec::new());
        gguf_file::write(&mut file, &[], tensors).expect("writes");
        file.into_inner()
    }

    fn values(n: usize) -> Tensor {
        let values: Vec<f32> = (0..n)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 17.0)
            .collect();
        Tensor::from_vec(values, (n / 64, 64), &Device::Cpu).expect("a tensor")
    }

    #[test]
    fn q4_1_tensors_read_as_q8_0_with_the_same_values_and_others_as_they_are() {
        let q4 = QTensor::quantize(&values(256), FROM).expect("quantizes");
        let f32s = QTensor::quantize(&values(128), GgmlDType::F32).expect("quantizes");
        let file = gguf(&[("a", &q4), ("b", &f32s)]);
        let content = Content::read(&mut Cursor::new(&file)).expect("reads");
        let (header, mut reader) = requantized(content, Cursor::new(file));

        let a = header.tensor(&mut reader, "a", &Device::Cpu).expect("a");
        let b = header.tensor(&mut reader, "b", &Device::Cpu).expect("b");
        assert_eq!(a.dtype(), TO);
        assert_eq!(b.dtype(), GgmlDType::F32);
        let expected = q4.dequantize(&Device::Cpu).expect("dequantizes");
        let got = a.dequantize(&Device::Cpu).expect("dequantizes");
        let error: f32 = (expected - got)
            .and_then(|d| d.abs())
            .and_then(|d| d.max_all())
            .and_then(|d| d.to_scalar())
            .expect("computes");
        // The values span about ±3: a Q4_1 step is 0.4, a Q8_0 one 0.024.
        assert!(error < 0.013, "{error}");
        assert_eq!(
            b.dequantize(&Device::Cpu)
                .and_then(|t| t.flatten_all())
                .and_then(|t| t.to_vec1::<f32>())
                .expect("values"),
            values(128)
                .flatten_all()
                .and_then(|t| t.to_vec1::<f32>())
                .expect("values")
        );
    }
}
