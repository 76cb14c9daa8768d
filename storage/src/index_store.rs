//! The set of tenant indexes on this node, opened on first use.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::{validate_tenant_name, Result, TenantIndex};

/// Opens tenant indexes under one directory and keeps them open.
pub struct IndexStore {
    root: PathBuf,
    open: Mutex<HashMap<String, Arc<TenantIndex>>>,
}

impl IndexStore {
    /// An index store rooted at `root` (created when absent).
    pub fn open(root: &Path) -> Result<Self> {
        std::fs::create_dir_all(root)?;
        Ok(IndexStore {
            root: root.to_owned(),
            open: Mutex::new(HashMap::new()),
        })
    }

    /// Where the tenant indexes live: one directory per tenant.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Forgets every open index, so the next [`IndexStore::get`] reopens it from disk (after a
    /// snapshot replaced the files). Searches holding an index keep their view.
    pub fn close_all(&self) {
        self.open.lock().expect("index store lock poisoned").clear();
    }

    /// The tenant's index, opened or created on first use.
    pub fn get(&self, tenant: &str) -> Result<Arc<TenantIndex>> {
        validate_tenant_name(tenant)?;
        let mut open = self.open.lock().expect("index store lock poisoned");
        if let Some(index) = open.get(tenant) {
            return Ok(index.clone());
        }
        let index = Arc::new(TenantIndex::open_or_create(
            &self.root.join(tenant),
            tenant,
        )?);
        open.insert(tenant.to_owned(), index.clone());
        Ok(index)
    }
}
