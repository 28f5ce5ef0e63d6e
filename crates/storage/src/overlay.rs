//! The overlay driver.

use std::path::{Path, PathBuf};

use berth_image::{Digest, Whiteouts};

use crate::driver::Driver;
use crate::{DriverKind, Result};

pub(crate) struct Overlay {
    root: PathBuf,
}

impl Overlay {
    pub(crate) fn new(root: &Path) -> Overlay {
        Overlay {
            root: root.to_path_buf(),
        }
    }
}

impl Driver for Overlay {
    fn kind(&self) -> DriverKind {
        DriverKind::Overlay
    }
    fn whiteouts(&self) -> Whiteouts {
        todo!("{}", self.root.display())
    }
    fn has_layer(&self, chain: &Digest) -> bool {
        todo!("{chain}")
    }
    fn create_layer(
        &self,
        chain: &Digest,
        parent: Option<&Digest>,
        fill: &mut dyn FnMut(&Path) -> Result<()>,
    ) -> Result<()> {
        let _ = fill;
        todo!("{chain} {parent:?}")
    }
    fn remove_layer(&self, chain: &Digest) -> Result<()> {
        todo!("{chain}")
    }
    fn read_file(&self, layers: &[Digest], path: &Path) -> Result<Option<Vec<u8>>> {
        todo!("{layers:?} {}", path.display())
    }
    fn mount(&self, key: &str, layers: &[Digest], target: &Path) -> Result<()> {
        todo!("{key} {layers:?} {}", target.display())
    }
    fn unmount(&self, key: &str, target: &Path) -> Result<()> {
        todo!("{key} {}", target.display())
    }
}
