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

use super::command::{DeletePlugin, PutPlugin};
use super::registry::Registry;
use super::TenantError;

/// Quiet time before a burst of file events is applied (editors write in steps).
pub const DEBOUNCE: Duration = Duration::from_millis(150);

/// The folder as the watcher reports it: absolute, with symlinks resolved. `--plugins`
/// may be relative (`./plugins`, the default) or a symlink, while file events name
/// absolute, resolved paths; everything here compares against this one form.
fn resolve_root(dir: &Path) -> std::io::Result<PathBuf> {
    dir.canonicalize()
}

/// `file` relative to `root`. An event path outside that form (reached through a
/// symlink, say) is resolved through its folder, since the file itself may be gone.
fn relative_to(root: &Path, file: &Path) -> Option<PathBuf> {
    if let Ok(rel) = file.strip_prefix(root) {
        return Some(rel.to_path_buf());
    }
    let parent = file.parent()?.canonicalize().ok()?;
    Some(parent.strip_prefix(root).ok()?.join(file.file_name()?))
}

/// Which tenant and plugin name a file under `root` belongs to, or why it is ignored.
fn owner(root: &Path, file: &Path, default_tenant: &str) -> Result<(String, String), &'static str> {
    if file.extension().is_none_or(|x| x != "rules") {
        return Err("not a .rules file");
    }
    let name = file.file_name().and_then(|n| n.to_str()).ok_or("the file name is not UTF-8")?.to_string();
    let rel = relative_to(root, file).ok_or("outside the plugins folder")?;
    let parts: Vec<&str> = rel.components().filter_map(|c| c.as_os_str().to_str()).collect();
    match parts.as_slice() {
        [_] => Ok((default_tenant.to_string(), name)),
        [tenant, _] => Ok((tenant.to_string(), name)),
        _ => Err("nested too deep: rule files live in plugins/ or plugins/<tenant>/"),
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
/// rejected file is logged by its tenant and skipped.
pub async fn load_all(registry: &Registry, dir: &Path, default_tenant: &str) -> Result<usize, TenantError> {
    let root = resolve_root(dir).map_err(|e| TenantError::Unavailable(format!("{}: {e}", dir.display())))?;
    let mut loaded = 0;
    for file in rule_files(&root) {
        let Ok((tenant, name)) = owner(&root, &file, default_tenant) else { continue };
        let Ok(source) = std::fs::read_to_string(&file) else { continue };
        let handle = registry.ensure_tenant(&tenant).await?;
        match handle.ask(PutPlugin { name, source, from_disk: true }).await {
            Ok(_) => loaded += 1,
            // The tenant logged it: one line for a file waiting for entities, every
            // diagnostic for a broken one.
            Err(TenantError::Plugin { .. }) => {}
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
    let root = resolve_root(&dir).map_err(|e| notify::Error::io(e).add_path(dir.clone()))?;
    let (tx, rx) = mpsc::channel::<PathBuf>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
        // Reads are not changes; everything else names the paths it touched.
        Ok(event) if matches!(event.kind, notify::EventKind::Access(_)) => {}
        Ok(event) => {
            for path in event.paths {
                let _ = tx.send(path);
            }
        }
        Err(e) => tracing::warn!(error = %e, "watching the plugins folder failed for one event"),
    })?;
    watcher.watch(&root, RecursiveMode::Recursive)?;
    tracing::info!(folder = %root.display(), "watching rule files");
    std::thread::Builder::new()
        .name("arbiter-plugins".into())
        .spawn(move || apply_changes(&registry, &root, &default_tenant, &rx))
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
            let (tenant, name) = match owner(dir, &file, default_tenant) {
                Ok(owned) => owned,
                Err(reason) => {
                    tracing::info!(path = %file.display(), "ignored a change in the plugins folder: {reason}");
                    continue;
                }
            };
            let Some(handle) = registry.tenant(&tenant) else {
                tracing::warn!(file = %file.display(), "no tenant `{tenant}` for this rule file; create the tenant first");
                continue;
            };
            match std::fs::read_to_string(&file) {
                Ok(source) => handle.notify(PutPlugin { name, source, from_disk: true }),
                Err(_) if !file.exists() => handle.notify(DeletePlugin { name, from_disk: true }),
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
        let own = |f: &str| owner(dir, Path::new(f), "default");
        assert_eq!(own("/p/a.rules"), Ok(("default".into(), "a.rules".into())));
        assert_eq!(own("/p/acme/b.rules"), Ok(("acme".into(), "b.rules".into())));
        assert_eq!(own("/p/context.json"), Err("not a .rules file"));
        assert_eq!(own("/p/a.rules~"), Err("not a .rules file"));
        assert!(own("/p/a/b/c.rules").unwrap_err().starts_with("nested too deep"));
        assert_eq!(own("/elsewhere/a.rules"), Err("outside the plugins folder"));
    }
}
