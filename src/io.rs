//! File I/O shared by parity cases and checkpoints: safetensors parsing and atomic writes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors};

use crate::error::{Error, Result};

/// The bytes of `path`, or [`Error::Io`].
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// The tensors and the `__metadata__` of a safetensors file's bytes; the reason if they are not
/// a valid safetensors file with metadata.
pub(crate) fn parse_safetensors(
    bytes: &[u8],
) -> Result<(SafeTensors<'_>, HashMap<String, String>), String> {
    let invalid = |e: safetensors::SafeTensorError| format!("not a valid safetensors file: {e}");
    let st = SafeTensors::deserialize(bytes).map_err(invalid)?;
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(invalid)?;
    let meta = header.metadata().clone().ok_or("no __metadata__")?;
    Ok((st, meta))
}

/// Tensor `name` as f32 values, checked to be F32 of `shape`; the reason if it is not.
pub(crate) fn read_f32(
    st: &SafeTensors<'_>,
    name: &str,
    shape: &[usize],
) -> Result<Vec<f32>, String> {
    let view = st
        .tensor(name)
        .map_err(|_| format!("missing tensor {name:?}"))?;
    if view.dtype() != Dtype::F32 {
        return Err(format!(
            "tensor {name:?} is {:?}, expected F32",
            view.dtype()
        ));
    }
    if view.shape() != shape {
        return Err(format!(
            "tensor {name:?} has shape {:?}, expected {shape:?}",
            view.shape()
        ));
    }
    Ok(bytemuck::pod_collect_to_vec(view.data()))
}

/// Writes `bytes` to `path` through a temporary file beside it and a rename, so `path` is
/// either complete or untouched.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let written = std::fs::File::create(&tmp).and_then(|mut f| {
        std::io::Write::write_all(&mut f, bytes)?;
        f.sync_all()
    });
    written
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| {
            std::fs::remove_file(&tmp).ok();
            io(e)
        })
}
