//! cni-test-sleep: a plugin that never answers in time, for runtime timeout tests
//! (upstream `plugins/test/sleep`). It sleeps `CNI_TEST_SLEEP_SECONDS` (default 60)
//! seconds, then exits 0 without output.

fn main() {
    let seconds = std::env::var("CNI_TEST_SLEEP_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    std::thread::sleep(std::time::Duration::from_secs(seconds));
}
