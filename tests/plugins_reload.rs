//! The plugins folder as a new user meets it: the real binary started with the default
//! relative `--plugins plugins` (and with a symlinked folder), files added, edited and
//! removed while it runs, and what it logs.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::{tutorial_setup, BinaryServer, Client};

const KEY: &str = "reload-admin-key";

/// `arbiter serve --plugins <plugins>` with `cwd` as its working directory.
fn serve(cwd: &Path, plugins: &str) -> BinaryServer {
    BinaryServer::start(cwd, &["--data", "data", "--plugins", plugins], KEY)
}

/// Polls `check` for up to 10 s.
async fn eventually(what: &str, server: &BinaryServer, mut check: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what} did not happen within 10 s; server log:\n{}", server.log_text());
}

async fn source_of(api: &Client, name: &str) -> Option<String> {
    let reply = api.get(&format!("/api/v1/plugins/{name}")).await;
    (reply.status == 200).then(|| reply.json()["source"].as_str().unwrap_or_default().to_string())
}

/// Adds, edits and removes a rule file in the watched folder `dir` (as seen from `cwd`).
async fn add_edit_remove(server: &BinaryServer, dir: &Path) {
    let api = Client::new(server.addr, Some(KEY));
    let v1 = "rule \"VIP only\" { attributes.vip == true }\n";
    std::fs::write(dir.join("vip.rules"), v1).unwrap();
    eventually("a new file going live", server, async || source_of(&api, "vip.rules").await.as_deref() == Some(v1))
        .await;
    let v2 = "rule \"VIP only\" { attributes.vip == true or attributes.staff == true }\n";
    std::fs::write(dir.join("vip.rules"), v2).unwrap();
    eventually("an edit going live", server, async || source_of(&api, "vip.rules").await.as_deref() == Some(v2)).await;
    std::fs::remove_file(dir.join("vip.rules")).unwrap();
    eventually("a removal", server, async || source_of(&api, "vip.rules").await.is_none()).await;
    std::fs::write(dir.join("notes.txt"), "not a rule file").unwrap();
    eventually("the ignored file logged with its reason", server, async || {
        let log = server.log_text();
        log.contains("notes.txt") && log.contains("not a .rules file")
    })
    .await;
}

#[tokio::test]
async fn a_relative_plugins_folder_is_hot_reloaded() {
    let tmp = support::temp_dir("reload-relative");
    let cwd = tmp.path();
    std::fs::create_dir_all(cwd.join("plugins")).unwrap();
    let server = serve(cwd, "plugins");
    add_edit_remove(&server, &cwd.join("plugins")).await;
    drop(server);
}

#[tokio::test]
async fn a_symlinked_plugins_folder_is_hot_reloaded() {
    let tmp = support::temp_dir("reload-symlink");
    let cwd = tmp.path();
    std::fs::create_dir_all(cwd.join("real-rules")).unwrap();
    std::os::unix::fs::symlink(cwd.join("real-rules"), cwd.join("plugins")).unwrap();
    let server = serve(cwd, "./plugins");
    add_edit_remove(&server, &cwd.join("plugins")).await;
    drop(server);
}

/// The shipped rule file on a fresh tenant: one info line while it waits for the
/// tutorial's entities, no diagnostics dump, and live once they exist.
#[tokio::test]
async fn the_shipped_rule_file_waits_quietly_then_goes_live() {
    let tmp = support::temp_dir("reload-shipped");
    let cwd = tmp.path();
    std::fs::create_dir_all(cwd.join("plugins")).unwrap();
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/plugins/cross_sell.rules");
    std::fs::copy(shipped, cwd.join("plugins/cross_sell.rules")).unwrap();
    let server = serve(cwd, "plugins");
    let log = server.log_text();
    let mentions: Vec<&str> = log.lines().filter(|l| l.contains("cross_sell.rules")).collect();
    assert_eq!(mentions.len(), 1, "one line about the waiting file:\n{log}");
    assert!(mentions[0].contains("INFO") && mentions[0].contains("waits for"), "{}", mentions[0]);
    assert!(!log.contains("error["), "no diagnostics dump on a fresh start:\n{log}");
    assert!(log.lines().count() < 20, "a fresh start logs a screenful at most:\n{log}");
    let api = Client::new(server.addr, Some(KEY));
    tutorial_setup(&api).await;
    eventually("the waiting file going live", &server, async || source_of(&api, "cross_sell.rules").await.is_some())
        .await;
    drop(server);
}
