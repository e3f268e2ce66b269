//! The plugins folder. `plugins/*.rules` belong to the default tenant and
//! `plugins/<tenant-id>/*.rules` to that tenant. Files are loaded at start and watched;
//! a changed file is re-checked and swapped in, or — on any diagnostic — the previous
//! version stays live and every diagnostic is logged with its location. Other files
//! in the folder are ignored.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};

use super::command::Command;
use super::registry::Registry;
use super::TenantError;

/// Quiet time before a burst of file events is applied (editors write in steps).
pub const DEBOUNCE: Duration = Duration::from_millis(150);

/// Which tenant and plugin name a file under `dir` belongs to.
fn owner(dir: &Path, file: &Path, default_tenant: &str) -> Option<(String, String)> {
    if file.extension().is_none_or(|x| x != "rules") {
        return None;
    }
    let name = file.file_name()?.to_str()?.to_string();
    let rel = file.strip_prefix(dir).ok()?;
    match rel.components().count() {
        1 => Some((default_tenant.to_string(), name)),
        2 => Some((rel.components().next()?.as_os_str().to_str()?.to_string(), name)),
        _ => None,
    }
}

/// The rule files under `dir`, sorted.
fn rule_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return out };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if let Ok(inner) = std::fs::read_dir(&path) {
                out.extend(inner.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "rules")));
            }
        } else if path.extension().is_some_and(|x| x == "rules") {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// Loads every rule file now, waiting for each; returns how many were accepted. A
/// rejected file is logged (with every diagnostic) and skipped.
pub async fn load_all(registry: &Registry, dir: &Path, default_tenant: &str) -> Result<usize, TenantError> {
    let mut loaded = 0;
    for file in rule_files(dir) {
        let Some((tenant, name)) = owner(dir, &file, default_tenant) else { continue };
        let Ok(source) = std::fs::read_to_string(&file) else { continue };
        let handle = registry.ensure_tenant(&tenant).await?;
        match handle.command(Command::PutPlugin { name, source, from_disk: true }).await {
            Ok(_) => loaded += 1,
            Err(e) => tracing::warn!(file = %file.display(), "rule file not loaded: {e}"),
        }
    }
    Ok(loaded)
}

/// Watches `dir` and applies changes until the returned watcher is dropped.
pub fn watch(
    registry: Arc<Registry>,
    dir: PathBuf,
    default_tenant: String,
) -> notify::Result<notify::RecommendedWatcher> {
    let (tx, rx) = mpsc::channel::<PathBuf>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            for path in event.paths {
                let _ = tx.send(path);
            }
        }
    })?;
    watcher.watch(&dir, RecursiveMode::Recursive)?;
    std::thread::Builder::new()
        .name("arbiter-plugins".into())
        .spawn(move || apply_changes(&registry, &dir, &default_tenant, &rx))
        .map_err(|e| notify::Error::generic(&e.to_string()))?;
    Ok(watcher)
}

/// Collects events until the folder is quiet, then applies each changed file once.
fn apply_changes(registry: &Registry, dir: &Path, default_tenant: &str, rx: &mpsc::Receiver<PathBuf>) {
    while let Ok(first) = rx.recv() {
        let mut changed = BTreeSet::from([first]);
        while let Ok(more) = rx.recv_timeout(DEBOUNCE) {
            changed.insert(more);
        }
        for file in changed {
            let Some((tenant, name)) = owner(dir, &file, default_tenant) else { continue };
            let Some(handle) = registry.tenant(&tenant) else {
                tracing::warn!(file = %file.display(), "no tenant `{tenant}` for this rule file; create the tenant first");
                continue;
            };
            match std::fs::read_to_string(&file) {
                Ok(source) => handle.notify(Command::PutPlugin { name, source, from_disk: true }),
                Err(_) if !file.exists() => handle.notify(Command::DeletePlugin { name, from_disk: true }),
                Err(e) => tracing::warn!(file = %file.display(), "cannot read rule file: {e}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_map_to_tenants() {
        let dir = Path::new("/p");
        assert_eq!(owner(dir, Path::new("/p/a.rules"), "default"), Some(("default".into(), "a.rules".into())));
        assert_eq!(owner(dir, Path::new("/p/acme/b.rules"), "default"), Some(("acme".into(), "b.rules".into())));
        assert_eq!(owner(dir, Path::new("/p/context.json"), "default"), None);
        assert_eq!(owner(dir, Path::new("/p/a/b/c.rules"), "default"), None);
    }
}
