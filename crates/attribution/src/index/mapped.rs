//! Read-only memory maps of index files.
//!
//! `unsafe` is allowed in this module only: `memmap2::Mmap::map` is unsafe
//! because another process could truncate or modify the file while it is
//! mapped, which would be undefined behaviour for the `&[u8]` we hand out.
//! Index directories are immutable by construction (built into a temporary
//! directory, renamed into place, never rewritten; `build_index` refuses an
//! existing directory), which is the invariant the map relies on.
#![allow(unsafe_code)]

use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::error::{io_err, Result};

/// A whole file, memory-mapped read-only (empty files are not mapped).
#[derive(Debug)]
pub(crate) struct MappedFile {
    map: Option<Mmap>,
    path: PathBuf,
}

impl MappedFile {
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(io_err(path))?;
        let len = file.metadata().map_err(io_err(path))?.len();
        let map = if len == 0 {
            None
        } else {
            // SAFETY: index files are never modified after the directory is
            // renamed into place (see the module documentation).
            Some(unsafe { Mmap::map(&file) }.map_err(io_err(path))?)
        };
        Ok(MappedFile {
            map,
            path: path.to_path_buf(),
        })
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        self.map.as_deref().unwrap_or(&[])
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}
